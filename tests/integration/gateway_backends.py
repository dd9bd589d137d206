"""Capture backends for the FastCGI, SCGI and uwsgi tests: they record the exact bytes frontd sends.

Each `CaptureServer` listens on 127.0.0.1:0 or a Unix socket and serves every connection in a
thread of its own. It parses requests with frontd's own wire codecs only where the parse is
strict (the tests compare the raw bytes too) and answers what the test's `App` returns: a
CGI-style (or, for uwsgi, HTTP) response, with knobs for delays, FastCGI STDERR, the
protocolStatus of FCGI_END_REQUEST and connection handling. `stop()` closes everything.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from frontd.wire.fastcgi import decode_params
from frontd.wire.scgi import decode_request_head
from frontd.wire.uwsgi import decode_request

WAIT = 10.0  # upper bound of every wait inside a backend, so a failing test cannot hang
_HEADER = struct.Struct(">BBHHBx")


@dataclass
class Captured:
    """One request as the backend received it."""

    params: list[tuple[bytes, bytes]]  # FCGI_PARAMS pairs, SCGI headers or uwsgi vars, in order
    body: bytes
    raw: bytes  # every byte of the request as it arrived
    connection: int  # 1 for the first connection accepted, 2 for the next...
    number: int  # position of the request on its connection, from 1
    flags: int = 0  # FastCGI: FCGI_BeginRequestBody.flags
    role: int = 0  # FastCGI: FCGI_BeginRequestBody.role
    records: list[tuple[int, int, int]] = field(default_factory=list)  # FastCGI (type, id, length)
    aborted: bool = False  # FastCGI: FCGI_ABORT_REQUEST arrived while answering

    @property
    def env(self) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.params}

    def names(self) -> list[str]:
        return [k.decode("latin-1") for k, _ in self.params]

    @property
    def request_id(self) -> int:
        """FastCGI: the id the request came with (the answer carries it back)."""
        return self.records[0][1] if self.records else 1


@dataclass
class Answer:
    """What the backend sends back. `output` is the CGI (or HTTP) response; `pieces` streams it
    in parts with `piece_delay` between them instead."""

    output: bytes = b""
    pieces: Iterator[bytes] | None = None
    piece_delay: float = 0.0
    delay: float = 0.0  # before anything is sent
    stderr: bytes = b""  # FastCGI: sent as FCGI_STDERR before the output
    protocol_status: int = 0  # FastCGI: FCGI_END_REQUEST.protocolStatus
    close: bool = False  # close the connection after answering even when it could be kept
    drop: bool = False  # close the connection without answering
    # Reset the connection (SO_LINGER 0, then close) after sending `output` or `pieces`, with
    # no end of response: for FastCGI the output goes as FCGI_STDOUT without FCGI_END_REQUEST.
    reset: bool = False
    # FastCGI: False closes the connection in order (FIN) after the output, without the
    # empty FCGI_STDOUT and FCGI_END_REQUEST that end a response.
    end_request: bool = True


App = Callable[["CaptureServer", Captured], Answer]


def env_json(server: CaptureServer, req: Captured) -> Answer:
    """The default application: the parameters and the body's length, as JSON."""
    body = json.dumps({"env": req.env, "names": req.names(), "body_length": len(req.body),
                       "connection": req.connection, "server": server.label}).encode()
    return Answer(b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def as_http(answer: Answer) -> Answer:
    """A CGI-style answer turned into the raw HTTP response uWSGI sends."""
    head, _, body = answer.output.partition(b"\r\n\r\n")
    answer.output = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n" + body
    return answer


class CaptureServer:
    """A threaded FastCGI, SCGI or uwsgi server that records what it receives."""

    def __init__(self, protocol: str, app: App | None = None, *, unix: str | None = None,
                 label: str = "capture", processes: int | None = None) -> None:
        assert protocol in ("fastcgi", "scgi", "uwsgi")
        self.protocol = protocol
        self.app: App = app or (env_json if protocol != "uwsgi" else (lambda s, r: as_http(env_json(s, r))))
        self.label = label
        self.requests: list[Captured] = []
        self.connections = 0
        self.closed_by_peer: set[int] = set()  # FastCGI: connections frontd closed between requests
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stopped = False
        # Serve at most this many connections at once, as libfcgi or php-fpm processes do: a
        # connection beyond them waits in the listen backlog until one is closed.
        self._processes = threading.Semaphore(processes) if processes else None
        if unix is not None:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(unix)
            self.address = f"unix:{unix}"
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.listener.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(WAIT)

    def wait_requests(self, count: int, timeout: float = WAIT) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label}: {len(self.requests)} requests, expected {count}")
            time.sleep(0.01)
        return self.requests

    # -- serving ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped:
            if self._processes is not None:
                while not self._processes.acquire(timeout=0.1):
                    if self._stopped:
                        return
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._socks.append(sock)
            sock.settimeout(WAIT)
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _serve(self, sock: socket.socket, connection: int) -> None:
        try:
            if self.protocol == "fastcgi":
                self._serve_fastcgi(sock, connection)
            else:
                self._serve_oneshot(sock, connection)
        except OSError:
            pass
        finally:
            sock.close()
            if self._processes is not None:
                self._processes.release()

    def _record(self, req: Captured) -> None:
        with self._lock:
            self.requests.append(req)

    # SCGI and uwsgi: one request per connection, then close.

    def _serve_oneshot(self, sock: socket.socket, connection: int) -> None:
        raw = b""
        while True:
            head = self._parse_head(raw)
            if head is not None:
                break
            data = sock.recv(65536)
            if not data:
                return
            raw += data
        params, consumed = head
        length = int(dict(params).get(b"CONTENT_LENGTH", b"0") or b"0")
        while len(raw) < consumed + length:
            data = sock.recv(65536)
            if not data:
                break
            raw += data
        req = Captured(params=params, body=raw[consumed:consumed + length], raw=raw,
                       connection=connection, number=1)
        self._record(req)
        answer = self.app(self, req)
        if answer.drop:
            return
        self._send_answer(sock, answer, lambda data: sock.sendall(data))
        if answer.reset:
            _reset(sock)
            return
        sock.shutdown(socket.SHUT_WR)

    def _parse_head(self, raw: bytes) -> tuple[list[tuple[bytes, bytes]], int] | None:
        """(params, bytes consumed) once the SCGI netstring or uwsgi vars block is complete."""
        if self.protocol == "scgi":
            return decode_request_head(raw)
        parsed = decode_request(raw)
        if parsed is None:
            return None
        packet, consumed = parsed
        return packet.vars, consumed

    def _send_answer(self, sock: socket.socket, answer: Answer, send: Callable[[bytes], None]) -> None:
        if answer.delay:
            time.sleep(answer.delay)
        if answer.pieces is None:
            send(answer.output)
            return
        for piece in answer.pieces:
            send(piece)
            if answer.piece_delay:
                time.sleep(answer.piece_delay)

    # FastCGI: records, FCGI_KEEP_CONN honoured.

    def _serve_fastcgi(self, sock: socket.socket, connection: int) -> None:
        reader = _RecordReader(sock)
        number = 0
        while True:
            number += 1
            req = self._read_fastcgi_request(reader, connection, number)
            if req is None:
                with self._lock:
                    self.closed_by_peer.add(connection)
                return
            self._record(req)
            answer = self.app(self, req)
            if answer.drop:
                return
            rid = req.request_id
            if answer.stderr:
                sock.sendall(_record(7, answer.stderr, rid))
            try:
                self._send_answer(sock, answer, lambda data: self._stdout(sock, reader, req, data))
            except OSError:
                req.aborted = True  # the connection was closed under the answer
                return
            except _Aborted:
                req.aborted = True
                sock.sendall(_record(3, struct.pack(">IB3x", 1, 0), rid))
                if not req.flags & 1:
                    return
                continue
            if answer.reset:
                _reset(sock)
                return
            if not answer.end_request:
                return
            sock.sendall(_record(6, b"", rid) + _record(7, b"", rid)
                         + _record(3, struct.pack(">IB3x", 0, answer.protocol_status), rid))
            if not req.flags & 1 or answer.close:
                return

    def _stdout(self, sock: socket.socket, reader: _RecordReader, req: Captured, data: bytes) -> None:
        for start in range(0, len(data), 65535):
            sock.sendall(_record(6, data[start:start + 65535], req.request_id))
        # §5.4: an FCGI_ABORT_REQUEST may arrive while the response is being written.
        record = reader.poll()
        if record is not None:
            req.records.append((record[0], record[1], len(record[2])))
            if record[0] == 2:
                raise _Aborted()

    def _read_fastcgi_request(self, reader: _RecordReader, connection: int, number: int) -> Captured | None:
        start = len(reader.raw)
        params = b""
        body = b""
        flags = role = 0
        records: list[tuple[int, int, int]] = []
        params_done = stdin_done = False
        while not (params_done and stdin_done):
            record = reader.next()
            if record is None:
                return None
            rtype, rid, content = record
            records.append((rtype, rid, len(content)))
            if rtype == 1:
                role, flags = struct.unpack(">HB5x", content)
            elif rtype == 4:
                if content:
                    params += content
                else:
                    params_done = True
            elif rtype == 5:
                if content:
                    body += content
                else:
                    stdin_done = True
        return Captured(params=decode_params(params), body=body, raw=bytes(reader.raw[start:]),
                        connection=connection, number=number, flags=flags, role=role, records=records)


class _Aborted(Exception):
    pass


def _reset(sock: socket.socket) -> None:
    """Make the coming close() a TCP reset (RST) rather than an orderly FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _record(rtype: int, content: bytes, request_id: int = 1) -> bytes:
    return _HEADER.pack(1, rtype, request_id, len(content), 0) + content


class _RecordReader:
    """FastCGI records off a blocking socket; `raw` keeps every byte read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = bytearray()
        self._buf = bytearray()

    def _parse(self) -> tuple[int, int, bytes] | None:
        if len(self._buf) < 8:
            return None
        version, rtype, rid, length, padding = _HEADER.unpack_from(self._buf)
        assert version == 1, f"FastCGI version {version}"
        end = 8 + length + padding
        if len(self._buf) < end:
            return None
        content = bytes(self._buf[8:8 + length])
        del self._buf[:end]
        return rtype, rid, content

    def next(self) -> tuple[int, int, bytes] | None:
        while True:
            record = self._parse()
            if record is not None:
                return record
            data = self.sock.recv(65536)
            if not data:
                return None
            self.raw += data
            self._buf += data

    def poll(self) -> tuple[int, int, bytes] | None:
        """A record if one is complete without waiting."""
        record = self._parse()
        if record is not None:
            return record
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return None
        finally:
            self.sock.settimeout(WAIT)
        if not data:
            raise _Aborted()  # the connection was closed: as good as an abort
        self.raw += data
        self._buf += data
        return self._parse()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def unix_path(directory: os.PathLike[str] | str, name: str) -> str:
    return os.path.join(os.fspath(directory), name)


class CaptureServers:
    """The capture backends one test starts (TCP, or Unix sockets in `directory`); `stop_all`
    stops every one of them."""

    def __init__(self, protocol: str, directory: os.PathLike[str] | str) -> None:
        self.protocol = protocol
        self.directory = directory
        self.started: list[CaptureServer] = []

    def __call__(self, app: App | None = None, *, unix: bool = False, label: str = "capture",
                 processes: int | None = None) -> CaptureServer:
        path = unix_path(self.directory, f"{self.protocol}{len(self.started)}.sock") if unix else None
        server = CaptureServer(self.protocol, app, unix=path, label=label, processes=processes)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def route_config(kind: str, address: str, *, prefix: str = "/app/", extra: str = "",
                 names: str = '"app.test"') -> str:
    """A vhost for `names` with one gateway route of `kind` to `address`."""
    return f"""
[[vhost]]
names = [{names}]

  [[vhost.route]]
  prefix = "{prefix}"
  {kind} = "{address}"
  {extra}
"""
