"""The `scgi` package's pre-forking server (Quixote's) behind frontd, with a WSGI app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.interop.checks import RAMP_10_MIB_SHA256, GatewayPeerChecks
from tests.interop.conftest import Deployment, Peer, free_port, gateway_config, parse_output, start_scgi
from tests.interop.test_flup_fastcgi import WSGI_ENDPOINTS


@pytest.fixture(scope="module")
def deploy(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd]) -> Deployment:
    a = f"unix:{workdir}/scgi-a.sock"
    b = f"127.0.0.1:{free_port()}"
    start_scgi(peers, workdir, "a", a)
    start_scgi(peers, workdir, "b", b)
    server = frontd_module(gateway_config("scgi", a, b, workdir))
    return Deployment(server, "scgi", WSGI_ENDPOINTS, script_mode=False, big_sha256=RAMP_10_MIB_SHA256)


class TestSCGIServer(GatewayPeerChecks):
    def test_scgi_variables(self, deploy: Deployment) -> None:
        info = parse_output(deploy.request("GET", "b", "info").content)
        assert info["SCGI"] == "1"
        assert info["CONTENT_LENGTH"] == "0"
        assert info["SCRIPT_NAME"] == "/two"
