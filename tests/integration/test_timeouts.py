"""Each phase's timeout and the connection limit, tested at the socket with short limits."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, recv_all
from tests.http_client import RawClient, parse_one

CONFIG = """
[limits]
header_timeout = "{header}"
body_timeout = "1s"
send_timeout = "1s"
keepalive_timeout = "1s"
max_connections = {max_connections}

[[vhost]]
names = ["site.test"]
root = "{root}"
"""


def start(frontd, root: Path, header: str = "1s", max_connections: int = 100) -> Frontd:
    return frontd(CONFIG.format(root=root, header=header, max_connections=max_connections))


def test_stalled_head_gets_408_and_close(frontd, site: Path) -> None:
    server = start(frontd, site)
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHo")
        started = time.monotonic()
        data = recv_all(sock)
    assert parse_one(data).status == 408
    assert parse_one(data).headers["connection"] == "close"
    assert 0.8 < time.monotonic() - started < 5
    server.wait_error_log(r"408: request head not complete")
    assert requests.get(server.url("/hello.txt"), timeout=5).status_code == 200


def test_trickled_head_gets_408(frontd, site: Path) -> None:
    # Slowloris: each byte arrives in time, the whole head does not.
    server = start(frontd, site)
    head = b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nX-Slow: " + b"a" * 100
    with server.connect() as sock:
        sock.settimeout(0.2)
        got = b""
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got = sock.recv(4096)
            except TimeoutError:
                continue
            break
        sock.settimeout(5)
        got += recv_all(sock)
    assert parse_one(got).status == 408


def test_connection_without_request_is_closed(frontd, site: Path) -> None:
    server = start(frontd, site)
    with server.connect() as sock:
        sock.settimeout(5)
        data = recv_all(sock)  # returns once the server closes
    assert parse_one(data).status == 408


def test_idle_keep_alive_closed_silently(frontd, site: Path) -> None:
    server = start(frontd, site, header="10s")
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert client.read().status == 200
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed, and no 408 sent to an idle connection
        assert 0.8 < time.monotonic() - started < 5


def test_stalled_body_closes_the_connection(frontd, site: Path) -> None:
    server = start(frontd, site, header="10s")
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"POST /hello.txt HTTP/1.1\r\nHost: site.test\r\nContent-Length: 100\r\n\r\n0123456789")
        assert client.read().status == 405
        started = time.monotonic()
        assert client.closed_by_peer(timeout=5)
        assert time.monotonic() - started > 0.8


def test_client_that_stops_reading_is_dropped(frontd, site: Path) -> None:
    size = 64 << 20
    with open(site / "big.bin", "wb") as f:
        f.truncate(size)
    server = start(frontd, site, header="10s")
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: site.test\r\n\r\n")
        match = server.wait_access_log(r'"GET /big.bin HTTP/1.1" 200 (\d+)', timeout=15)
        assert int(match.group(1)) < size
    finally:
        sock.close()
    assert requests.get(server.url("/hello.txt"), timeout=5).status_code == 200


def test_max_connections_pauses_accepting(frontd, site: Path) -> None:
    server = start(frontd, site, header="30s", max_connections=2)
    first, second = server.connect(), server.connect()
    for sock in (first, second):
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert RawClient(sock).read().status == 200
    third = server.connect()  # the kernel completes the handshake; frontd does not accept yet
    try:
        third.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(100)
        first.close()
        third.settimeout(10)
        assert RawClient(third).read().status == 200
    finally:
        for sock in (first, second, third):
            sock.close()
