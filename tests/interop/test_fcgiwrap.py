"""fcgiwrap running shell CGI scripts behind frontd in script mode."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.interop.checks import ZERO_10_MIB_SHA256, GatewayPeerChecks
from tests.interop.conftest import (
    PEERS,
    Deployment,
    Peer,
    free_port,
    gateway_config,
    parse_output,
    start_fcgiwrap,
)

ROOT = os.path.realpath(PEERS / "cgi")
ENDPOINTS = {"info": "info.sh", "echo": "echo.sh", "status": "status.sh", "slow": "slow.sh", "big": "big.sh"}


@pytest.fixture(scope="module")
def deploy(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd]) -> Deployment:
    a = f"unix:{workdir}/fcgiwrap-a.sock"
    b = f"127.0.0.1:{free_port()}"
    start_fcgiwrap(peers, workdir, "a", a)
    start_fcgiwrap(peers, workdir, "b", b)
    server = frontd_module(gateway_config("fastcgi", a, b, workdir, root=ROOT))
    return Deployment(server, "fastcgi", ENDPOINTS, script_mode=True, big_sha256=ZERO_10_MIB_SHA256)


class TestFcgiwrap(GatewayPeerChecks):
    def test_script_variables(self, deploy: Deployment) -> None:
        info = parse_output(deploy.request("GET", "b", "info", "/p/q", params={"k": "v"}).content)
        assert info["SCRIPT_FILENAME"] == f"{ROOT}/info.sh"
        assert info["SCRIPT_NAME"] == "/two/info.sh"
        assert info["PATH_INFO"] == "/p/q"
        assert info["QUERY_STRING"] == "k=v"
        assert info["CONTENT_LENGTH"] is None  # RFC 3875 §4.1.2: no body, no CONTENT_LENGTH

    def test_missing_script_is_404(self, deploy: Deployment) -> None:
        assert deploy.request("GET", "a", "nothing.sh").status_code == 404

    def test_stderr_reaches_the_error_log(self, deploy: Deployment) -> None:
        assert deploy.request("GET", "a", "stderr.sh").text == "ok\n"
        deploy.server.wait_error_log(r"fastcgi unix:\S+fcgiwrap-a\.sock stderr: frontd-interop-stderr from a")
