"""One client connection: HTTP/1.1 on h11 and an asyncio.Protocol, timeouts, error rendering.

Received bytes go to one buffer (`data_received`). The request head is framed here before h11
sees it, so that leading empty lines can be skipped (RFC 9112 §2.2), an over-long request line
is a 414 and an over-large head a 431; h11 parses the head alone, and sees the bytes after it
only when a body is read (Body, in http1_sink.py). A request whose head is already buffered is
served without a future or a timer: only a wait for bytes, or for a paused transport to drain,
creates one. One timer handle per connection serves every phase's timeout (header, body,
keep-alive, send): a wait moves its deadline, and the handle, when it fires early, re-arms itself
for what is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import BinaryIO

import h11

from frontd.config.model import Limits
from frontd.errors import (
    BadRequest,
    ContentTooLarge,
    HeaderFieldsTooLarge,
    HTTPError,
    HTTPVersionNotSupported,
    MethodNotAllowed,
    NotImplementedMethod,
    RequestTimeout,
    URITooLong,
    error_for_status,
)
from frontd.handlers.dispatch import Dispatcher
from frontd.handlers.error_page import error_body, error_headers
from frontd.http.forwarded import TrustedProxies, real_client
from frontd.http.target import host_from_header, parse_target
from frontd.protocol.http1_sink import (  # noqa: F401  (SERVER_LINE and the tables: for HTTP/2 too)
    _FRAMING_HEADERS,
    _HEADER_BLOCK,
    _PLAIN_DROPPED_HEADERS,
    _STATUS_LINES,
    REASONS,
    SERVER_HEADER,
    SERVER_LINE,
    SMALL_FILE,
    Body,
    Sink,
    _ClientGone,
)
from frontd.request import EMPTY_BODY, Request, TLSInfo
from frontd.response import AccessRecorder
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

SENDFILE_CHUNK = 1 << 20
TLS_FILE_CHUNK = 256 * 1024  # a file body through TLS is read and encrypted this much at a time
# Received bytes not yet consumed past which the transport stops reading (a client pipelining
# faster than it reads its answers); never below max_header_size, or a large head could not end.
READ_HIGH = 256 * 1024
STREAM_LIMIT = 1 << 16  # the StreamReader a detached connection's handler gets
# A timer may run this early (the loop's clock resolution): count its deadline as reached.
TIMER_SLACK = 0.001
# Methods frontd knows. Others are 501 (RFC 9110 §9.1); TRACE is never echoed (405).
KNOWN_METHODS = frozenset({
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
})
# Statuses after which the request stream cannot be trusted (or the body was refused unread).
_FATAL_STATUSES = frozenset({400, 408, 413, 414, 431, 501, 505})


def _head_end(buf: bytearray) -> int:
    """Index just past the blank line ending a head (CRLF or bare LF line ends), or -1."""
    end = -1
    i = buf.find(b"\n\r\n")
    if i >= 0:
        end = i + 3
    j = buf.find(b"\n\n", 0, end if end >= 0 else len(buf))
    if j >= 0:
        end = j + 2
    return end


class Connection(asyncio.Protocol):
    """Serves requests on one accepted connection until either side closes or a limit ends it.

    The transport calls the protocol methods; `run()`, awaited by the worker, serves the requests
    one after the other. `detach_streams()` hands the transport to a StreamReader/StreamWriter pair
    (NPH output, Upgrade tunnels).
    """

    transport: asyncio.Transport

    def __init__(self, dispatcher: Dispatcher, limits: Limits, access_log: AccessRecorder,
                 tls: TLSInfo | None = None, *, peer: tuple[str, int] | None = None,
                 refused: HTTPError | None = None) -> None:
        """`peer`: the client a PROXY header named (None: the socket's peer). `refused`: the answer
        to the first request, after which the connection closes (a client over its connections)."""
        self.dispatcher = dispatcher
        self.limits = limits
        self.access_log = access_log
        self.refused = refused
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.dropped_headers = _PLAIN_DROPPED_HEADERS if tls is None else _FRAMING_HEADERS
        self._peer = peer
        self.buf = bytearray()
        self.eof = False  # the client ended its side (or the connection is lost)
        self.lost = False  # the transport is closed
        self.idle = True  # no request in progress: graceful shutdown may close it
        self.started = time.monotonic()  # the current request's first byte (status page latency)
        self._loop = asyncio.get_running_loop()
        self._reading = True
        self._read_high = max(READ_HIGH, limits.max_header_size + 1)
        self._writing_paused = False
        self._stalled = False  # the client stopped reading: abort, do not wait to flush
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_deadline = 0.0
        self._write_waiter: asyncio.Future[None] | None = None
        self._write_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._sock = None
        self.client_addr, self.client_port = "unix:", 0
        self.server_addr, self.server_port = "", 0
        self.trusted: TrustedProxies | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        local = transport.get_extra_info("sockname")
        peer = self._peer if self._peer is not None else transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = str(peer[0]), int(peer[1])
        # Only a trusted peer's Forwarded / X-Forwarded-For is read; other connections pay nothing.
        trusted = self.dispatcher.trusted_proxies
        self.trusted = trusted if trusted is not None and self.client_addr in trusted else None
        if isinstance(local, tuple):
            self.server_addr, self.server_port = str(local[0]), int(local[1])
        else:
            self.server_addr = str(local or "")
        # Inside TLS the socket carries records, not the file: no sendfile(2) there.
        self._sock = transport.get_extra_info("socket") if self.tls is None else None

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self._reading and len(buf) > self._read_high:
            self._reading = False
            self.transport.pause_reading()
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # Keep the sending side open: a client that half-closed still gets its answer. (Over
        # TLS the transport closes at the client's close_notify whatever this returns.)
        return self.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        for waiter in (self._read_waiter, self._write_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._disarm()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the timer ------------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first and re-arms itself for this deadline
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        """The timer fired: fail the waits whose deadline passed, re-arm for the others."""
        self._timer = None
        now = self._loop.time() + TIMER_SLACK
        later: float | None = None
        for waiter, deadline in ((self._read_waiter, self._read_deadline),
                                 (self._write_waiter, self._write_deadline)):
            if waiter is None or waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError())
            elif later is None or deadline < later:
                later = deadline
        if later is not None:
            self._timer = self._loop.call_at(later, self._expire)

    # -- input ----------------------------------------------------------------------------

    async def wait_data(self, timeout: float) -> None:
        """Until bytes arrive or the client ends its side; TimeoutError after `timeout` s."""
        await self._wait_data_until(self._loop.time() + timeout)

    async def _wait_data_until(self, deadline: float) -> None:
        if self.eof:
            return
        if not self._reading:
            # More is wanted, so what is buffered has been consumed: read again.
            self._reading = True
            self.transport.resume_reading()
        waiter = self._loop.create_future()
        self._read_waiter = waiter
        self._read_deadline = deadline
        self._arm(deadline)
        try:
            await waiter
        finally:
            self._read_waiter = None

    # -- output ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def send(self, pieces: list[bytes]) -> None:
        transport = self.transport
        if transport.is_closing():
            raise _ClientGone()
        transport.writelines(pieces)
        if self._writing_paused:
            await self.drain()

    async def drain(self) -> None:
        """Until the transport takes writes again (below its low-water mark); _ClientGone when the
        connection is lost or the client read nothing for send_timeout."""
        while self._writing_paused and not self.lost:
            timeout = self.limits.send_timeout
            waiter = self._loop.create_future()
            self._write_waiter = waiter
            self._write_deadline = deadline = self._loop.time() + timeout
            self._arm(deadline)
            try:
                await waiter
            except TimeoutError:
                self._stalled = True
                raise _ClientGone(f"client read nothing for {timeout:g}s") from None
            finally:
                self._write_waiter = None
        if self.lost:
            raise _ClientGone()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        if self.tls is not None:
            await self._send_file_chunks(file, offset, count)
            return
        transport = self.transport
        end = offset + count
        if self._sock is not None and not transport.get_write_buffer_size():
            # Nothing queued ahead of the file: one sendfile(2) straight away usually sends it
            # all, without loop.sendfile's pause/resume and futures. The rest, if the socket
            # buffer fills, goes the awaited way below.
            try:
                offset += os.sendfile(self._sock.fileno(), file.fileno(), offset, count)
            except BlockingIOError:
                pass
            except OSError:
                raise _ClientGone() from None
        if offset >= end:
            return
        try:
            while offset < end:
                n = min(SENDFILE_CHUNK, end - offset)
                # loop.sendfile can only be interrupted by cancelling it: here alone a timeout
                # context stands in for the connection's timer, once per chunk of a large file.
                async with asyncio.timeout(self.limits.send_timeout):
                    # fallback=False (issue 13 §4): asyncio takes a sendfile(2) that fails at
                    # the start of a chunk (the client reset the connection) for "sendfile not
                    # available" and would read the file in a thread pool, whose module a
                    # worker that dropped privileges may not be able to import. Here it raises
                    # SendfileNotAvailableError, a RuntimeError: the client is gone.
                    sent = await self._loop.sendfile(transport, file, offset, n, fallback=False)
                if sent <= 0:
                    raise _ClientGone("file shrank while being sent")
                offset += sent
        except TimeoutError:
            self._stalled = True
            raise _ClientGone(f"client read nothing for {self.limits.send_timeout:g}s") from None
        except (ConnectionError, RuntimeError):
            raise _ClientGone() from None

    async def _send_file_chunks(self, file: BinaryIO, offset: int, count: int) -> None:
        """A file body through TLS: read in chunks, each sent before the next is read (`send`
        drains past the transport's high-water mark), so memory stays bounded whatever the
        file's size."""
        fd = file.fileno()
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(TLS_FILE_CHUNK, end - offset), offset)
            if not data:
                raise _ClientGone("file shrank while being sent")
            await self.send([data])
            offset += len(data)

    def detach_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the transport to a StreamReader/StreamWriter pair; this protocol hears no more of
        it. Bytes already buffered stay in `buf` for the caller (Sink.detach returns them)."""
        loop = self._loop
        transport = self.transport
        self._disarm()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._writing_paused:
            protocol.pause_writing()  # the transport calls resume_writing on the new protocol
        if not self._reading:
            self._reading = True
            transport.resume_reading()  # the reader pauses it again past its own limit
        if self.lost:
            protocol.connection_lost(None)
        elif self.eof:
            reader.feed_eof()
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def close(self) -> None:
        """Close the connection (a graceful stop closing an idle one)."""
        self.transport.close()

    # -- the request loop -------------------------------------------------------------------

    async def run(self) -> None:
        STATS.connection_opened()
        try:
            first = True
            while await self._one_request(first):
                first = False
        except (_ClientGone, ConnectionError):
            pass
        except Exception:
            log.exception("connection from %s failed", self.client_addr)
        finally:
            STATS.connection_closed()
            self._disarm()
            if self._stalled:
                self.transport.abort()  # what it did not read would wait for it forever
            else:
                self.transport.close()

    async def _read_head(self, first: bool) -> bytes | None:
        """The raw head of the next request, or None when the client closed between requests."""
        limits = self.limits
        buf = self.buf
        # RFC 9112 §2.2: ignore at least one empty line before a request-line.
        while True:
            if buf[:1] in (b"\r", b"\n"):
                del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]
            if buf:
                break
            if self.eof:
                return None
            wait = limits.header_timeout if first else limits.keepalive_timeout
            try:
                await self.wait_data(wait)
            except TimeoutError:
                if first:
                    raise RequestTimeout(f"no request within header_timeout ({wait:g}s)") from None
                return None  # an idle keep-alive connection simply ends
        self.idle = False
        self.started = time.monotonic()
        head = self._take_head()
        if head is not None:
            return head  # the usual case: the whole head came in one read, no timer needed
        deadline = self._loop.time() + limits.header_timeout
        while True:
            if self.eof:
                raise BadRequest("client closed the connection inside the request head")
            try:
                await self._wait_data_until(deadline)
            except TimeoutError:
                raise RequestTimeout(
                    f"request head not complete within header_timeout ({limits.header_timeout:g}s)") from None
            head = self._take_head()
            if head is not None:
                return head

    def _take_head(self) -> bytes | None:
        """The head at the start of the buffer if it is complete; its size limits checked."""
        limits = self.limits
        buf = self.buf
        end = _head_end(buf)
        line_end = buf.find(b"\n")
        line_len = line_end if line_end >= 0 else len(buf)
        if line_len > limits.max_target_size + 32:
            raise URITooLong(f"request line over {limits.max_target_size} bytes")
        if end < 0:
            if len(buf) > limits.max_header_size:
                raise HeaderFieldsTooLarge(f"request head over max_header_size ({limits.max_header_size})")
            return None
        if end > limits.max_header_size:
            raise HeaderFieldsTooLarge(f"request head over max_header_size ({limits.max_header_size})")
        head = bytes(buf[:end])
        del buf[:end]
        return head

    async def _one_request(self, first: bool) -> bool:
        """Serve one request; True when the connection can carry another."""
        # Only a keep-alive connection between requests is idle. A new one has a request on its way:
        # closing it in a graceful stop (a reload) would fail a client that has just connected.
        self.idle = not first
        request: Request | None = None
        try:
            head = await self._read_head(first)
            if head is None:
                return False
            h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_size + 1024)
            h.receive_data(head)
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise error_for_status(exc.error_status_hint, f"malformed request: {exc}") from None
            assert isinstance(event, h11.Request)
            request, body = self._make_request(h, event)
            if b"\n " in head or b"\n\t" in head:
                # RFC 9112 §5.2: obsolete line folding; h11 would unfold it, a front end refuses it.
                raise BadRequest("obsolete line folding in the request head")
        except HTTPError as exc:
            await self._send_error(exc, None, None, close=True)
            return False
        if body is None:
            # No body: h11 still owes the EndOfMessage that makes the request DONE. The bytes
            # after the head (a pipelined request) stay in the buffer, never given to h11.
            h.next_event()
        return await self._serve(h, request, body)

    def _make_request(self, h: h11.Connection, event: h11.Request) -> tuple[Request, Body | None]:
        version = event.http_version.decode()
        if not version.startswith("1."):
            raise HTTPVersionNotSupported(f"HTTP/{version} is not supported")
        method = event.method.decode("ascii")
        target = event.target
        if len(target) > self.limits.max_target_size:
            raise URITooLong(f"request target over {self.limits.max_target_size} bytes")
        headers = list(event.headers)
        host_values = [v for k, v in headers if k == b"host"]
        content_length = None
        chunked = False
        for k, v in headers:
            if k == b"content-length":
                content_length = int(v)  # h11 has validated it (digits, no conflicting values)
            elif k == b"transfer-encoding":
                chunked = True
        if chunked and content_length is not None:
            # RFC 9112 §6.1: a server MAY reject this; a front end must, or it invites smuggling.
            raise BadRequest("both Content-Length and Transfer-Encoding")
        parsed = parse_target(target, method)
        host = parsed.host
        if host_values:
            header_host = host_from_header(host_values[0])
            if host is None:
                host = header_host
        if method not in KNOWN_METHODS:
            if method in ("TRACE", "CONNECT"):
                raise MethodNotAllowed(f"method {method} is not allowed",
                                       headers=((b"allow", b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),))
            raise NotImplementedMethod(f"unknown method {method}")
        if content_length is not None and content_length > self.limits.max_body_size:
            raise ContentTooLarge(f"Content-Length {content_length} over max_body_size ({self.limits.max_body_size})")
        body: Body | None = None
        if chunked or content_length:
            body = Body(self, h, None if chunked else content_length)
        request = Request(
            method=method,
            target=target.decode("latin-1"),
            path=parsed.path,
            raw_path=parsed.raw_path,
            query=parsed.query,
            http_version="1.1" if version != "1.0" else "1.0",
            headers=headers,
            host=host or "",
            client_addr=self.client_addr,
            client_port=self.client_port,
            server_addr=self.server_addr,
            server_port=self.server_port,
            body=body if body is not None else EMPTY_BODY,
            scheme=self.scheme,
            tls=self.tls,
        )
        if self.trusted is not None:
            found = real_client(headers, self.trusted)
            if found is not None:
                request.peer_addr = self.client_addr
                request.client_addr, request.client_port = found
        return request, body

    async def _serve(self, h: h11.Connection, request: Request, body: Body | None) -> bool:
        # keepalive_timeout = 0 turns keep-alive off: say so rather than announce it and close.
        keep_alive = self.limits.keepalive_timeout > 0 and _keep_alive(request) and self.refused is None
        sink = Sink(self, h, request.method == "HEAD", keep_alive=keep_alive,
                    http10=request.http_version == "1.0")
        try:
            if self.refused is not None:
                raise self.refused
            await self.dispatcher.handle(request, sink)
            if sink.detached:
                # Raw output (NPH, tunnels): the handler may have set the status it relayed.
                self._log_access(request, sink.status or 200, sink.bytes_sent)
                return False
            if not sink.ended:
                await sink.end()
        except HTTPError as exc:
            if sink.detached or sink.started:
                # Closed without the response's end (no chunked terminator, a short body): the
                # client sees it cut, not complete (issue 13 section 3).
                log.error("%s after the response started; closing%s", exc.detail, request.log_context())
                self._log_access(request, sink.status or 200, sink.bytes_sent, cut=True)
                return False
            # Input errors leave the stream out of sync (or the body unread on purpose): close.
            fatal = exc.status in _FATAL_STATUSES
            if not await self._send_error(exc, request, h, close=fatal or not sink.keep_alive) or fatal:
                return False
        except (_ClientGone, ConnectionError):
            self._log_access(request, sink.status or 499, sink.bytes_sent)
            return False
        except Exception:
            log.exception("unhandled error%s", request.log_context())
            if sink.started or sink.detached:
                self._log_access(request, sink.status or 200, sink.bytes_sent, cut=True)
                return False
            await self._send_error(error_for_status(500), request, h, close=True, logged=True)
            return False
        else:
            self._log_access(request, sink.status, sink.bytes_sent)
        if body is not None and not body.done:
            # An unread body must not be taken for the next request: read it away (up to
            # max_body_size, as the handler would have), or close.
            try:
                while await body.read():
                    pass
            except (HTTPError, _ClientGone, ConnectionError):
                return False
        if sink.close_after:
            return False
        return self._reusable(h)

    def _reusable(self, h: h11.Connection) -> bool:
        # The request must be complete. h11 puts every HTTP/1.0 client in MUST_CLOSE after its
        # request, as h11 itself does not do HTTP/1.0 keep-alive; whether this connection goes
        # on is _keep_alive's decision, made before the response announced it (issue 12).
        if h.their_state is not h11.DONE and h.their_state is not h11.MUST_CLOSE:
            return False
        # What h11 was given past the body's end goes back before what arrived since.
        data, closed = h.trailing_data
        if data:
            self.buf[:0] = data
        if closed:
            self.eof = True
        return True

    def _log_access(self, request: Request, status: int, size: int, *, cut: bool = False) -> None:
        self.access_log.record(request, status, size, time.monotonic() - self.started, cut=cut)
        STATS.request(status, size, self.started)

    async def _send_error(self, exc: HTTPError, request: Request | None, h: h11.Connection | None,
                          *, close: bool, logged: bool = False) -> bool:
        """Send the error page; True when the connection may carry another request."""
        status = exc.status
        if not logged:
            level = logging.INFO if status in (404, 403, 304) else logging.WARNING if status < 500 else logging.ERROR
            context = request.log_context() if request else f", client: {self.client_addr}"
            log.log(level, "%d: %s%s", status, exc.detail, context)
        head_only = request is not None and request.method == "HEAD"
        sink = Sink(self, h, head_only, keep_alive=not close,
                    http10=request is not None and request.http_version == "1.0")
        body = error_body(status)
        try:
            headers = self.dispatcher.rule_headers(request, [*error_headers(status, close=close), *exc.headers])
            await sink.start(status, headers)
            await sink.write(body)
            await sink.end()
            await self.drain()
        except (_ClientGone, ConnectionError, HTTPError):
            sink.close_after = True
        if request is None:
            request = Request(method="-", target="-", path="/", raw_path="/", query="", http_version="1.1",
                              headers=[], host="", client_addr=self.client_addr, client_port=self.client_port,
                              server_addr=self.server_addr, server_port=self.server_port)
        self._log_access(request, status, 0 if head_only else len(body))
        return not sink.close_after


def _keep_alive(request: Request) -> bool:
    """Whether the client lets the connection carry another request (RFC 9112 §9.3)."""
    tokens: set[bytes] = set()
    for name, value in request.headers:
        if name == b"connection":
            tokens.update(token.strip() for token in value.lower().split(b","))
    if request.http_version == "1.0":
        # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; close after it.
        if any(name == b"transfer-encoding" for name, _ in request.headers):
            return False
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens
