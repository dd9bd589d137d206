"""uwsgi routes against a capture backend: the packet header and vars, the 16-bit limit, magic
variables, and the raw HTTP replies."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.http_client import RawClient
from tests.integration.gateway_backends import Answer, CaptureServer, CaptureServers, free_port, route_config

Start = Callable[..., Frontd]
HOST = {"Host": "app.test"}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[CaptureServers]:
    servers = CaptureServers("uwsgi", tmp_path)
    yield servers
    servers.stop_all()


def config(address: str, extra: str = "") -> str:
    return route_config("uwsgi", address, extra=extra)


def test_packet_header_and_vars(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend(unix=True)
    server = frontd(config(uwsgi.address))
    body = b"x" * 70000  # larger than the 16-bit datasize: the body is not part of it
    response = requests.post(server.url("/app/p/q?z=9"), data=body, headers=HOST, timeout=10)
    assert response.status_code == 200, response.text
    req = uwsgi.requests[0]
    modifier1, datasize, modifier2 = struct.unpack("<BHB", req.raw[:4])
    # modifier1 = 0 (WSGI), datasize covers the vars only, then the body unframed.
    assert (modifier1, modifier2) == (0, 0)
    assert len(req.raw) == 4 + datasize + len(body)
    assert req.raw[4 + datasize:] == body
    env = req.env
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/p/q" and env["QUERY_STRING"] == "z=9"
    assert env["CONTENT_LENGTH"] == "70000"
    assert env["REQUEST_METHOD"] == "POST"


def test_chunked_body_gets_content_length(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend()
    server = frontd(config(uwsgi.address))

    def chunks() -> Iterator[bytes]:
        yield b"12345"
        yield b"6789"

    assert requests.post(server.url("/app/"), data=chunks(), headers=HOST, timeout=10).status_code == 200
    req = uwsgi.requests[0]
    assert req.env["CONTENT_LENGTH"] == "9" and req.body == b"123456789"


def test_header_hygiene_httpoxy_folding_and_merging(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend()
    server = frontd(config(uwsgi.address))
    with server.connect() as sock:
        sock.sendall(b"GET /app/ HTTP/1.1\r\nHost: app.test\r\nproxy: http://127.0.0.1:9/\r\nX_Forwarded_For: 6.6.6.6\r\n"
                     b"Remote_User: admin\r\nX-Test: a\r\nX-Test: b\r\nConnection: close\r\n\r\n")
        assert RawClient(sock).read().status == 200
    env = uwsgi.requests[0].env
    assert not [name for name in env if "PROXY" in name]
    assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_REMOTE_USER" not in env and "REMOTE_USER" not in env
    assert env["HTTP_X_TEST"] == "a, b"


def test_vars_over_65535_bytes_is_431_and_never_sent(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend()
    server = frontd(config(uwsgi.address), top='[limits]\nmax_header_size = "256KiB"\n')
    # Just under: about 60 KB of headers fits the 16-bit vars block.
    under = {**HOST, **{f"X-Pad-{i}": "p" * 5000 for i in range(12)}}
    assert requests.get(server.url("/app/"), headers=under, timeout=10).status_code == 200
    assert len(uwsgi.requests) == 1
    # Just over: 70 KB never goes out with a wrapped size (CVE-2020-11984).
    over = {**HOST, **{f"X-Pad-{i}": "p" * 5000 for i in range(14)}}
    response = requests.get(server.url("/app/"), headers=over, timeout=10)
    assert response.status_code == 431
    assert len(uwsgi.requests) == 1 and uwsgi.connections == 1
    server.wait_error_log(r"431: uwsgi: request variables do not fit a packet")


def test_magic_variables_only_from_the_route(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend()
    server = frontd(config(uwsgi.address, 'env = { UWSGI_SCHEME = "https", APP_MODE = "test" }'))
    headers = {**HOST, "UWSGI-FILE": "/tmp/evil.py", "Uwsgi-Script": "evil"}
    assert requests.get(server.url("/app/"), headers=headers, timeout=10).status_code == 200
    env = uwsgi.requests[0].env
    # Client data never names a UWSGI_* variable; the administrator's env may.
    assert [name for name in env if name.startswith("UWSGI_")] == ["UWSGI_SCHEME"]
    assert env["HTTP_UWSGI_FILE"] == "/tmp/evil.py"
    assert env["APP_MODE"] == "test"


def test_http_status_line_and_headers_relayed(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    output = b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/plain\r\nX-App: tea\r\n\r\nshort and stout"
    uwsgi = backend(lambda s, r: Answer(output))
    server = frontd(config(uwsgi.address))
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert (response.status_code, response.reason) == (418, "I'm a teapot")
    assert response.headers["X-App"] == "tea" and response.text == "short and stout"
    response = requests.head(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == 418 and response.content == b""


def test_slow_backend_is_504(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    uwsgi = backend(lambda s, r: Answer(b"HTTP/1.1 200 OK\r\n\r\nlate", delay=3))
    server = frontd(config(uwsgi.address, 'timeout = "1s"'))
    started = time.monotonic()
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 504
    assert time.monotonic() - started < 2.5
    server.wait_error_log(rf"504: uwsgi {uwsgi.address}: no output for 1s")


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_refused_connect_is_502_quickly(frontd: Start, tmp_path: Path, where: str) -> None:
    address = f"127.0.0.1:{free_port()}" if where == "tcp" else f"unix:{tmp_path / 'nobody.sock'}"
    server = frontd(config(address))
    started = time.monotonic()
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 502
    assert time.monotonic() - started < 1.5
