"""Pooled backend connections never carry stray bytes to the next client (issue 13 section 2).

Each fake backend is a raw socket on a Unix socket in tmp_path that misbehaves on purpose: a
second response after the first, the body of a HEAD response, FastCGI records after
FCGI_END_REQUEST. Bytes sent "later" go out once the first client has its response, and the
next client asks only once frontd has read them (the backend's send queue is empty: on a Unix
socket that means the peer read them), so the stray bytes are in frontd before the next request
in every run. Every test asserts the next client's response is its own.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for

WAIT = 10.0
EVIL = b"HTTP/1.1 200 OK\r\nSet-Cookie: evil=1\r\nContent-Length: 4\r\n\r\nevil"
Serve = Callable[[socket.socket, int], None]


class RawBackend:
    """Accepts on a Unix socket; connection n (from 1) runs `serve(sock, n)` in a thread."""

    def __init__(self, path: str, serve: Serve) -> None:
        self.path = path
        self.serve = serve
        self.first_answered = threading.Event()  # the test has client 1's response
        self.stray_read = threading.Event()  # frontd read the stray bytes
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            sock.settimeout(WAIT)
            self.socks.append(sock)
            thread = threading.Thread(target=self._run, args=(sock, number), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, number: int) -> None:
        try:
            self.serve(sock, number)
        except OSError:
            pass  # frontd closed the connection: what these tests expect of stray bytes

    def send_later(self, sock: socket.socket, data: bytes) -> None:
        """Send `data` once client 1 has its response; return once frontd has read it."""
        self.first_answered.wait(WAIT)
        sock.sendall(data)
        wait_for(lambda: unread_by_peer(sock) == 0, WAIT, "frontd to read the stray bytes")
        self.stray_read.set()

    def stop(self) -> None:
        for sock in (self.listener, *self.socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept or recv
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(WAIT)


def unread_by_peer(sock: socket.socket) -> int:
    """Bytes sent on a Unix socket that the other side has not read yet (TIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])


def http_head(sock: socket.socket) -> bytes:
    """One request head (these tests send no bodies); b"" when the connection closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def own(number: int) -> bytes:
    body = f"own {number}".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Callable[[Serve], RawBackend]]:
    started: list[RawBackend] = []

    def start(serve: Serve) -> RawBackend:
        started.append(RawBackend(str(tmp_path / f"b{len(started)}.sock"), serve))
        return started[-1]

    yield start
    for raw in started:
        raw.stop()


def two_clients(server: Frontd, raw: RawBackend, first_method: str = "GET",
                later: bool = True) -> requests.Response:
    """Client 1 (`first_method`), then, once the stray bytes are in frontd, client 2 (a GET on a
    new client connection); client 2's response."""
    first = requests.request(first_method, server.url("/first"), timeout=WAIT)
    assert first.status_code == 200, first.text
    raw.first_answered.set()
    if later:
        assert raw.stray_read.wait(WAIT), "the backend did not send its stray bytes"
    second = requests.get(server.url("/second"), timeout=WAIT)
    assert "evil" not in second.headers.get("Set-Cookie", ""), second.headers
    return second


# -- HTTP proxy ---------------------------------------------------------------------------------


def config(raw: RawBackend, kind: str) -> str:
    """One route to `raw`: a proxy (keep-alive by default), or FastCGI with keep-alive."""
    target = f'proxy = "http://unix:{raw.path}"' if kind == "proxy" else f'fastcgi = "unix:{raw.path}"\nkeepalive = 2'
    return f"""
[[vhost]]
names = ["app.test"]
default = true

  [[vhost.route]]
  prefix = "/"
  {target}
"""


def test_proxy_second_response_later_on_an_idle_connection(frontd: Callable[..., Frontd],
                                                            backend: Callable[[Serve], RawBackend]) -> None:
    def serve(sock: socket.socket, number: int) -> None:
        while http_head(sock):
            sock.sendall(own(number))
            if number == 1:
                raw.send_later(sock, EVIL)

    raw = backend(serve)
    server = frontd(config(raw, "proxy"))
    second = two_clients(server, raw)
    assert second.content == b"own 2"
    server.wait_error_log(r"proxy unix:\S+: \d+ byte\(s\) on an idle connection, which belong to no request")


def test_proxy_head_body_in_a_later_segment(frontd: Callable[..., Frontd],
                                            backend: Callable[[Serve], RawBackend]) -> None:
    # A HEAD response has no body (RFC 9110 §9.3.2), whatever its Content-Length says; a backend
    # that sends one anyway sends bytes that belong to no response.
    def serve(sock: socket.socket, number: int) -> None:
        while head := http_head(sock):
            if head.startswith(b"HEAD "):
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(EVIL))
                raw.send_later(sock, EVIL)
            else:
                sock.sendall(own(number))

    raw = backend(serve)
    server = frontd(config(raw, "proxy"))
    second = two_clients(server, raw, "HEAD")
    assert second.content == b"own 2"


def test_proxy_second_response_in_the_same_segment(frontd: Callable[..., Frontd],
                                                   backend: Callable[[Serve], RawBackend]) -> None:
    def serve(sock: socket.socket, number: int) -> None:
        while http_head(sock):
            sock.sendall(own(number) + (EVIL if number == 1 else b""))

    raw = backend(serve)
    server = frontd(config(raw, "proxy"))
    second = two_clients(server, raw, later=False)
    assert second.content == b"own 2"


# -- FastCGI ------------------------------------------------------------------------------------


def record(record_type: int, request_id: int, content: bytes = b"") -> bytes:
    return struct.pack(">BBHHBx", 1, record_type, request_id, len(content), 0) + content


def answer(request_id: int, text: bytes) -> bytes:
    """FCGI_STDOUT with a CGI response, the empty STDOUT, and FCGI_END_REQUEST (complete)."""
    return (record(6, request_id, b"Content-Type: text/plain\r\n\r\n" + text) + record(6, request_id)
            + record(3, request_id, b"\0" * 8))


STRAY = b"Status: 200\r\nSet-Cookie: evil=1\r\nContent-Type: text/plain\r\n\r\nevil"


def fastcgi_request(sock: socket.socket) -> int:
    """Read one request (up to the empty FCGI_STDIN); its request id, 0 when the connection closed."""
    buffer = b""
    while True:
        while len(buffer) >= 8:
            _, record_type, request_id, length, padding = struct.unpack(">BBHHBx", buffer[:8])
            if len(buffer) < 8 + length + padding:
                break
            buffer = buffer[8 + length + padding:]
            if record_type == 5 and length == 0:
                return int(request_id)
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        buffer += chunk


def test_fastcgi_records_after_end_request_later(frontd: Callable[..., Frontd],
                                                 backend: Callable[[Serve], RawBackend]) -> None:
    def serve(sock: socket.socket, number: int) -> None:
        while rid := fastcgi_request(sock):
            sock.sendall(answer(rid, b"own %d" % number))
            if number == 1:
                raw.send_later(sock, record(6, rid, STRAY) + record(3, rid, b"\0" * 8))

    raw = backend(serve)
    server = frontd(config(raw, "fastcgi"))
    second = two_clients(server, raw)
    assert second.content == b"own 2"


def test_fastcgi_records_after_end_request_in_the_same_segment(frontd: Callable[..., Frontd],
                                                               backend: Callable[[Serve], RawBackend]) -> None:
    def serve(sock: socket.socket, number: int) -> None:
        while rid := fastcgi_request(sock):
            stray = record(6, rid, STRAY) + record(3, rid, b"\0" * 8) if number == 1 else b""
            sock.sendall(answer(rid, b"own %d" % number) + stray)

    raw = backend(serve)
    server = frontd(config(raw, "fastcgi"))
    second = two_clients(server, raw, later=False)
    assert second.content == b"own 2"
    server.wait_error_log(r"fastcgi unix:\S+: \d+ byte\(s\) after FCGI_END_REQUEST: connection closed")


def test_fastcgi_late_records_of_the_previous_request(frontd: Callable[..., Frontd],
                                                      backend: Callable[[Serve], RawBackend]) -> None:
    # The previous request's records come just ahead of the answer to the next one, on the same
    # kept connection: told apart by request id, dropped, and the connection not kept again.
    def serve(sock: socket.socket, number: int) -> None:
        previous: list[int] = []
        while rid := fastcgi_request(sock):
            stray = b"".join(record(6, old, STRAY) + record(3, old, b"\0" * 8) for old in previous)
            sock.sendall(stray + answer(rid, b"own %d" % rid))
            previous.append(rid)

    raw = backend(serve)
    server = frontd(config(raw, "fastcgi"))
    second = two_clients(server, raw, later=False)
    assert second.content == b"own 2"  # request 2 of the kept connection
    server.wait_error_log(r"record type 6 of \d+ byte\(s\) for request 1, not the active request 2: dropped")
    third = requests.get(server.url("/third"), timeout=WAIT)
    assert third.content == b"own 1"  # a new connection: that one was not kept
