"""HTTP reverse proxy routes: requests forwarded to HTTP/1.1 backends over TCP or Unix sockets.

Each request runs on a connection from the route's `BackendSet` (round-robin, passive health,
keep-alive pool) with a fresh h11 client state machine. With `request_buffering` (the default)
the whole request body is received first, into a `Spool` (memory, then an unlinked temporary
file, bounded by `max_body_size`), before a backend connection is taken: a slow upload never
holds a backend, the backend gets a Content-Length body whatever the client's framing (a chunked
upload included), and a body that fails (bad chunk, 413, 408) never reaches it. The body is
pumped to the backend by a task of its own while the response is awaited, so a backend that
answers before it has read the whole upload is heard; with `request_buffering = false` the
client's body streams with backpressure: one chunk in flight each way, never a whole body in
memory. With `response_buffering` (the default) the response body is read as fast as the
backend sends it, through a `BufferedWriter` (memory, then a temporary file), and the connection
is released (pooled or closed) before a slow client has taken it all; with
`response_buffering = false` it is read at the client's pace. A tunnel is never buffered.
Headers change as RFC 9110 §7.6 asks (see `frontd.http.forwarded`).

Failures carry their status: connect failures 502/503 (from `BackendSet`), a backend silent for
the route's `timeout` 504, a malformed, contradictory or truncated response 502 (or the client
connection closed when the response has started: a read error is never the end of a body). A
connection is pooled only when nothing followed its response, in the worker's pool shared by the
routes naming its address, which closes it when the backend sends anything while it idles. A pooled connection that turns out closed
before any response byte is retried once on a new connection when the request can be replayed:
an idempotent method (RFC 9110 §9.2.2) whose body, if any, was small enough to keep.

A request that asks to upgrade (WebSocket) and gets a 101 becomes a byte tunnel between the two
raw connections until either side closes or both are idle for `timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import h11

from frontd.config.model import Config, Route
from frontd.errors import BadGateway, BadRequest, GatewayTimeout
from frontd.gateway.backends import BackendConnection, BackendSet, ConnectionPool
from frontd.gateway.exchange import MAX_DISCARD, connection_lost
from frontd.gateway.spool import BufferedWriter, Spool, spool
from frontd.handlers.x_sendfile import XSendfile
from frontd.http.file_answer import FileAnswer, file_answer
from frontd.http.forwarded import (
    IDEMPOTENT_METHODS,
    backend_target,
    request_headers,
    response_headers,
    upgrade_requested,
)
from frontd.request import Request, RequestBody
from frontd.response import LocalRedirect, ResponseSink
from frontd.rules.authorizer import proxy_fields

log = logging.getLogger("frontd")

READ_SIZE = 65536
# A backend's response head larger than this is a 502 (nginx's proxy_buffer_size is 4-8 KiB).
MAX_RESPONSE_HEAD = 64 * 1024
# Request bodies up to this size are kept while they are sent, so that an idempotent request
# can be replayed on a new connection when a pooled one turns out to be closed.
MAX_REPLAY = 64 * 1024


class _Stale(Exception):
    """A reused connection failed before any response byte, and the request may be sent again."""


class _TooMuch(Exception):
    """An X-Sendfile answer's body goes on past MAX_DISCARD: the connection is closed."""


class _BodySource:
    """The client's request body as the attempts to forward it read it, with a replay buffer."""

    def __init__(self, body: RequestBody, spooled: Spool | None = None) -> None:
        self.body = body
        self.spooled = spooled  # a buffered body: read again from its start for a replay
        self.ended = body.length == 0
        self.kept: list[bytes] = []
        self.replayable = True  # every chunk read so far is in `kept`
        self._kept_size = 0
        self._pos = 0

    def rewind(self) -> None:
        """Start again from the first chunk (only meaningful while `replayable`)."""
        self._pos = 0
        if self.spooled is not None:
            self.spooled.rewind()
            self.ended = False

    async def next(self) -> bytes:
        """The next chunk of the body, b"" at its end."""
        if self.spooled is not None:
            return await self.spooled.read()
        if self._pos < len(self.kept):
            self._pos += 1
            return self.kept[self._pos - 1]
        if self.ended:
            return b""
        chunk = await self.body.read()
        if not chunk:
            self.ended = True
            return b""
        if self.replayable:
            if self._kept_size + len(chunk) <= MAX_REPLAY:
                self.kept.append(chunk)
                self._kept_size += len(chunk)
                self._pos += 1
            else:
                self.replayable = False
                self.kept.clear()
        return chunk


class ProxyHandler:
    """The handler of `proxy` routes; one BackendSet per route in each worker, their idle
    connections in the worker's `ConnectionPool` (shared by the routes naming an address)."""

    def __init__(self, config: Config, pool: ConnectionPool | None = None, files: XSendfile | None = None) -> None:
        self.pool = pool if pool is not None else ConnectionPool()
        self.files = files  # what acts on X-Sendfile / X-Accel-Redirect (routes with x_sendfile)
        self.max_body_size = config.limits.max_body_size
        self._backends: dict[int, BackendSet] = {}
        for vhost in config.vhosts:
            for route in vhost.routes:
                if route.kind == "proxy":
                    self.backends(route)

    def backends(self, route: Route) -> BackendSet:
        found = self._backends.get(id(route))
        if found is None:
            found = BackendSet([t.address for t in route.proxy], route.connect_timeout,
                               route.keepalive, name="proxy", pool=self.pool,
                               idle_timeout=route.keepalive_timeout)
            self._backends[id(route)] = found
        return found

    def close(self) -> None:
        """Worker shutdown: idle pooled connections close now, busy ones when their request ends."""
        for backends in self._backends.values():
            backends.close()

    async def handle(self, request: Request, sink: ResponseSink) -> LocalRedirect | None:
        route = request.route
        assert route is not None and route.proxy
        backends = self.backends(route)
        # Only a bodiless HTTP/1.1 request is tunnelled (RFC 9110 §7.8: Upgrade is for 1.1, and
        # the tunnel starts right after the request); for any other the Upgrade field is dropped.
        upgrade = (upgrade_requested(request.headers)
                   if request.http_version == "1.1" and request.body.length == 0 else None)
        target = backend_target(request.raw_path, request.query, request.path, route.prefix,
                                route.proxy[0].path)
        client_host = _client_host(request)
        spooled: Spool | None = None
        body_length = request.body.length
        if route.request_buffering and body_length != 0:
            # Issue 13 §1: the whole body before any backend connection is taken.
            spooled = await spool(request.body, self.max_body_size)
            body_length = spooled.length
        source = _BodySource(request.body if spooled is None else spooled, spooled)
        try:
            answer = await self._forward(request, sink, route, backends, upgrade, target, client_host,
                                         source, body_length)
        finally:
            if spooled is not None:
                spooled.close()
        if answer is not None and self.files is not None:  # the connection is released already
            return await self.files.answer(request, sink, route, answer, f"proxy {request.notes['upstream']}")
        return None

    async def _forward(self, request: Request, sink: ResponseSink, route: Route, backends: BackendSet,
                       upgrade: bytes | None, target: str, client_host: bytes, source: _BodySource,
                       body_length: int | None) -> FileAnswer | None:
        for attempt in range(2):
            conn = await backends.acquire(fresh=attempt > 0)
            request.notes["upstream"] = str(conn.address)  # the access log's "upstream"
            host = route.host.encode() if route.host else client_host or _address_host(conn)
            headers = request_headers(
                request.headers, host=host, client_addr=request.client_addr, scheme=request.scheme,
                client_host=client_host, http_version=request.http_version,
                body_length=body_length, upgrade=upgrade, peer_addr=request.peer_addr,
            )
            if route.authorizer:
                headers = proxy_fields(headers, request.auth_variables)
            exchange = _Exchange(backends, conn, route, request, sink, source, target, headers,
                                 upgrade is not None, retry=attempt == 0,
                                 x_sendfile=bool(route.x_sendfile) and self.files is not None)
            try:
                return await exchange.run()
            except _Stale as exc:
                log.info("%s; retrying on a new connection%s", exc, request.log_context())
                source.rewind()
        raise AssertionError("unreachable: the second attempt is on a new connection")


def _client_host(request: Request) -> bytes:
    """The host the client asked for, port included: the absolute-form target's authority,
    which wins over Host (RFC 9112 §3.2.2), else the Host field."""
    target = request.target
    if not target.startswith("/") and "://" in target:
        authority = target.split("://", 1)[1]
        for end in "/?":
            authority = authority.split(end, 1)[0]
        return authority.encode("latin-1")
    return request.header(b"host") or request.host.encode("latin-1")


def _address_host(conn: BackendConnection) -> bytes:
    """A Host for a request that came without one (HTTP/1.0): the backend's address."""
    address = conn.address
    return b"localhost" if address.kind == "unix" else str(address).encode()


class _Exchange:
    """One request/response on one backend connection."""

    def __init__(self, backends: BackendSet, conn: BackendConnection, route: Route, request: Request,
                 sink: ResponseSink, source: _BodySource, target: str,
                 headers: list[tuple[bytes, bytes]], upgrade: bool, *, retry: bool,
                 x_sendfile: bool = False) -> None:
        self.backends = backends
        self.conn = conn
        self.request = request
        self.sink = sink
        self.source = source
        self.target = target
        self.headers = headers
        self.upgrade = upgrade
        self.retry = retry
        self.x_sendfile = x_sendfile
        self.timeout = route.timeout
        self.buffered = route.response_buffering
        self.released = False  # the connection went back to the pool or was closed
        self.h = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self.where = f"proxy {conn.address}"
        self.pump: asyncio.Task[None] | None = None
        self.received = False  # any byte of a response has arrived
        self.send_error: Exception | None = None  # the backend stopped taking the request body
        self.waiting_on_client = False
        self.last_sent = 0.0

    async def run(self) -> FileAnswer | None:
        """Forward the request and relay the response; a FileAnswer (X-Sendfile) is returned
        instead, once the connection is released."""
        conn = self.conn
        keep = False
        try:
            self.last_sent = asyncio.get_running_loop().time()
            request = self.request
            try:
                head = self.h.send(h11.Request(method=request.method, target=self.target,
                                               headers=self.headers))
            except h11.LocalProtocolError as exc:  # a field h11 will not put on the wire
                raise BadRequest(f"{self.where}: request cannot be forwarded: {exc}") from None
            conn.writer.write(head or b"")
            if self.source.ended and not self.source.kept:
                conn.writer.write(self.h.send(h11.EndOfMessage()) or b"")
            else:
                self.pump = asyncio.create_task(self._send_body())
            response = await self._response_head()
            if isinstance(response, h11.InformationalResponse):  # 101 Switching Protocols
                await self._tunnel(response)
                return None
            answer = file_answer(response_headers(response.headers)) if self.x_sendfile else None
            if answer is not None:
                keep = await self._discard()
                return answer  # released below, before the file is sent
            keep = await self._relay(response)
            return None
        finally:
            await self._release(keep)

    async def _release(self, keep: bool) -> None:
        """Stop the body pump and give the connection back to the pool (`keep`) or close it."""
        if self.released:
            return
        self.released = True
        await self._stop_pump()
        if keep:
            self.backends.release(self.conn, reusable=True)
        else:
            self.conn.close()

    # -- request body ----------------------------------------------------------------------

    async def _send_body(self) -> None:
        """Pump the request body to the backend, waiting for it to drain after every chunk."""
        h, writer, loop = self.h, self.conn.writer, asyncio.get_running_loop()
        while True:
            self.waiting_on_client = True
            try:
                chunk = await self.source.next()
            finally:
                self.waiting_on_client = False
            try:
                data = h.send(h11.Data(data=chunk) if chunk else h11.EndOfMessage())
                writer.write(data or b"")
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
            except TimeoutError:
                raise GatewayTimeout(
                    f"{self.where}: backend read none of the request body for {self.timeout:g}s"
                ) from None
            except (OSError, h11.LocalProtocolError) as exc:
                # The backend may have answered already (a 413, say): the reader decides.
                self.send_error = exc
                return
            self.last_sent = loop.time()
            if not chunk:
                return

    def _check_pump(self) -> None:
        """Raise what stopped the body pump: a client-side error (408, 413, 400, client gone)
        or a backend that read nothing for `timeout` (504)."""
        pump = self.pump
        if pump is not None and pump.done() and not pump.cancelled():
            exc = pump.exception()
            if exc is not None:
                raise exc

    async def _stop_pump(self) -> None:
        pump = self.pump
        if pump is None:
            return
        if not pump.done():
            pump.cancel()
            await asyncio.wait([pump])
        if not pump.cancelled() and pump.exception() is not None:
            log.debug("request body not forwarded: %r%s", pump.exception(), self.request.log_context())

    # -- response --------------------------------------------------------------------------

    async def _receive(self) -> bytes:
        """The next bytes from the backend (b"" at its end), raising 504 after `timeout` seconds
        of silence; time spent waiting for the client's body does not count."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        read = asyncio.ensure_future(self.conn.reader.read(READ_SIZE))
        try:
            while not read.done():
                pump = self.pump
                waiting: set[asyncio.Future[Any]] = {read}
                if pump is not None and not pump.done():
                    waiting.add(pump)
                now = loop.time()
                quiet_since = now if self.waiting_on_client else max(start, self.last_sent)
                remaining = quiet_since + self.timeout - now
                if remaining <= 0:
                    raise GatewayTimeout(f"{self.where}: no response for {self.timeout:g}s"
                                         if not self.received else
                                         f"{self.where}: response stalled for {self.timeout:g}s")
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if pump is not None and pump.done():
                    self._check_pump()
            try:
                data = read.result()
            except OSError as exc:
                if self.received:
                    # Issue 13 section 3: a reset is not the end of a close-delimited body. Taken
                    # for EOF, it made a cut response look complete (a chunked terminator sent).
                    raise connection_lost(self.where, exc) from None
                # Before any response byte: as a close, which `_no_response` may retry.
                log.debug("%s: read failed: %s", self.where, exc)
                data = b""
        finally:
            if not read.done():
                read.cancel()
        if data:
            self.received = True
        return data

    def _no_response(self, what: str) -> None:
        """The backend closed before answering: retry (raise _Stale) when that is safe, else 502."""
        detail = f"{self.where}: {what}"
        if (self.retry and self.conn.reused and self.request.method in IDEMPOTENT_METHODS
                and self.source.replayable):
            raise _Stale(f"{detail} (a kept-alive connection)")
        if self.send_error is not None:
            detail += f" (sending the request body: {self.send_error})"
        raise BadGateway(detail)

    async def _response_head(self) -> h11.Response | h11.InformationalResponse:
        h = self.h
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadGateway(f"{self.where}: malformed response head: {exc}") from None
            if event is h11.NEED_DATA:
                data = await self._receive()
                if not data and not self.received:
                    self._no_response("closed the connection without a response")
                h.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return event
                # 100 Continue, 102, 103: frontd spoke to the client itself; nothing to relay.
            elif isinstance(event, h11.Response):
                return event
            else:
                raise BadGateway(f"{self.where}: closed the connection inside the response head")

    async def _relay(self, response: h11.Response) -> bool:
        """Relay a final response; True when the backend connection can serve another request."""
        sink = self.sink
        names = {name.lower() for name, _ in response.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 §6.1: the sign of a smuggling attempt or a broken backend; never relayed.
            raise BadGateway(f"{self.where}: response with both Content-Length and Transfer-Encoding")
        await sink.start(response.status_code, response_headers(response.headers),
                         reason=bytes(response.reason))
        # Response buffering (issue 13 §1): the body is read as fast as the backend sends it and
        # the connection released before a slow client has taken it all.
        writer = BufferedWriter(sink.write) if self.buffered else None
        write = sink.write if writer is None else writer.write
        try:
            await self._body(write)
            keep = self._reusable()
            if writer is not None:
                await self._release(keep)
                await writer.drain()
            return keep
        finally:
            if writer is not None:
                await writer.close()

    async def _discard(self) -> bool:
        """X-Sendfile: read the backend's body away, up to MAX_DISCARD bytes; True when the
        connection can then be pooled (over that, or silent for `timeout`: closed instead)."""
        left = MAX_DISCARD

        async def drop(data: bytes) -> None:
            nonlocal left
            left -= len(data)
            if left < 0:
                raise _TooMuch

        try:
            await self._body(drop)
        except (_TooMuch, GatewayTimeout):
            log.info("%s: the body of an X-Sendfile answer not read to its end; closed%s", self.where,
                     self.request.log_context())
            return False
        return self._reusable()

    async def _body(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Read the response body to its end, handing each piece to `write`."""
        h = self.h
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadGateway(f"{self.where}: bad response body: {exc}") from None
            if event is h11.NEED_DATA:
                h.receive_data(await self._receive())
            elif isinstance(event, h11.Data):
                await write(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    def _reusable(self) -> bool:
        """Whether the connection can serve another request once a response has ended."""
        h, pump = self.h, self.pump
        if pump is not None and not pump.done():
            return False  # answered before the whole request body was sent
        return (self.send_error is None and h.our_state is h11.DONE and h.their_state is h11.DONE
                and not h.trailing_data[0] and (pump is None or pump.exception() is None))

    # -- Upgrade ---------------------------------------------------------------------------

    async def _tunnel(self, response: h11.InformationalResponse) -> None:
        """RFC 9110 §15.2.2: after a 101 both connections carry the new protocol; splice them."""
        if not self.upgrade:
            raise BadGateway(f"{self.where}: 101 Switching Protocols to a request without Upgrade")
        backend_rest = bytes(self.h.trailing_data[0])
        # The sink's h11 state machine does not send a 101 as a response: write the head here.
        reader, writer, client_rest = self.sink.detach()
        self.sink.status = 101  # for the access log line of the detached connection
        reason = bytes(response.reason) or b"Switching Protocols"
        head = [b"HTTP/1.1 101 " + reason + b"\r\n"]
        head.extend(name + b": " + value + b"\r\n"
                    for name, value in response_headers(response.headers, upgrade=True))
        head.append(b"\r\n")
        writer.writelines([*head, backend_rest])
        if client_rest:
            self.conn.writer.write(client_rest)
        self.sink.bytes_sent = len(backend_rest)
        _, to_client = await splice(reader, writer, self.conn.reader, self.conn.writer, self.timeout)
        self.sink.bytes_sent += to_client
        self.conn.writer.close()  # flush what the tunnel still holds for the backend, then close
        log.debug("%s: tunnel closed%s", self.where, self.request.log_context())


async def splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                 b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter,
                 idle_timeout: float) -> tuple[int, int]:
    """Copy bytes both ways until either side closes, or nothing moved for `idle_timeout` s.

    Each direction reads a chunk, writes it and waits for it to drain before reading again.
    Returns the bytes copied from a to b and from b to a.
    """
    loop = asyncio.get_running_loop()
    last = [loop.time()]
    copied = [0, 0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: int) -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            last[0] = loop.time()
            writer.write(data)
            copied[way] += len(data)
            await writer.drain()
            last[0] = loop.time()

    tasks = [asyncio.create_task(pipe(a_reader, b_writer, 0)),
             asyncio.create_task(pipe(b_reader, a_writer, 1))]
    try:
        while True:
            remaining = last[0] + idle_timeout - loop.time()
            if remaining <= 0:
                log.debug("tunnel idle for %gs; closing", idle_timeout)
                return copied[0], copied[1]
            done, _ = await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if done:
                for task in done:
                    if not task.cancelled() and isinstance(task.exception(), Exception):
                        log.debug("tunnel ended: %r", task.exception())
                return copied[0], copied[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: connection resets end a tunnel normally

