"""SCGI routes against a capture backend: the exact netstring head, the body, and the replies."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.http_client import RawClient
from tests.integration.gateway_backends import Answer, CaptureServer, Captured, CaptureServers, free_port, route_config

Start = Callable[..., Frontd]
HOST = {"Host": "app.test"}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[CaptureServers]:
    servers = CaptureServers("scgi", tmp_path)
    yield servers
    servers.stop_all()


def config(address: str, extra: str = "") -> str:
    return route_config("scgi", address, extra=extra)


def test_head_netstring_content_length_first(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    scgi = backend(unix=True)
    server = frontd(config(scgi.address))
    response = requests.get(server.url("/app/a/b?q=1"), headers=HOST, timeout=10)
    assert response.status_code == 200, response.text
    req = scgi.requests[0]
    # protocol.txt §3: CONTENT_LENGTH first and present even when 0, then SCGI=1; a netstring
    # whose length has no leading zero; no body follows.
    assert re.match(rb"[1-9][0-9]*:CONTENT_LENGTH\x000\x00SCGI\x001\x00", req.raw)
    length, _, rest = req.raw.partition(b":")
    assert len(rest) == int(length) + 1 and rest.endswith(b"\x00,")
    names = req.names()
    assert names[:2] == ["CONTENT_LENGTH", "SCGI"]
    assert len(names) == len(set(names))  # §3: no duplicate names
    env = req.env
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/a/b" and env["QUERY_STRING"] == "q=1"
    assert env["REQUEST_METHOD"] == "GET"
    assert req.body == b""


def test_post_and_chunked_body(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    scgi = backend()
    server = frontd(config(scgi.address))
    body = b"0123456789" * 20000
    assert requests.post(server.url("/app/"), data=body, headers=HOST, timeout=10).status_code == 200
    req = scgi.requests[0]
    assert req.raw.split(b":", 1)[1].startswith(b"CONTENT_LENGTH\x00200000\x00SCGI\x001\x00")
    assert req.body == body and req.raw.endswith(b"," + body)

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        yield b"defg" * 1000

    assert requests.post(server.url("/app/"), data=chunks(), headers=HOST, timeout=10).status_code == 200
    req = scgi.requests[1]
    assert req.env["CONTENT_LENGTH"] == str(3 + 4000)
    assert req.body == b"abc" + b"defg" * 1000


@pytest.mark.parametrize("buffering", ["true", "false"])
def test_body_larger_than_the_socket_buffers_arrives_whole(frontd: Start, backend: Callable[..., CaptureServer],
                                                          buffering: str) -> None:
    # 12 MiB: far more than a loopback socket takes at once, so that the sends to the backend
    # are partial and wait for it to read (frontd's own socket writes, no asyncio stream).
    scgi = backend()
    server = frontd(config(scgi.address, extra=f"request_buffering = {buffering}"))  # 16 MiB max
    body = os.urandom(12 << 20)
    response = requests.post(server.url("/app/"), data=body, headers=HOST, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["body_length"] == len(body)
    assert hashlib.sha256(scgi.requests[0].body).digest() == hashlib.sha256(body).digest()


def test_header_hygiene_httpoxy_folding_and_merging(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    scgi = backend()
    server = frontd(config(scgi.address))
    with server.connect() as sock:
        sock.sendall(b"GET /app/ HTTP/1.1\r\nHost: app.test\r\nProxy: http://127.0.0.1:9/\r\nX_Forwarded_For: 6.6.6.6\r\n"
                     b"Remote_User: admin\r\nX-Test: a\r\nX-Test: b\r\nConnection: close\r\n\r\n")
        assert RawClient(sock).read().status == 200
    env = scgi.requests[0].env
    assert not [name for name in env if "PROXY" in name]
    assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_REMOTE_USER" not in env and "REMOTE_USER" not in env
    assert env["HTTP_X_TEST"] == "a, b"


@pytest.mark.parametrize("output,status,reason", [
    (b"Status: 404 Gone Away\r\nContent-Type: text/plain\r\nX-App: 1\r\n\r\nbody", 404, "Gone Away"),
    (b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-App: 1\r\n\r\nbody", 201, "Created"),
    (b"Content-Type: text/plain\nX-App: 1\n\nbody", 200, "OK"),
])
def test_status_and_headers_relayed(frontd: Start, backend: Callable[..., CaptureServer], output: bytes,
                                    status: int, reason: str) -> None:
    scgi = backend(lambda s, r: Answer(output))
    server = frontd(config(scgi.address))
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert (response.status_code, response.reason) == (status, reason)
    assert response.headers["X-App"] == "1"
    assert response.content == b"body"
    response = requests.head(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == status and response.content == b""


def test_response_read_to_eof_and_streamed(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        return Answer(pieces=iter([b"Content-Type: text/plain\r\n\r\n", b"one ", b"two ", b"three"]),
                      piece_delay=0.05)

    scgi = backend(app)
    server = frontd(config(scgi.address))
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert response.text == "one two three"
    assert response.headers.get("Transfer-Encoding") == "chunked"


def test_slow_backend_is_504(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    scgi = backend(lambda s, r: Answer(b"Content-Type: text/plain\r\n\r\nlate", delay=3))
    server = frontd(config(scgi.address, 'timeout = "1s"'))
    started = time.monotonic()
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 504
    assert time.monotonic() - started < 2.5
    server.wait_error_log(rf"504: scgi {scgi.address}: no output for 1s")


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_refused_connect_is_502_quickly(frontd: Start, tmp_path: Path, where: str) -> None:
    address = f"127.0.0.1:{free_port()}" if where == "tcp" else f"unix:{tmp_path / 'nobody.sock'}"
    server = frontd(config(address))
    started = time.monotonic()
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 502
    assert time.monotonic() - started < 1.5
    server.wait_error_log(r"502: scgi .*connect failed")


def test_backend_closing_without_a_head_is_502(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    scgi = backend(lambda s, r: Answer(b"Content-Type: text/pl"))
    server = frontd(config(scgi.address))
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 502
