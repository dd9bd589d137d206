"""Response buffering on proxy routes (issue 13 §1): a slow reader does not hold a backend connection.

Streamed, the proxy read a backend's response only as fast as the client took it, so a client
that reads slowly held the backend's connection (and, behind it, a worker of the backend) for
as long as it took. Buffered (the default) the body is read as fast as the backend sends it,
into memory then a temporary file, and the connection goes back to the pool at once.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient
from tests.integration.proxy_backend import Backends, Received, Reply, default_app, pattern
from tests.integration.test_backend_stray_bytes import unread_by_peer
from tests.integration.test_proxy import echo, route

Start = Callable[..., Frontd]

LARGE = 16 << 20  # far more than the socket buffers between backend, frontd and client hold


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def test_a_slow_reader_does_not_hold_the_backend_connection(frontd: Start, backends: Backends) -> None:
    sent: list[socket.socket] = []  # the backend's side of the connection that sent the large body
    done = threading.Event()

    def app(backend: object, req: Received, reply: Reply) -> None:
        if req.target == "/large":
            reply.send(200, pattern(LARGE), [("content-type", "application/octet-stream")])
            sent.append(reply.sock)
            done.set()
        else:
            default_app(backend, req, reply)  # type: ignore[arg-type]

    backend = backends.start(app)
    server = frontd(route(backend.url))
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that takes little
        slow.settimeout(30)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b"GET /large HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        # The backend wrote the whole body and frontd read all of it, while the client has read
        # nothing: streamed, the backend stays blocked with most of it unsent.
        wait_for(done.is_set, 10, "the backend to write the whole body")
        wait_for(lambda: unread_by_peer(sent[0]) == 0, 10, "frontd to read the whole body")
        # The connection goes back to the pool while the client still reads: a later request
        # reuses it. frontd may not have handed the last bytes to its buffer yet when a probe
        # arrives, which then opens a connection of its own; and the pool hands out the most
        # recently idle connection first. So each round sends as many requests at once as there
        # are connections: they take every idle one, the first among them once it is back.
        def reused() -> bool:
            with ThreadPoolExecutor(backend.accepted) as pool:
                answers = list(pool.map(lambda _: echo(requests.get(
                    server.url("/next"), headers={"Host": "example.test"}, timeout=5)), range(backend.accepted)))
            return any(data["connection"] == 1 for data in answers)

        wait_for(reused, 10, "a request to reuse the connection that carried the large body")
        assert backend.accepted <= 3
        answer = RawClient(slow).read()
    assert answer.status == 200 and answer.body == pattern(LARGE)


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "close-delimited"])
def test_a_large_buffered_response_cut_by_the_backend_looks_cut(frontd: Start, length: bool) -> None:
    """Issue 13 §3 through the response buffer: a backend that resets after 2 MiB of a larger
    body (or of a close-delimited one) gives the client a response without its end, on a
    connection frontd closes, and the access log says "cut"."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         + (b"Content-Length: %d\r\n" % LARGE if length else b"Connection: close\r\n")
                         + b"\r\n" + pattern(2 << 20))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        server = frontd(route(f"http://127.0.0.1:{port}"))
        with server.connect(timeout=10) as sock:
            sock.sendall(b"GET /cut HTTP/1.1\r\nHost: example.test\r\n\r\n")  # keep-alive asked
            received = bytearray()
            while data := sock.recv(65536):  # frontd closes the connection
                received += data
    finally:
        thread.join(10)
        listener.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    if length:
        assert b"content-length: %d" % LARGE in head.lower() and len(body) < LARGE
    else:
        assert b"transfer-encoding: chunked" in head.lower() and not body.endswith(b"\r\n0\r\n\r\n")
    server.wait_access_log(r'"GET /cut HTTP/1\.1" 200 \d+ "-" "-" cut$')
