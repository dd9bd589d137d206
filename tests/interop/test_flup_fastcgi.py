"""flup's threaded FastCGI WSGI server behind frontd (application mount)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.interop.checks import RAMP_10_MIB_SHA256, GatewayPeerChecks
from tests.interop.conftest import Deployment, Peer, free_port, gateway_config, parse_output, start_flup

WSGI_ENDPOINTS = {"info": "info", "echo": "echo", "status": "status", "slow": "slow", "big": "big"}


@pytest.fixture(scope="module")
def deploy(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd]) -> Deployment:
    a = f"unix:{workdir}/flup-a.sock"
    b = f"127.0.0.1:{free_port()}"
    start_flup(peers, workdir, "fcgi", "a", a)
    start_flup(peers, workdir, "fcgi", "b", b)
    server = frontd_module(gateway_config("fastcgi", a, b, workdir, keep=b))
    return Deployment(server, "fastcgi", WSGI_ENDPOINTS, script_mode=False, big_sha256=RAMP_10_MIB_SHA256)


class TestFlupFastCGI(GatewayPeerChecks):
    def test_mounted_app_builds_links_under_its_prefix(self, deploy: Deployment) -> None:
        info = parse_output(deploy.request("GET", "b", "").content)
        assert info["SCRIPT_NAME"] == "/two" and info["PATH_INFO"] == "/"
        assert info["app_url"] == "/two/"

    def test_keepalive_pool(self, deploy: Deployment) -> None:
        # flup honours FCGI_KEEP_CONN: requests of all sizes on pooled connections.
        session = requests.Session()
        for size in (0, 10, 100_000, 0, 3_000_000, 5):
            body = bytes(size)
            response = session.post(deploy.server.url("/keep/echo"), data=body, headers={"Host": "k.test"},
                                    timeout=10)
            assert response.status_code == 200
            assert parse_output(response.content)["length"] == size
