"""A backend that resets its connection (TCP RST), for every socket gateway: before the response
started it is the backend's failure (502, one error-log line naming the backend), not a client
that left (499); after, the client's connection is closed with the response cut short."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Frontd
from tests.integration.gateway_backends import WAIT, Answer, CaptureServer, Captured

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


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_inside_the_response_closes_the_client_connection(
        frontd: Start, backend: Callable[..., CaptureServer], protocol: str) -> None:
    client_has_half = threading.Event()

    def app(server: CaptureServer, req: Captured) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield head(protocol, b"Content-Type: text/plain\r\nContent-Length: 100\r\n") + b"h" * 50
            client_has_half.wait(WAIT)  # then reset, with 50 of the 100 bytes sent

        return Answer(pieces=pieces(), reset=True)

    server_backend = backend(protocol, app)
    server = frontd(config(protocol, server_backend.address))
    with server.connect() as sock:
        sock.sendall(REQUEST)
        received = b""
        while not received.endswith(b"h" * 50):
            data = sock.recv(65536)
            assert data, received
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
        client_has_half.set()
        sock.settimeout(WAIT)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    # Closed with the body cut short: never completed, never padded.
    assert received.endswith(b"\r\n\r\n" + b"h" * 50)
    server.wait_error_log(rf"{protocol} {re.escape(server_backend.address)}: .*after the response started; "
                          r"closing")
    assert '" 499 ' not in server.access()


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
