"""uWSGI (--socket mode, python3 plugin) behind frontd: a WSGI app mounted under a prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.interop.checks import RAMP_10_MIB_SHA256, GatewayPeerChecks
from tests.interop.conftest import Deployment, Peer, free_port, gateway_config, parse_output, start_uwsgi
from tests.interop.test_flup_fastcgi import WSGI_ENDPOINTS


@pytest.fixture(scope="module")
def deploy(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd]) -> Deployment:
    a = f"unix:{workdir}/uwsgi-a.sock"
    b = f"127.0.0.1:{free_port()}"
    start_uwsgi(peers, workdir, "a", a)
    start_uwsgi(peers, workdir, "b", b)
    server = frontd_module(gateway_config("uwsgi", a, b, workdir))
    return Deployment(server, "uwsgi", WSGI_ENDPOINTS, script_mode=False, big_sha256=RAMP_10_MIB_SHA256)


class TestUwsgi(GatewayPeerChecks):
    def test_mounted_app_builds_links_under_its_prefix(self, deploy: Deployment) -> None:
        # No uWSGI --mount or modifier1 30 tricks: SCRIPT_NAME comes from the route.
        info = parse_output(deploy.request("GET", "a", "", "deep/er").content)
        assert info["SCRIPT_NAME"] == "/one" and info["PATH_INFO"] == "/deep/er"
        assert info["app_url"] == "/one/"
        assert info["REQUEST_URI"] == "/one/deep/er"

    def test_magic_header_is_only_an_http_variable(self, deploy: Deployment) -> None:
        # A client cannot name uWSGI's magic variables: UWSGI-File stays HTTP_UWSGI_FILE.
        response = deploy.request("GET", "a", "info", headers={"UWSGI-File": "/etc/passwd"})
        assert response.status_code == 200
        assert parse_output(response.content)["peer"] == "a"
