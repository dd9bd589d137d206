"""What the Protocol-based HTTP/1.1 connection could break, at the socket: requests split across
reads at every byte, backpressure from a client that reads nothing, the one timer serving each
phase's timeout, and resets while writes wait."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient, parse_one
from tests.integration.processes import open_sockets, resident, worker_of

CONFIG = """
workers = 1
[limits]
header_timeout = "{header}"
keepalive_timeout = "{keepalive}"
body_timeout = "1s"
send_timeout = "1s"

[[vhost]]
names = ["site.test"]
default = true
root = "{root}"
"""
# Under 64 KiB: the body is read and written through the transport, not sent by sendfile(2).
WRITTEN_SIZE = 60 * 1024
RSS_BOUND = 16 << 20


def start(frontd, root: Path, header: str = "10s", keepalive: str = "10s") -> Frontd:
    (root / "written.bin").write_bytes(b"w" * WRITTEN_SIZE)
    return frontd(CONFIG.format(root=root, header=header, keepalive=keepalive))


def still_serving(server: Frontd) -> None:
    response = requests.get(server.url("/hello.txt"), timeout=5)
    assert response.status_code == 200 and response.text == "hello\n"


def test_pipelined_requests_split_at_every_byte(frontd, site: Path) -> None:
    # A GET, a body by Content-Length, a chunked body and a GET: every boundary (head end, body
    # end, chunk size line, next request) falls between two reads once.
    batch = (b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n"
             b"POST /hello.txt HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\n\r\nabcde"
             b"POST /hello.txt HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nxyz\r\n0\r\n\r\n"
             b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
    server = start(frontd, site)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = RawClient(sock)
        for split in range(1, len(batch)):
            sock.sendall(batch[:split])
            sock.sendall(batch[split:])
            first, post, chunked, last = (client.read(), client.read("POST"), client.read("POST"), client.read())
            assert (first.status, first.body) == (200, b"hello\n"), split
            assert post.status == 405 and chunked.status == 405, split  # bodies read away, not parsed
            assert (last.status, last.body) == (200, b"<h1>home</h1>\n"), split
    assert "400:" not in server.errors()


def test_bodiless_requests_pipelined_but_not_after_an_upgrade(frontd, site: Path) -> None:
    """A request without a body ends with its head (h11 is not asked for its EndOfMessage); one
    with an Upgrade field is a protocol switch proposal to h11, and a static answer to it ends
    the connection: the request pipelined after it is not taken for HTTP/1.1."""
    server = start(frontd, site)
    plain = b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n"
    upgrade = b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n"
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(plain * 3 + upgrade + plain)
        for _ in range(4):
            answer = client.read()
            assert (answer.status, answer.body) == (200, b"hello\n")
        assert client.closed_by_peer()
    still_serving(server)


def test_client_that_pipelines_and_reads_nothing_is_bounded_then_dropped(frontd, site: Path) -> None:
    # Megabytes of pipelined requests for 60 KiB answers it never reads: frontd stops reading
    # (its buffer bounded) and stops writing (the transport paused), then after send_timeout
    # drops the connection instead of keeping its unsent bytes for a client that reads nothing.
    server = start(frontd, site)
    worker = worker_of(server)
    sockets_before = open_sockets(worker)  # the listener alone: no connection yet
    still_serving(server)
    rss_before = resident(worker)
    sock = server.connect()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        request = b"GET /written.bin HTTP/1.1\r\nHost: site.test\r\n\r\n"
        batch = request * 1000
        sent = 0
        while sent < 64 << 20:  # far more than frontd may hold: the kernel's buffers fill first
            try:
                sent += sock.send(batch)
            except BlockingIOError:
                break
        assert sent > 1 << 20, "frontd stopped reading before a megabyte"
        server.wait_access_log(r'"GET /written.bin HTTP/1.1" 200 ', timeout=10)
        grown = resident(worker) - rss_before
        assert grown < RSS_BOUND, f"the worker's RSS grew by {grown >> 20} MiB"
        # The client still holds its socket open and unread: frontd's side must close anyway.
        wait_for(lambda: open_sockets(worker) <= sockets_before, 10, "the stalled connection to be dropped")
        still_serving(server)
    finally:
        sock.close()
    assert "Traceback" not in server.errors()


def test_head_timeout_after_a_long_keep_alive_wait(frontd, site: Path) -> None:
    # The connection's timer first waits for keepalive_timeout (10 s), then the next head's
    # header_timeout (1 s) must end the request well before that.
    server = start(frontd, site, header="1s", keepalive="10s")
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert client.read().status == 200
        client.send(b"GET /hello.txt HTTP/1.1\r\nHo")
        started = time.monotonic()
        sock.settimeout(8)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        elapsed = time.monotonic() - started
    assert parse_one(data).status == 408
    assert 0.8 < elapsed < 8
    server.wait_error_log(r"408: request head not complete")


def test_keep_alive_timeout_after_a_short_header_wait(frontd, site: Path) -> None:
    # The reverse order: a request's head waited on (1 s header_timeout), then the idle time
    # between requests is keepalive_timeout (3 s), not the shorter deadline armed before it.
    server = start(frontd, site, header="1s", keepalive="3s")
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"GET /hello.txt HTTP/1.1\r\n")
        client.send(b"Host: site.test\r\n\r\n")
        assert client.read().status == 200
        started = time.monotonic()
        assert client.closed_by_peer(timeout=10)
        elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 10


@pytest.mark.parametrize("body", [b"Content-Length: 100\r\n\r\n0123456789",
                                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n"])
def test_stalled_body_after_some_bytes(frontd, site: Path, body: bytes) -> None:
    server = start(frontd, site)
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"POST /hello.txt HTTP/1.1\r\nHost: site.test\r\n" + body)
        assert client.read("POST").status == 405
        started = time.monotonic()
        assert client.closed_by_peer(timeout=8)
        assert time.monotonic() - started > 0.8
    still_serving(server)


def test_reset_while_writes_wait(frontd, site: Path) -> None:
    server = start(frontd, site)
    worker = worker_of(server)
    before = open_sockets(worker)
    for _ in range(5):
        sock = server.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /written.bin HTTP/1.1\r\nHost: site.test\r\n\r\n" * 50)
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST with answers still queued in frontd
    wait_for(lambda: open_sockets(worker) <= before, 10, "the reset connections to be released")
    still_serving(server)
    assert "Traceback" not in server.errors()
