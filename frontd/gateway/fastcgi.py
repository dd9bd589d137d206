"""The FastCGI transport: one RESPONDER request per connection at a time (FastCGI 1.0).

`FastCGIGateway` is built once per worker from the config; it is the transport factory the
gateway handler calls, `(route, request) -> FastCGITransport`, and holds a `BackendSet` per
fastcgi route (round-robin, passive health, and its share of the worker's pool of idle
connections).

A request goes out as FCGI_BEGIN_REQUEST, the FCGI_PARAMS stream and the FCGI_STDIN stream
(§5.1, §5.2, §6.2); with no body, all of it leaves in one write. The reply is decoded by
`frontd.wire.fastcgi`: FCGI_STDOUT is the CGI response the exchange core parses, FCGI_STDERR
goes to the error log tagged with the backend's address, and FCGI_END_REQUEST ends the
response (§5.5: not EOF). A protocolStatus of CANT_MPX_CONN, OVERLOADED or UNKNOWN_ROLE means
the application refused the request: 503.

The connection is let go as soon as FCGI_END_REQUEST arrives, before the response has reached
the client: closed (libfcgi and php-fpm wait for that close before taking the next request), or
pooled. Connection reuse (§3.5, FCGI_KEEP_CONN) is off unless the route sets `keepalive = N`;
then a connection is pooled only after a clean FCGI_END_REQUEST with all of FCGI_STDIN sent and
nothing after it. Each request on a kept connection has a new request id (§3.3), so a record the
application sends late for an earlier request is dropped with a log line (and the connection is
not reused) rather than taken for the answer to the current one. The idle connections live in
the worker's `ConnectionPool`, shared by the routes naming an address; a parked connection gives
way to a new one that waits for its first reply byte, since php-fpm keeps a child on each open
connection. A pooled connection that the backend closed while it sat idle (php-fpm closes at
`pm.max_requests`, flup and others after their own idle time) is found out either before use
(`BackendSet`) or by the request itself: when it fails before any reply byte came back, the
request is sent again once on a new connection, provided everything sent so far is still at
hand (the head, and a body of at most `MAX_REPLAY` bytes).

A client that goes away, a timeout or an error aborts the request (§5.4): on a kept connection
FCGI_ABORT_REQUEST is sent before the connection is closed; otherwise closing it is the signal.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import Final

from frontd.config.model import Config, Route
from frontd.errors import BadGateway, ServiceUnavailable
from frontd.gateway.backends import BackendConnection, BackendSet, ConnectionPool
from frontd.gateway.exchange import StreamTransport, connection_lost
from frontd.request import Request
from frontd.wire.fastcgi import (
    FCGI_CANT_MPX_CONN,
    FCGI_OVERLOADED,
    FCGI_REQUEST_COMPLETE,
    FCGI_RESPONDER,
    FCGI_STDIN,
    FCGI_UNKNOWN_ROLE,
    NEED_DATA,
    EndRequest,
    FastCGIResponseDecoder,
    OtherRequest,
    Stderr,
    Stdout,
    encode_abort_request,
    encode_begin_request,
    encode_params,
    encode_record,
    encode_stdin,
)
from frontd.wire.errors import WireError

log = logging.getLogger("frontd")

# §3.3: the web server picks request ids and should keep them small. frontd never multiplexes
# (one request per connection at a time): the requests of a connection are numbered 1, 2, 3...
# in turn, so that a record the application sends late for an earlier request (after its
# FCGI_END_REQUEST) is told apart from the answer to the current one and dropped.
FIRST_REQUEST_ID: Final = 1
MAX_REQUEST_ID: Final = 0xFFFF
# Bytes of request (head and body records) kept for a replay on a new connection when a pooled
# one turns out to be closed; a larger request that meets a dead connection is a 502.
MAX_REPLAY: Final = 64 * 1024
# After a response that ended at its Content-Length, how long FCGI_END_REQUEST may take to
# arrive for the connection to be pooled; a backend slower than this loses the connection.
END_REQUEST_WAIT: Final = 1.0
READ_SIZE: Final = 65536
MAX_STDERR_LINE: Final = 4096

_REJECTED: Final = {
    FCGI_CANT_MPX_CONN: "FCGI_CANT_MPX_CONN",
    FCGI_OVERLOADED: "FCGI_OVERLOADED",
    FCGI_UNKNOWN_ROLE: "FCGI_UNKNOWN_ROLE",
}
# Bytes that must not reach a log line raw (a backend's stderr is untrusted text).
_CONTROL_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09}


def printable(data: bytes) -> str:
    """Backend text as one log line: undecodable bytes and control characters escaped."""
    return data.decode("utf-8", "backslashreplace").translate(_CONTROL_ESCAPES)


class FastCGIRoute:
    """One fastcgi route in one worker: its backends and what every request sends the same."""

    __slots__ = ("backends", "keep_conn", "role", "timeout")

    def __init__(self, route: Route, pool: ConnectionPool | None = None, *, role: int = FCGI_RESPONDER) -> None:
        """`role`: FCGI_AUTHORIZER for a route's `authorizer` (its addresses in `backends`)."""
        # Parked connections yield to a new one waiting for its answer: php-fpm gives each
        # connection a child of its own for as long as it stays open (issue 12 item 3).
        self.backends = BackendSet(route.backends, route.connect_timeout, route.keepalive, name="fastcgi",
                                   pool=pool, idle_timeout=route.keepalive_timeout, yield_idle=True,
                                   bare=True)
        # §5.1: FCGI_KEEP_CONN only when connections are pooled; otherwise the application
        # closes the connection after the request, and that is the end of it.
        self.keep_conn = route.keepalive > 0
        self.role = role
        self.timeout = route.timeout


class FastCGIGateway:
    """The transport factory for fastcgi routes: `gateway(route, request)` -> a new transport."""

    def __init__(self, config: Config, pool: ConnectionPool | None = None) -> None:
        # One pool for the worker: the routes naming one address share its idle connections.
        self.pool = pool if pool is not None else ConnectionPool()
        self.routes: dict[int, FastCGIRoute] = {}
        for vhost in config.vhosts:
            for route in vhost.routes:
                if route.kind == "fastcgi":
                    self.routes[id(route)] = FastCGIRoute(route, self.pool)

    def __call__(self, route: Route, request: Request) -> FastCGITransport:
        setup = self.routes.get(id(route))
        if setup is None:  # a route built after this factory (not expected; kept correct)
            setup = self.routes[id(route)] = FastCGIRoute(route, self.pool)
        return FastCGITransport(setup, request)

    def close_idle(self) -> None:
        """Close every pooled connection."""
        for setup in self.routes.values():
            setup.backends.close_idle()

    def close(self) -> None:
        """Worker shutdown: pooled connections are closed, and no more are pooled."""
        for setup in self.routes.values():
            setup.backends.close()


class FastCGITransport(StreamTransport):
    """One request to a FastCGI responder over one (possibly pooled) connection."""

    def __init__(self, setup: FastCGIRoute, request: Request) -> None:
        super().__init__("fastcgi", _no_connect)
        self.setup = setup
        self.request = request
        self.conn: BackendConnection | None = None
        self.request_id = FIRST_REQUEST_ID  # this request's number on its connection
        self._decoder = FastCGIResponseDecoder(self.request_id)
        self._stray = False  # records of another request came: the connection is not reused
        self._stdin_ended = False  # the empty FCGI_STDIN record was written
        self._received = False  # any reply byte arrived on the current connection
        self._released = False  # the connection went back to the pool, or was closed
        # What was written on a pooled connection, for one replay on a new one (None: the
        # request can no longer be replayed: too large, already retried, or not pooled).
        self._replay: list[bytes] | None = None
        self._replay_size = 0
        self._retry_lock: asyncio.Lock | None = None

    # -- framing ----------------------------------------------------------------------------

    def encode_head(self, environ: Mapping[bytes, bytes], content_length: int | None) -> bytes:
        request_id = self.request_id
        head = (encode_begin_request(request_id, self.setup.role, keep_conn=self.setup.keep_conn)
                + encode_params(request_id, environ.items()))
        if not content_length:
            # §6.1: FCGI_STDIN is sent even when empty. With no body it goes with the head: one
            # write for the whole request.
            self._stdin_ended = True
            return head + encode_record(FCGI_STDIN, request_id)
        return head

    def encode_body(self, data: bytes) -> bytes:
        return encode_stdin(self.request_id, data)

    def encode_end(self) -> bytes:
        if self._stdin_ended:
            return b""
        self._stdin_ended = True
        return encode_record(FCGI_STDIN, self.request_id)

    def decode(self, data: bytes) -> bytes:
        decoder = self._decoder
        if not data:
            decoder.eof()  # WireError unless FCGI_END_REQUEST came (§5.5)
            self.finished = True
            return b""
        decoder.receive_data(data)
        out: list[bytes] = []
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Stdout):
                out.append(event.data)
            elif isinstance(event, Stderr):
                self._log_stderr(event.data)
            elif isinstance(event, OtherRequest):
                # Sent after that request's FCGI_END_REQUEST: it belongs to no client now.
                self._stray = True
                log.warning("%s: record type %d of %d byte(s) for request %d, not the active request %d: "
                            "dropped; the connection will not be reused%s", self.name, event.record_type,
                            event.content_length, event.request_id, self.request_id,
                            self.request.log_context())
            else:
                self._end_request(event)
                break
        return b"".join(out)

    def _end_request(self, event: EndRequest) -> None:
        self.finished = True
        if event.protocol_status != FCGI_REQUEST_COMPLETE:
            # §5.5: the application rejected the request; another try later may succeed.
            status = _REJECTED.get(event.protocol_status, f"protocolStatus {event.protocol_status}")
            raise ServiceUnavailable(f"{self.name}: FCGI_END_REQUEST with {status}")
        # The response is all here: let the connection go now, not once the client has it.
        # libfcgi and php-fpm linger after a request on a connection that is not kept, until
        # the web server closes it; every moment it stays open keeps their worker busy.
        self._release()

    def _release(self) -> None:
        """Hand the connection back: pooled when it can carry another request, else closed.
        Afterwards this transport never touches it again (it may serve another request)."""
        conn = self.conn
        if conn is None or self._released:
            return
        self._released = True
        decoder = self._decoder
        if decoder.ended and decoder.trailing_data:
            # §5.5: FCGI_END_REQUEST is the last record of a request; what follows belongs to none.
            log.warning("%s: %d byte(s) after FCGI_END_REQUEST: connection closed%s", self.name,
                        len(decoder.trailing_data), self.request.log_context())
        conn.keep = (self.setup.keep_conn and decoder.ended and self._stdin_ended and not self.aborted
                     and not decoder.trailing_data and not self._stray
                     and conn.writer.transport.get_write_buffer_size() == 0)
        if not conn.keep:
            # The transport closes its socket only on a later turn of the event loop; the FIN
            # that ends the application's lingering close goes out now.
            sock = conn.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.setup.backends.release(conn)

    def _log_stderr(self, data: bytes) -> None:
        # §6.1: FCGI_STDERR is the application's error output; each line becomes a log line.
        context = self.request.log_context()
        for line in data.split(b"\n"):
            line = line.rstrip(b"\r")
            if not line:
                continue
            for start in range(0, len(line), MAX_STDERR_LINE):
                log.error("%s stderr: %s%s", self.name, printable(line[start:start + MAX_STDERR_LINE]), context)

    # -- the connection ---------------------------------------------------------------------

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        conn = await self.setup.backends.acquire()
        self._use(conn)
        head = self.encode_head(environ, content_length)
        if conn.reused:
            self._replay = []
            self._replay_size = 0
            self._remember(head)
        conn.writer.write(head)

    def _use(self, conn: BackendConnection, request_id: int | None = None) -> None:
        """Run the request on `conn`: as its next request, or as `request_id` (a replay)."""
        if request_id is None:
            request_id = conn.requests % MAX_REQUEST_ID + FIRST_REQUEST_ID
        conn.requests = request_id
        self.request_id = request_id
        self._decoder = FastCGIResponseDecoder(request_id)
        self.conn = conn
        self.reader, self.writer = conn.reader, conn.writer
        self.name = f"fastcgi {conn.address}"
        self._received = False

    def _remember(self, data: bytes) -> None:
        if self._replay is None:
            return
        self._replay_size += len(data)
        if self._replay_size > MAX_REPLAY:
            self._replay = None
        else:
            self._replay.append(data)

    async def _send(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        self._remember(data)
        try:
            if conn.writer.is_closing():
                raise ConnectionResetError(f"{self.name}: connection closed")
            conn.writer.write(data)
            await conn.writer.drain()
        except ConnectionError:
            if not await self._retry(conn):
                raise

    async def write(self, data: bytes) -> None:
        await self._send(self.encode_body(data))

    async def end_body(self) -> None:
        end = self.encode_end()
        try:
            if end:
                await self._send(end)
            elif self.conn is not None:
                await self.conn.writer.drain()
        except ConnectionError:
            # The application stopped reading: `read` finds out whether it still answers.
            pass

    async def read(self) -> bytes:
        while not self.finished:
            conn = self.conn
            assert conn is not None
            try:
                data = await conn.reader.read(READ_SIZE)
            except OSError as exc:
                if self.aborted:
                    return b""
                if isinstance(exc, ConnectionError) and await self._retry(conn):
                    continue
                raise connection_lost(self.name, exc) from None
            if self.aborted:
                return b""
            if not data and not self._received and await self._retry(conn):
                continue
            if not self._received:
                self._received = True
                self.setup.backends.answered(conn)
            out = self.decode(data)
            if out:
                return out
        return b""

    async def _retry(self, failed: BackendConnection) -> bool:
        """After `failed` broke before any reply byte: send the request again on a new
        connection, once, if `failed` came from the pool and the request can be replayed.
        True when the request now runs on another connection."""
        if self._retry_lock is None:
            self._retry_lock = asyncio.Lock()
        async with self._retry_lock:  # the body pump and the reader may both get here
            if self.conn is not failed:
                return not self.aborted  # the other one already moved the request
            if self.aborted or self._received or not failed.reused or self._replay is None:
                return False
            replay, self._replay = self._replay, None
            log.info("%s: pooled connection closed by the backend; sending the request again on a "
                     "new one%s", self.name, self.request.log_context())
            failed.close()
            conn = await self.setup.backends.acquire(fresh=True)
            if self.aborted:
                conn.close()
                return False
            self._use(conn, self.request_id)  # the replayed records carry its number
            conn.writer.write(b"".join(replay))
            return True

    async def close(self) -> None:
        if self.conn is None or self._released:
            return
        setup = self.setup
        if setup.keep_conn and not self._decoder.ended and self._stdin_ended:
            # The core stopped at the response's Content-Length; FCGI_END_REQUEST is normally
            # right behind it. Wait briefly for it so the connection can be pooled.
            try:
                async with asyncio.timeout(min(END_REQUEST_WAIT, setup.timeout)):
                    while not self.finished and await self.read():
                        pass
            except (BadGateway, ServiceUnavailable, WireError, TimeoutError) as exc:
                log.debug("%s: not pooled: %s", self.name, exc)
        self._release()

    def abort(self) -> None:
        if self.aborted:
            return
        self.aborted = True
        self.finished = True
        conn = self.conn
        if conn is None or self._released:
            return
        transport = conn.writer.transport
        if (self.setup.keep_conn and not self._decoder.ended and conn.alive()
                and transport.get_write_buffer_size() == 0):
            # §5.4: tell the application to stop. The connection is not reused (waiting for the
            # FCGI_END_REQUEST that would allow it is not worth it): half-closed now, so that the
            # record is read rather than lost to a reset, and closed for good a moment later.
            try:
                transport.write(encode_abort_request(self.request_id))
                transport.write_eof()
            except OSError:
                conn.close()
            else:
                asyncio.get_running_loop().call_later(END_REQUEST_WAIT, conn.close)
        else:
            conn.close()
        # Wake a pending read. Not with feed_eof: the half-closed connection still receives, and
        # a StreamReader refuses data after EOF by resetting the connection.
        conn.reader.set_exception(ConnectionAbortedError(f"{self.name}: request aborted"))


async def _no_connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # `open` connects through the route's BackendSet; StreamTransport's hook is unused.
    raise AssertionError("FastCGITransport connects through its BackendSet")
