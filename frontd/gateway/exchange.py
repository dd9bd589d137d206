"""The one gateway core: a request through a transport to a CGI-style response (RFC 3875 §6).

CGI, FastCGI, SCGI and uwsgi differ only in how bytes reach the application and come back; the
rest is the same and lives here, in `exchange()`:

- the body is sent while the response is read (a script may answer before it has read all of
  its input, and one that fills its output pipe before reading would deadlock otherwise), with
  backpressure both ways: the next body chunk is read from the client once the transport took
  the last, the next output chunk from the transport once the client took the last;
- the head is parsed by `frontd.wire.cgi_response` and acted on: a document is relayed with its
  status and headers, a local redirect is returned as `LocalRedirect` for the dispatcher to
  serve (§6.2.2), a client redirect becomes a 302 unless `Status` says otherwise (§6.2.3);
- framing is fitted to the client (the sink frames: the application's Content-Length when it
  gave one, else chunked for HTTP/1.1, else close-delimited), HEAD bodies are dropped by the
  sink, non-parsed-header output is passed through raw (§5);
- failures carry their status: a malformed head or output that ends before one → 502, silence
  for `timeout` seconds → 504, a transport that cannot start → what it raises (502/503). A
  socket error on the application's side (a connection reset) is a 502 naming the application,
  whatever the transport: `ConnectionError` escaping a handler means the client left, and the
  backend's reset must never be taken for that.

A transport is a small class, `Transport`: start (spawn or connect, and send the request head),
write body bytes, end the body, read response bytes, then `close()` when the response ended or
`abort()` when it did not. `frontd.gateway.cgi.CGITransport` is one; a socket gateway
(FastCGI, SCGI, uwsgi) subclasses `StreamTransport` and adds only its framing.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from frontd.errors import BadGateway, GatewayTimeout, HTTPError
from frontd.gateway.sockets import SocketStream
from frontd.gateway.spool import DIRECT_WRITE, BodySource, BufferedWriter
from frontd.http.file_answer import FileAnswer, file_answer
from frontd.http.headers import HOP_BY_HOP
from frontd.http.target import parse_target
from frontd.request import Request
from frontd.response import LocalRedirect, ResponseSink
from frontd.wire.cgi_response import DEFAULT_MAX_HEAD_SIZE, ResponseHead, ResponseHeadParser
from frontd.wire.errors import WireError

log = logging.getLogger("frontd")

# Relayed response fields that the sink writes itself (Server, Date) or that describe only the
# hop between frontd and the application (RFC 9110 §7.6.1): the sink frames for the client.
_NOT_RELAYED: Final = HOP_BY_HOP | {b"server", b"date"}
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
# RFC 9110 §6.4.1: these responses have no content, whatever the application wrote.
_NO_CONTENT: Final = frozenset({204, 304})
# X-Sendfile: the application's own body is read away up to this size, so that it ends as it
# would otherwise (a script exits, a connection can be pooled); past it the exchange is aborted.
MAX_DISCARD: Final = 64 * 1024


def connection_lost(name: str, exc: OSError) -> BadGateway:
    """The application's connection failed under an exchange (reset, broken): its 502."""
    return BadGateway(f"{name}: connection lost: {exc.strerror or exc}")


class Transport(abc.ABC):
    """One exchange with one application: a CGI process, or a connection to a backend.

    The core calls, in order: `open` once; `write` for each body chunk and `end_body` once
    (from a task of its own, while `read` runs); `read` until it returns b""; then exactly one
    of `close` (the response was read to its end) or `abort` (anything else: error, timeout,
    client gone, cancellation). `abort` must be synchronous and idempotent so that it can run
    in a `finally`; it must also wake a pending `read`, which then returns b"".
    """

    # For log lines and error details: "cgi /srv/cgi-bin/x.sh", "fastcgi unix:/run/php.sock".
    name: str = "gateway"
    # uwsgi and many SCGI servers answer with an HTTP status line instead of a Status field.
    allow_status_line: bool = False

    @abc.abstractmethod
    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        """Start the exchange with these meta-variables (spawn, or connect and send the head).

        `content_length` is None when the request has no body. Raise an HTTPError when the
        application cannot be reached (BadGateway, ServiceUnavailable, GatewayTimeout).
        """

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send body bytes; return once the transport has taken them (backpressure).

        Raise ConnectionError when the application no longer reads its input: the core then
        stops sending and keeps reading the response.
        """

    @abc.abstractmethod
    async def end_body(self) -> None:
        """The body is complete (close stdin, an empty FCGI_STDIN, nothing for SCGI)."""

    @abc.abstractmethod
    async def read(self) -> bytes:
        """The next bytes of the response (CGI-style: head, blank line, body); b"" at its end.

        Raise BadGateway (or WireError) when the transport's own framing is broken. An OSError
        raised here (a connection reset) becomes a 502 naming the transport in the core.
        """

    def output_ended(self) -> bool:
        """Without waiting: True when the response is known to have been read whole (what
        `read` returned so far is all of it, and it ended cleanly). The core then gives the
        client a Content-Length rather than chunks; False whenever that is not known yet."""
        return False

    @abc.abstractmethod
    async def close(self) -> None:
        """The response was read to its end: release the application (reap, return to a pool)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop now: kill the script's group, reset the connection. Synchronous, idempotent."""


class StreamTransport(Transport):
    """A transport over an asyncio stream (TCP or Unix socket): FastCGI, SCGI and uwsgi.

    A subclass supplies the framing only: `encode_head` (the request head or parameters),
    `encode_body` and `encode_end` (body records), and `decode` (turn received bytes into
    response bytes; b"" with `finished` set at the end of the response). `connect` returns the
    stream pair (a pool or `asyncio.open_connection`/`open_unix_connection` under a
    `connect_timeout`); `release` is called by `close` and may keep the connection for reuse.
    `read` turns a socket error into a 502 naming the transport (`connection_lost`), and
    returns b"" once the exchange was aborted.
    """

    READ_SIZE: Final = 65536

    def __init__(self, name: str,
                 connect: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]) -> None:
        self.name = name
        self._connect = connect
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.finished = False  # the framing saw the end of the response
        self.aborted = False

    # -- framing, supplied by each protocol ------------------------------------------------

    @abc.abstractmethod
    def encode_head(self, environ: Mapping[bytes, bytes], content_length: int | None) -> bytes:
        """The bytes that start a request: FastCGI BEGIN_REQUEST + PARAMS, an SCGI netstring."""

    def encode_body(self, data: bytes) -> bytes:
        """A body chunk as sent (FastCGI wraps it in FCGI_STDIN records); raw by default."""
        return data

    def encode_end(self) -> bytes:
        """What ends the body (FastCGI: an empty FCGI_STDIN record); nothing by default."""
        return b""

    @abc.abstractmethod
    def decode(self, data: bytes) -> bytes:
        """Received bytes (b"" at EOF) -> response bytes; set `finished` at the response's end."""

    def release(self) -> None:
        """After a complete response: close the connection (a pooled transport keeps it)."""
        if self.writer is not None:
            self.writer.close()

    # -- Transport --------------------------------------------------------------------------

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        self.reader, self.writer = await self._connect()
        self.writer.write(self.encode_head(environ, content_length))

    async def write(self, data: bytes) -> None:
        assert self.writer is not None
        if self.writer.is_closing():
            raise ConnectionResetError(f"{self.name}: connection closed")
        self.writer.write(self.encode_body(data))
        await self.writer.drain()

    async def end_body(self) -> None:
        assert self.writer is not None
        end = self.encode_end()
        if end:
            self.writer.write(end)
        await self.writer.drain()

    async def read(self) -> bytes:
        assert self.reader is not None
        while not self.finished:
            try:
                data = await self.reader.read(self.READ_SIZE)
            except OSError as exc:
                if self.aborted:
                    return b""  # the exception `abort` set to wake this read
                raise connection_lost(self.name, exc) from None
            if self.aborted:
                return b""
            out = self.decode(data)
            if out:
                return out
            if not data:
                # EOF: decode(b"") either finished the response or raised on a truncated one.
                self.finished = True
        return b""

    def output_ended(self) -> bool:
        if not self.finished:
            reader = self.reader
            # A connection-delimited response (SCGI, uwsgi, FastCGI that closes): ended once the
            # backend's close is in, which it often sends right behind the response.
            if not isinstance(reader, SocketStream) or not reader.ended():
                return False
            try:
                if self.decode(b""):
                    return False
            except WireError:
                return False  # cut short (FastCGI without its FCGI_END_REQUEST): `read` says so
            self.finished = True
        return not self.aborted

    async def close(self) -> None:
        self.release()

    def abort(self) -> None:
        if self.aborted:
            return
        self.aborted = True
        self.finished = True
        if self.writer is not None:
            self.writer.transport.abort()
        if self.reader is not None:
            # Wake a pending read. Not with feed_eof: a connection that is only half-closed (a
            # subclass may have sent its abort and shut down its side) still receives, and a
            # StreamReader given data after EOF fails, which resets the connection; an
            # exception may be set at any time and data after it is merely buffered.
            self.reader.set_exception(ConnectionAbortedError(f"{self.name}: exchange aborted"))


class _SilenceWatch:
    """The silence timeouts of every exchange running on one event loop, on one timer.

    An exchange that reads asks to be looked at by its deadline (`arm`); the timer runs at the
    earliest deadline asked for, looks at every exchange (`_Exchange.check_silence`), and is set
    again for the earliest that is left. A request costs a set insertion and removal instead of a
    timer of its own, armed and cancelled (a TimerHandle, the loop's heap, and the cancelled
    handles the heap carries until they reach its top).
    """

    __slots__ = ("loop", "active", "timer", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.active: set[_Exchange] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.due = 0.0  # when `timer` runs

    def arm(self, exchange: _Exchange, due: float) -> None:
        self.active.add(exchange)
        if self.timer is None or due < self.due:
            if self.timer is not None:
                self.timer.cancel()
            self.due = due
            self.timer = self.loop.call_at(due, self._run)

    def _run(self) -> None:
        self.timer = None
        now = self.loop.time()
        due: float | None = None
        for exchange in list(self.active):
            try:
                next_check = exchange.check_silence(now)
            except Exception:  # one transport's failing abort must not stop the others' clocks
                log.exception("aborting %s after its timeout failed", exchange.transport.name)
                next_check = None
            if next_check is None:
                self.active.discard(exchange)
            elif due is None or next_check < due:
                due = next_check
        if due is not None:
            self.due = due
            self.timer = self.loop.call_at(due, self._run)


_watch: _SilenceWatch | None = None


def _silence_watch(loop: asyncio.AbstractEventLoop) -> _SilenceWatch:
    """The watch of `loop`: the worker's one loop keeps it; a new loop (tests) gets a new one."""
    global _watch
    watch = _watch
    if watch is None or watch.loop is not loop:
        watch = _watch = _SilenceWatch(loop)
    return watch


class _Exchange:
    """The state of one `exchange()` call: the transport, the body pump, the timeouts."""

    __slots__ = ("request", "sink", "transport", "timeout", "send_timeout", "failure", "loop", "watch",
                 "since", "reading", "timed_out", "waiting_on_client", "body_done", "closed")

    def __init__(self, request: Request, sink: ResponseSink, transport: Transport,
                 timeout: float, send_timeout: float) -> None:
        self.request = request
        self.sink = sink
        self.transport = transport
        self.timeout = timeout
        self.send_timeout = send_timeout
        # What stopped the body pump (a client error: 400, 408, 413, or the client gone).
        self.failure: BaseException | None = None
        # The silence timeout. `timeout` measures the application's silence while a read waits
        # for it: body bytes it accepts restart it, and time spent waiting for the client's body
        # (or for the client to take the response) does not count (issue 13 §1: a 5 s upload to
        # a script reading as it came got a 504 at a 3 s timeout). The loop's `_SilenceWatch`
        # looks at the exchange by its deadline (a read moves only `since`); when the silence is
        # over, it aborts the transport, which wakes the read.
        self.loop = loop = asyncio.get_running_loop()
        self.watch = _silence_watch(loop)
        self.since = 0.0  # when the current silence started
        self.reading = False  # a read waits for the application
        self.timed_out = False
        self.waiting_on_client = False
        self.body_done = False  # the whole request body went to the transport (or there was none)
        self.closed = False  # the transport was closed early, its response read whole

    def _waiting_on_client(self, waiting: bool) -> None:
        """The pump waits for the client's body (no timeout), or has just moved body bytes
        (the timeout starts again)."""
        self.waiting_on_client = waiting
        if not waiting:
            self.since = self.loop.time()

    async def pump(self, body: BodySource) -> None:
        """Copy the body to the transport; on a client-side failure, abort the exchange."""
        transport = self.transport
        try:
            while True:
                self._waiting_on_client(True)
                try:
                    data = await body.read()
                finally:
                    self._waiting_on_client(False)
                try:
                    if not data:
                        await transport.end_body()
                        self.body_done = True
                        return
                    await transport.write(data)
                    self._waiting_on_client(False)  # accepted: the application is not silent
                except OSError:
                    # The application stopped reading its input (it may answer without it), or
                    # its connection failed (the response read reports that): not the client's
                    # error. What the client still sends is read away by the connection.
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the client side failed: report it from the main task
            self.failure = exc
            transport.abort()

    def check_silence(self, now: float) -> float | None:
        """For the watch: 504 once a read has waited `timeout` since the last sign of life.
        When to look again; None once timed out."""
        if self.reading and not self.waiting_on_client:
            due = self.since + self.timeout
            if now >= due:
                self.timed_out = True
                self.transport.abort()  # wakes the read, which reports the timeout
                return None
            return due
        return now + self.timeout

    def stop_timer(self) -> None:
        self.watch.active.discard(self)

    async def read(self) -> bytes:
        """The transport's next bytes; 504 after `timeout` seconds of silence, 502 when the
        application's connection fails."""
        self.since = since = self.loop.time()
        self.watch.arm(self, since + self.timeout)
        self.reading = True
        try:
            data = await self.transport.read()
        except OSError as exc:
            # The abort of a timeout may surface as an OSError too: the silence is what counts.
            if self.failure is not None:
                raise self.failure from None
            if self.timed_out:
                raise self._timeout() from None
            raise connection_lost(self.transport.name, exc) from None
        finally:
            self.reading = False
        if self.failure is not None and (self.timed_out or not data):
            raise self.failure
        if self.timed_out:
            raise self._timeout()
        return data

    def _timeout(self) -> GatewayTimeout:
        return GatewayTimeout(f"{self.transport.name}: no output for {self.timeout:g}s")

    async def head(self, max_head_size: int) -> ResponseHead:
        parser = ResponseHeadParser(max_head_size, allow_status_line=self.transport.allow_status_line)
        while True:
            data = await self.read()
            if not data:
                parser.eof()  # raises: the output ended inside (or before) the head
            head = parser.feed(data)
            if head is not None:
                return head

    async def relay(self, head: ResponseHead, buffered: bool = False) -> None:
        """Send a document or client-redirect response: status, fields, then the body
        (through a `ResponseBuffer` when `buffered`)."""
        sink = self.sink
        headers: list[tuple[bytes, bytes]] = []
        declared: int | None = None
        for name, value in head.headers:
            lower = name.lower()
            if lower in _NOT_RELAYED:
                continue
            if lower == b"content-length":
                if _DIGITS.fullmatch(value) is None or declared is not None:
                    raise BadGateway(f"{self.transport.name}: bad Content-Length {value[:32]!r} in the response")
                declared = int(value)
            headers.append((lower, value))
        no_content = head.status in _NO_CONTENT
        if no_content:
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            declared = None
        elif declared is None and self.transport.output_ended():
            # The whole output came with the head: the client gets a Content-Length and the
            # response in one write, rather than a chunk and then the last-chunk in another.
            declared = len(head.body_start)
            headers.append((b"content-length", b"%d" % declared))
        await sink.start(head.status, headers, head.reason)
        first = head.body_start
        if buffered and declared is not None and declared <= len(first) <= DIRECT_WRITE:
            # The whole body came with the head (most responses): what `_relay_buffered` does
            # with it, without a BufferedWriter: to the sink, then the application released.
            await self._body(first, declared, no_content, sink.write)
            if self.body_done:
                await self.transport.close()
                self.closed = True
        elif buffered:
            await self._relay_buffered(first, declared, no_content)
        else:
            await self._body(head.body_start, declared, no_content, sink.write)
        await sink.end()

    async def discard(self, data: bytes) -> None:
        """X-Sendfile: the application's body is not sent. What it still writes is read away (up
        to MAX_DISCARD bytes) so that it ends cleanly and is closed (reaped, pooled) as usual;
        more than that, or silence for `timeout`, and it is aborted now rather than waited for."""
        left = MAX_DISCARD - len(data)
        try:
            while left >= 0:
                data = await self.read()
                if not data:
                    return
                left -= len(data)
        except GatewayTimeout:
            pass
        log.info("%s: the body of an X-Sendfile answer not read to its end; aborted%s",
                 self.transport.name, self.request.log_context())
        self.transport.abort()
        self.closed = True

    async def _body(self, data: bytes, declared: int | None, no_content: bool,
                    out: Callable[[bytes], Awaitable[None]]) -> None:
        """Read the response body to its end (or its Content-Length), each chunk to `out`."""
        left = declared
        while True:
            if data and not no_content:
                if left is not None:
                    if len(data) > left:
                        # More than the application declared: the declared length is what the
                        # client was promised; the excess would corrupt the next response.
                        log.warning("%s: output beyond its Content-Length %d dropped%s",
                                    self.transport.name, declared, self.request.log_context())
                        data = data[:left]
                    left -= len(data)
                await out(data)
            if left == 0:
                break
            data = await self.read()
            if not data:
                break
        if left:
            raise BadGateway(f"{self.transport.name}: output ended {left} bytes short of its Content-Length")

    async def _relay_buffered(self, first: bytes, declared: int | None, no_content: bool) -> None:
        """Response buffering (issue 13 §1): the application's output is read as fast as it
        comes while the client takes it at its own pace; once it has all been read the
        transport is closed, so a CGI script exits and a backend connection is free while a
        slow client is still reading.

        See `BufferedWriter`: most responses end with their first chunk, which goes straight
        to the sink.
        """
        writer = BufferedWriter(self.sink)
        try:
            await self._body(first, declared, no_content, writer.write)
            if self.body_done:
                await self.transport.close()
                self.closed = True
            await writer.drain()
        finally:
            await writer.close()

    async def relay_nph(self) -> None:
        """Non-parsed-header output (RFC 3875 §5): to the client unchanged and unbuffered."""
        data = await self.read()
        if not data:
            raise BadGateway(f"{self.transport.name}: non-parsed-header script wrote nothing")
        _, writer, _ = self.sink.detach()
        try:
            while data:
                writer.write(data)
                async with asyncio.timeout(self.send_timeout):
                    await writer.drain()
                data = await self.read()
        except TimeoutError:
            raise ConnectionResetError(f"client read nothing for {self.send_timeout:g}s") from None


async def exchange(
    request: Request,
    sink: ResponseSink,
    transport: Transport,
    environ: Mapping[bytes, bytes],
    body: BodySource,
    *,
    timeout: float,
    send_timeout: float = 60.0,
    nph: bool = False,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    buffer_response: bool = False,
    x_sendfile: bool = False,
) -> LocalRedirect | FileAnswer | None:
    """Run one request through `transport` and answer it on `sink` (RFC 3875 §6).

    Returns a LocalRedirect when the application asked for one (the dispatcher serves it as a
    GET, §6.2.2), else None once the response is sent. `timeout` bounds each silence of the
    application (→ 504); `send_timeout` a client that stops reading raw NPH output.
    `buffer_response` reads a document's body as fast as the application writes it (see
    `_Exchange._relay_buffered`); NPH output is never buffered. With `x_sendfile`, a head with
    X-Sendfile or X-Accel-Redirect is returned as a FileAnswer for the handler to act on, the
    application's body discarded and the transport released first. The
    transport is closed when the response ended, aborted on every other way out (a failed
    `open` included, so `abort` must cope with a transport that never started).
    """
    state = _Exchange(request, sink, transport, timeout, send_timeout)
    pump: asyncio.Task[None] | None = None
    complete = False
    try:
        try:
            await transport.open(environ, body.length)
        except OSError as exc:
            # Whatever the transport let through (a refused connection is a ConnectionError):
            # the application's failure, not the client's.
            raise BadGateway(f"{transport.name}: cannot start: {exc.strerror or exc}") from None
        if body.length:
            pump = asyncio.create_task(state.pump(body))
        else:
            try:
                await transport.end_body()
                state.body_done = True
            except OSError:
                pass  # as in `pump`: the application stopped reading; its response tells
        result: LocalRedirect | FileAnswer | None = None
        if nph:
            await state.relay_nph()
        else:
            head = await state.head(max_head_size)
            if head.kind == "local-redirect":
                # §6.2.2: the server serves the new URL itself; nothing of this response (no
                # body is allowed in it) reaches the client. Reading it to its end lets the
                # application finish as it would otherwise.
                while await state.read():
                    pass
                assert head.location is not None
                try:
                    # The target must be one a client could have sent; a bad one is the
                    # application's fault (502), not the client's (400).
                    parse_target(head.location, "GET")
                except HTTPError as exc:
                    raise BadGateway(f"{transport.name}: bad local redirect: {exc.detail}") from None
                result = LocalRedirect(head.location.decode("latin-1"))
            elif x_sendfile and (answer := file_answer(head.headers)) is not None:
                await state.discard(head.body_start)
                result = answer
            else:
                await state.relay(head, buffered=buffer_response)
        complete = True
    except WireError as exc:
        raise BadGateway(f"{transport.name}: {exc}") from None
    finally:
        state.stop_timer()
        if pump is not None:
            if not pump.done():
                pump.cancel()
            # Wait for it: the connection reads what is left of the body once we return, and
            # two readers on one stream would collide.
            await asyncio.wait((pump,))
        if not complete and not state.closed:
            transport.abort()
    if not state.closed:
        await transport.close()
    return result
