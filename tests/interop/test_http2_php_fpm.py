"""php-fpm behind frontd's HTTP/2 (h2c with prior knowledge): a PHP application sees the stream as
an HTTP/1.1 request with SERVER_PROTOCOL=HTTP/2.0, and a request body arrives whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.integration.h2_client import H2Client
from tests.interop.conftest import PEERS, Peer, parse_output, start_php_fpm

ROOT = os.path.realpath(PEERS / "php")


@pytest.fixture(scope="module")
def server(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd]) -> Frontd:
    fpm = start_php_fpm(peers, workdir, {"a": f"unix:{workdir}/php-h2.sock"})
    config = (f'[[vhost]]\nnames = ["a.test"]\n[[vhost.route]]\nprefix = "/php/"\n'
              f'fastcgi = "{fpm.addresses[0]}"\nroot = "{ROOT}"\nindex = ["index.php"]\n')
    return frontd_module(config, top='listen = [{ address = "127.0.0.1:0", http2 = true }]')


def test_php_sees_http2(server: Frontd) -> None:
    with H2Client(server.port) as c:
        answer = c.get("/php/info.php/extra?x=1", [("x-test", "yes")])
        assert answer.status == 200, answer.body
        info = parse_output(bytes(answer.body))
        assert info["SERVER_PROTOCOL"] == "HTTP/2.0"
        assert info["PATH_INFO"] == "/extra" and info["QUERY_STRING"] == "x=1"
        assert info["HTTP_HOST"] == "a.test" and info["HTTP_X_TEST"] == "yes"


def test_php_reads_a_streamed_body(server: Frontd) -> None:
    body = os.urandom(200_000)
    with H2Client(server.port) as c:
        # Twice: with a content-length, and without one (spooled to learn CONTENT_LENGTH).
        for headers in ([("content-length", str(len(body)))], []):
            answer = c.get("/php/echo.php", headers, method="POST", body=body)
            assert answer.status == 200, answer.body
            report = parse_output(bytes(answer.body))
            assert report["length"] == len(body) and report["sha256"] == hashlib.sha256(body).hexdigest()
            assert report["CONTENT_LENGTH"] == str(len(body))
