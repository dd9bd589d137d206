"""One client connection: HTTP/1.1 requests on h11, error rendering, the access log.

The request head is framed here before h11 sees it, so that leading empty lines can be skipped
(RFC 9112 §2.2), an over-long request line is a 414 and an over-large head a 431; h11 parses the
head alone, and sees the bytes after it only when a body is read (Body, in http1_sink.py): a
pipelined request stays in the buffer. A request whose head is already buffered is served
without a future or a timer. The bytes in and out, the timeouts and backpressure are
ConnectionIO's (http1_io.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

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
# The header sets, tables and sizes are imported from here by other protocols (HTTP/2) too.
from frontd.protocol.http1_io import (  # noqa: F401
    _FRAMING_HEADERS,
    _PLAIN_DROPPED_HEADERS,
    SENDFILE_CHUNK,
    TLS_FILE_CHUNK,
    ConnectionIO,
    _ClientGone,
)
from frontd.protocol.http1_sink import (  # noqa: F401
    _BAD_REASON,
    _DIGITS,
    _HEADER_BLOCK,
    _STATUS_LINES,
    REASONS,
    SERVER_HEADER,
    SERVER_LINE,
    SMALL_FILE,
    Body,
    Sink,
)
from frontd.request import EMPTY_BODY, Request, TLSInfo
from frontd.response import AccessRecorder
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

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


class Connection(ConnectionIO):
    """Serves requests on one accepted connection until either side closes or a limit ends it.

    The transport calls the protocol methods; `run()`, awaited by the worker, serves the requests
    one after the other.
    """

    def __init__(self, dispatcher: Dispatcher, limits: Limits, access_log: AccessRecorder,
                 tls: TLSInfo | None = None, *, peer: tuple[str, int] | None = None,
                 refused: HTTPError | None = None) -> None:
        """`peer`: the client a PROXY header named (None: the socket's peer). `refused`: the answer
        to the first request, after which the connection closes (a client over its connections)."""
        super().__init__(limits, tls)
        self.dispatcher = dispatcher
        self.access_log = access_log
        self.refused = refused
        self.scheme = "http" if tls is None else "https"
        self._peer = peer
        self.idle = True  # no request in progress: graceful shutdown may close it
        self.started = time.monotonic()  # the current request's first byte (status page latency)
        self.client_addr, self.client_port = "unix:", 0
        self.server_addr, self.server_port = "", 0
        self.trusted: TrustedProxies | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
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
            self.finish()

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
            request, body, keep_alive, upgrade = self._make_request(h, event)
            if b"\n " in head or b"\n\t" in head:
                # RFC 9112 §5.2: obsolete line folding; h11 would unfold it, a front end refuses it.
                raise BadRequest("obsolete line folding in the request head")
        except HTTPError as exc:
            await self._send_error(exc, None, None, close=True)
            return False
        if body is None and upgrade:
            # h11 takes an Upgrade field for a protocol switch proposal: after the EndOfMessage
            # it owes, the client is in MIGHT_SWITCH_PROTOCOL, and _reusable closes the connection.
            h.next_event()
        return await self._serve(h, request, body, keep_alive)

    def _make_request(self, h: h11.Connection, event: h11.Request) -> tuple[Request, Body | None, bool, bool]:
        """The request, its body (None when it has none), whether the client lets the
        connection carry another request after it, and whether it has an Upgrade field."""
        version = event.http_version.decode()
        if not version.startswith("1."):
            raise HTTPVersionNotSupported(f"HTTP/{version} is not supported")
        method = event.method.decode("ascii")
        target = event.target
        if len(target) > self.limits.max_target_size:
            raise URITooLong(f"request target over {self.limits.max_target_size} bytes")
        headers = list(event.headers)
        host_value: bytes | None = None
        content_length = None
        chunked = upgrade = False
        connection: list[bytes] = []
        for k, v in headers:
            if k == b"host":
                if host_value is None:
                    host_value = v
            elif k == b"content-length":
                content_length = int(v)  # h11 has validated it (digits, no conflicting values)
            elif k == b"transfer-encoding":
                chunked = True
            elif k == b"connection":
                connection.append(v)
            elif k == b"upgrade":
                upgrade = True
        if chunked and content_length is not None:
            # RFC 9112 §6.1: a server MAY reject this; a front end must, or it invites smuggling.
            raise BadRequest("both Content-Length and Transfer-Encoding")
        parsed = parse_target(target, method)
        host = parsed.host
        if host_value is not None:
            header_host = host_from_header(host_value)
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
        return request, body, _keep_alive(version == "1.0", connection, chunked), upgrade

    async def _serve(self, h: h11.Connection, request: Request, body: Body | None, keep_alive: bool) -> bool:
        # keepalive_timeout = 0 turns keep-alive off: say so rather than announce it and close.
        keep_alive = keep_alive and self.limits.keepalive_timeout > 0 and self.refused is None
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
        return self._reusable(h, body)

    def _reusable(self, h: h11.Connection, body: Body | None) -> bool:
        # The request must be complete. h11 puts every HTTP/1.0 client in MUST_CLOSE after its
        # request, as h11 itself does not do HTTP/1.0 keep-alive; whether this connection goes
        # on is _keep_alive's decision, made before the response announced it (issue 12).
        state = h.their_state
        if state is h11.SEND_BODY and body is None:
            # A request without a body ends with its head. h11 was given the head alone, so it
            # holds nothing past it, and the EndOfMessage it owes (a tenth of the request's
            # parse) is not asked for: the bytes after the head stay in the buffer.
            return True
        if state is not h11.DONE and state is not h11.MUST_CLOSE:
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


def _keep_alive(http10: bool, connection: list[bytes], chunked: bool) -> bool:
    """Whether the client lets the connection carry another request (RFC 9112 §9.3), from the
    values of its Connection fields."""
    if not connection:
        return not http10
    tokens = {token.strip() for value in connection for token in value.lower().split(b",")}
    if http10:
        # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; close after it.
        return not chunked and b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens
