"""HTTP/1.1 backends for the proxy tests: a small threaded h11 server on 127.0.0.1:0 or a Unix socket.

Each accepted connection is served by a thread of its own, with keep-alive, so the tests can count
connections. The default application echoes what it received as JSON; a few paths do what the
tests need (stream, stall, download). `stop()` closes the listener and every connection.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

WAIT = 10.0  # upper bound of every wait inside a backend, so a failing test cannot hang


@dataclass
class Received:
    """A request as the backend saw it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool
    connection: int  # 1 for the first connection the backend accepted, 2 for the next...
    number: int  # the request's position on its connection, from 1

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def as_json(self, name: str) -> bytes:
        return json.dumps({
            "backend": name,
            "method": self.method,
            "target": self.target,
            "headers": self.headers,
            "body_length": len(self.body),
            "body_sha256": hashlib.sha256(self.body).hexdigest(),
            "chunked": self.chunked,
            "connection": self.connection,
        }).encode()


class Reply:
    """How an application answers on the connection: h11 events or raw bytes."""

    def __init__(self, h: h11.Connection, sock: socket.socket) -> None:
        self.h = h
        self.sock = sock
        self.close_now = False  # set by raw answers: the connection ends after them

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.sock.sendall(self.h.send(h11.Response(status_code=status, headers=headers)) or b"")

    def write(self, data: bytes) -> None:
        self.sock.sendall(self.h.send(h11.Data(data=data)) or b"")

    def end(self) -> None:
        self.sock.sendall(self.h.send(h11.EndOfMessage()) or b"")

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.start(status, [("content-length", str(len(body))), *(headers or [])])
        self.write(body)
        self.end()

    def raw(self, data: bytes) -> None:
        """Write bytes as they are and close: for malformed answers."""
        self.sock.sendall(data)
        self.close_now = True


App = Callable[["Backend", Received, Reply], None]


def pattern(n: int) -> bytes:
    """n deterministic, not too compressible bytes."""
    block = hashlib.sha256(b"frontd").digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


def default_app(backend: Backend, req: Received, reply: Reply) -> None:
    """/stream, /endless, /slow, /download?n=&chunked=1; anything else echoes the request as JSON."""
    path, _, query = req.target.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    if path.endswith("/stream"):
        reply.start(200, [("content-type", "text/plain")])
        reply.write(b"first chunk\n")
        backend.release.wait(WAIT)
        reply.write(b"second chunk\n")
        reply.end()
    elif path.endswith("/endless"):  # streams until the proxy stops reading (bounded: 256 MiB)
        reply.start(200, [("content-type", "application/octet-stream")])
        reply.write(b"first chunk\n")
        backend.release.wait(WAIT)
        block = pattern(65536)
        for _ in range(4096):
            reply.write(block)
        reply.end()
    elif path.endswith("/slow"):
        backend.release.wait(WAIT)
        reply.send(200, b"late\n")
    elif path.endswith("/download"):
        n = int(params.get("n", "0"))
        data = pattern(n)
        if params.get("chunked"):
            reply.start(200, [("content-type", "application/octet-stream")])
            for i in range(0, n, 65536):
                reply.write(data[i:i + 65536])
            reply.end()
        else:
            reply.send(200, data, [("content-type", "application/octet-stream")])
    else:
        reply.send(200, req.as_json(backend.name), [("content-type", "application/json")])


class Backend:
    """A running backend; `address` is what a proxy URL names ("127.0.0.1:P" or "unix:/path")."""

    def __init__(self, app: App = default_app, *, unix_path: str | None = None, name: str = "backend") -> None:
        self.app = app
        self.name = name
        self.release = threading.Event()  # what /stream and /slow wait for
        self.received: list[Received] = []
        self.accepted = 0
        self.closed = 0  # connections ended (by either side)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.address = f"unix:{unix_path}"
            self.url = f"http://unix:{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
            self.url = f"http://{self.address}"
        self.sock.listen(64)
        self.sock.settimeout(0.05)  # the accept loop checks for stop() this often
        self._thread = threading.Thread(target=self._accept_loop, name=f"backend-{name}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.accepted += 1
                number = self.accepted
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        h = h11.Connection(h11.SERVER)
        count = 0
        try:
            while True:
                req = self._read_request(h, sock, number, count + 1)
                if req is None:
                    return
                count += 1
                with self._lock:
                    self.received.append(req)
                reply = Reply(h, sock)
                self.app(self, req, reply)
                if reply.close_now or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                    return
                h.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass
        finally:
            with self._lock:
                self._conns.discard(sock)
                self.closed += 1
            sock.close()

    def _read_request(self, h: h11.Connection, sock: socket.socket, number: int, count: int) -> Received | None:
        request: h11.Request | None = None
        body: list[bytes] = []
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                headers = [(k.decode(), v.decode("latin-1")) for k, v in request.headers]
                chunked = any(k == "transfer-encoding" for k, _ in headers)
                return Received(request.method.decode(), request.target.decode(), headers,
                                b"".join(body), chunked, number, count)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def requests_to(self, path_suffix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.target.split("?")[0].endswith(path_suffix)]

    def stop(self) -> None:
        self._stopping.set()
        self.release.set()
        self._thread.join(5)
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Backends:
    """The backends a test started; all stopped at teardown."""

    started: list[Backend] = field(default_factory=list)

    def start(self, app: App = default_app, *, unix_path: str | None = None, name: str = "backend") -> Backend:
        backend = Backend(app, unix_path=unix_path, name=name)
        self.started.append(backend)
        return backend

    def stop(self) -> None:
        for backend in self.started:
            backend.stop()
