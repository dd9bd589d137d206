"""A backend that resets its connection (TCP RST), for every socket gateway: before the response
started it is the backend's failure (502, one error-log line naming the backend), not a client
that left (499); after, the client's connection is closed with the response cut short."""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Frontd, recv_all, wait_for
from tests.integration.gateway_backends import WAIT, Answer, CaptureServer, Captured
from tests.integration.processes import children

Start = Callable[..., Frontd]
PROTOCOLS = ("fastcgi", "scgi", "uwsgi")
REQUEST = b"GET /app/ HTTP/1.1\r\nHost: app.test\r\n\r\n"


@pytest.fixture
def backend() -> Iterator[Callable[..., CaptureServer]]:
    started: list[CaptureServer] = []

    def start(protocol: str, app: Callable[[CaptureServer, Captured], Answer]) -> CaptureServer:
        # TCP: SO_LINGER 0 makes close() a reset there (a Unix socket has no such thing).
        server = CaptureServer(protocol, app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def config(protocol: str, address: str) -> str:
    return f"""
[[vhost]]
names = ["app.test"]

  [[vhost.route]]
  prefix = "/app/"
  {protocol} = "{address}"
"""


def head(protocol: str, fields: bytes) -> bytes:
    """A response head as the protocol's backends write it (uWSGI answers in HTTP)."""
    return (b"HTTP/1.1 200 OK\r\n" if protocol == "uwsgi" else b"") + fields + b"\r\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_before_the_response_is_502(frontd: Start, backend: Callable[..., CaptureServer],
                                          protocol: str) -> None:
    server_backend = backend(protocol, lambda s, r: Answer(reset=True))
    server = frontd(config(protocol, server_backend.address))
    with server.connect() as sock:
        sock.sendall(REQUEST)
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    assert len(server_backend.requests) == 1
    line = server.wait_error_log(rf"502: {protocol} {re.escape(server_backend.address)}: .*")
    assert "connection lost" in line.group(0) or "reset" in line.group(0).lower()
    server.wait_access_log(r'"GET /app/ HTTP/1\.1" 502 ')
    # One line for the one failure, and no client blamed for it.
    assert len(re.findall(re.escape(server_backend.address), server.errors())) == 1
    assert '" 499 ' not in server.access()


def read_until_closed(sock: socket.socket, received: bytes) -> bytes:
    sock.settimeout(WAIT)
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):  # a timeout: the response looked complete
            return received
        if not data:
            return received
        received += data


def read_half_then_cut(server: Frontd, cut: threading.Event) -> bytes:
    """Send REQUEST; once 50 body bytes ("h") arrived, let the backend fail; all that came."""
    with server.connect() as sock:
        sock.sendall(REQUEST)
        received = b""
        while received.count(b"h") < 50:
            data = sock.recv(65536)
            assert data, received
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
        cut.set()
        return read_until_closed(sock, received)


def assert_cut(server: Frontd, received: bytes, length: bool, where: str) -> None:
    """Closed with the body cut short: never completed, never padded, no chunked terminator
    (issue 13 section 3), and the access log line marked as cut."""
    if length:
        assert b"content-length: 100\r\n" in received.lower()
        assert received.endswith(b"\r\n\r\n" + b"h" * 50)
    else:
        assert b"transfer-encoding: chunked\r\n" in received.lower()
        assert received.endswith(b"\r\n32\r\n" + b"h" * 50 + b"\r\n"), received[-80:]
    server.wait_error_log(rf"{where}: .*after the response started; closing")
    server.wait_access_log(r'"GET /app/ HTTP/1\.1" 200 50 "-" "-" cut$')
    assert '" 499 ' not in server.access()


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "close-delimited"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_inside_the_response_closes_the_client_connection(
        frontd: Start, backend: Callable[..., CaptureServer], protocol: str, length: bool) -> None:
    client_has_half = threading.Event()
    fields = b"Content-Type: text/plain\r\n" + (b"Content-Length: 100\r\n" if length else b"")

    def app(server: CaptureServer, req: Captured) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield head(protocol, fields) + b"h" * 50
            client_has_half.wait(WAIT)  # then reset, with 50 of the body's bytes sent

        return Answer(pieces=pieces(), reset=True)

    server_backend = backend(protocol, app)
    server = frontd(config(protocol, server_backend.address))
    received = read_half_then_cut(server, client_has_half)
    assert_cut(server, received, length, f"{protocol} {re.escape(server_backend.address)}")


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "close-delimited"])
def test_proxy_reset_inside_the_response_closes_the_client_connection(frontd: Start, length: bool) -> None:
    # The backend answers HTTP/1.1 with a Content-Length or close-delimited (neither it nor
    # chunked), sends half, then resets: a read error, never to be taken for the body's end.
    client_has_half = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         + (b"Content-Length: 100\r\n" if length else b"Connection: close\r\n")
                         + b"\r\n" + b"h" * 50)
            client_has_half.wait(WAIT)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        server = frontd(config("proxy", f"http://127.0.0.1:{port}"))
        received = read_half_then_cut(server, client_has_half)
    finally:
        client_has_half.set()
        thread.join(WAIT)
        listener.close()
    assert_cut(server, received, length, rf"proxy 127\.0\.0\.1:{port}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_then_a_fresh_request_is_served(frontd: Start, backend: Callable[..., CaptureServer],
                                              protocol: str) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        if len(server.requests) == 1:
            return Answer(reset=True)
        return Answer(head(protocol, b"Content-Type: text/plain\r\nContent-Length: 2\r\n") + b"ok")

    server_backend = backend(protocol, app)
    server = frontd(config(protocol, server_backend.address))
    with server.connect() as sock:
        sock.sendall(REQUEST)
        assert sock.recv(100).startswith(b"HTTP/1.1 502 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(REQUEST)
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_many_concurrent_exchanges_some_reset_leave_no_fd_behind(frontd: Start,
                                                                 backend: Callable[..., CaptureServer],
                                                                 protocol: str) -> None:
    # Every backend connection is a socket of frontd's own (no asyncio transport): answered,
    # reset before or inside the response, each one is closed and leaves the event loop.
    def app(server: CaptureServer, req: Captured) -> Answer:
        turn = req.env.get("QUERY_STRING", "")
        if turn.endswith("3"):
            return Answer(reset=True)
        if turn.endswith("7"):
            return Answer(head(protocol, b"Content-Type: text/plain\r\nContent-Length: 9\r\n") + b"par",
                          reset=True)
        return Answer(head(protocol, b"Content-Type: text/plain\r\nContent-Length: 2\r\n") + b"ok")

    server_backend = backend(protocol, app)
    server = frontd(config(protocol, server_backend.address))
    with server.connect() as sock:  # a first exchange opens what a worker keeps
        sock.sendall(REQUEST)
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
    [worker] = children(server.pid)  # forked and serving: it answered
    before = len(os.listdir(f"/proc/{worker}/fd"))
    socks = []
    for i in range(40):
        sock = server.connect()
        sock.sendall(f"GET /app/?n={i} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n".encode())
        socks.append((i, sock))
    for i, sock in socks:
        sock.settimeout(WAIT)
        answer = recv_all(sock)
        sock.close()
        expected = b"HTTP/1.1 502 " if i % 10 == 3 else b"HTTP/1.1 200 "
        assert answer.startswith(expected), (i, answer[:200])
    wait_for(lambda: len(os.listdir(f"/proc/{worker}/fd")) <= before, 10, f"the worker's fds back to {before}")
