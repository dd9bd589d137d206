"""One client connection: HTTP/1.1 on h11 and asyncio streams, timeouts, error rendering.

The request head is framed here before h11 sees it, so that leading empty lines can be skipped
(RFC 9112 §2.2), an over-long request line is a 414 and an over-large head a 431. Each request
gets a fresh h11.Connection; bytes that arrived after a request (pipelining) are carried over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from http import HTTPStatus
from typing import BinaryIO

import h11

from frontd import SERVER_SOFTWARE
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
from frontd.http.dates import http_date
from frontd.http.forwarded import TrustedProxies, real_client
from frontd.http.target import host_from_header, parse_target
from frontd.request import EMPTY_BODY, Request, TLSInfo
from frontd.response import AccessRecorder
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

READ_SIZE = 65536
SENDFILE_CHUNK = 1 << 20
TLS_FILE_CHUNK = 256 * 1024  # a file body through TLS is read and encrypted this much at a time
SMALL_FILE = 64 * 1024
# Methods frontd knows. Others are 501 (RFC 9110 §9.1); TRACE is never echoed (405).
KNOWN_METHODS = frozenset({
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
})
SERVER_HEADER = (b"server", SERVER_SOFTWARE.encode())
SERVER_LINE = b"server: " + SERVER_SOFTWARE.encode() + b"\r\n"
# Framing and hop-by-hop fields are the connection's business, never a handler's.
_FRAMING_HEADERS = frozenset({b"connection", b"transfer-encoding", b"keep-alive"})
# RFC 6797 §7.2: HSTS is never sent over plain HTTP, whoever set it.
_PLAIN_DROPPED_HEADERS = _FRAMING_HEADERS | {b"strict-transport-security"}
# Header lines as RFC 9110 §5.1, §5.5 allow them: a token, ": ", a value without CTLs (HTAB
# allowed). Checked on the whole block at once: one regex run per response.
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_NO_BODY, _LENGTH, _CHUNKED, _CLOSE = range(4)
# Statuses after which the request stream cannot be trusted (or the body was refused unread).
_FATAL_STATUSES = frozenset({400, 408, 413, 414, 431, 501, 505})
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}


class _ClientGone(Exception):
    """The client closed or reset the connection, or stopped reading for send_timeout."""


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


class Body:
    """A request body read from h11 as the handler asks for it, with limit and stall timeout."""

    __slots__ = ("length", "_conn", "_h11", "_done", "_received", "_continued")

    def __init__(self, conn: Connection, h11conn: h11.Connection, length: int | None) -> None:
        self.length = length
        self._conn = conn
        self._h11 = h11conn
        self._done = False
        self._received = 0
        self._continued = False

    @property
    def done(self) -> bool:
        return self._done

    async def read(self) -> bytes:
        if self._done:
            return b""
        conn, h = self._conn, self._h11
        if h.they_are_waiting_for_100_continue and not self._continued:
            # RFC 9110 §10.1.1: the client waits for this before sending the body.
            self._continued = True
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(f"malformed request body: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(conn.limits.body_timeout):
                        data = await conn.reader.read(READ_SIZE)
                except TimeoutError:
                    raise RequestTimeout(f"request body stalled for {conn.limits.body_timeout:g}s") from None
                except ConnectionError:
                    raise _ClientGone() from None
                h.receive_data(data)
                continue
            if type(event) is h11.Data:
                self._received += len(event.data)
                if self._received > conn.limits.max_body_size:
                    raise ContentTooLarge(f"request body over max_body_size ({conn.limits.max_body_size})")
                return bytes(event.data)
            if type(event) is h11.EndOfMessage:
                self._done = True
                return b""
            if type(event) is h11.ConnectionClosed:
                raise BadRequest("client closed the connection inside the request body")


class Sink:
    """The ResponseSink of one request on this connection.

    h11 parses requests; responses are serialised here, which costs a fraction of building
    h11 events. Framing follows RFC 9112 §6: the handler's Content-Length when it gave one,
    else chunked for HTTP/1.1, else close-delimited for HTTP/1.0.
    """

    __slots__ = ("started", "status", "bytes_sent", "ended", "close_after", "detached", "keep_alive",
                 "_conn", "_h11", "_head_only", "_http10", "_pending", "_framing", "_remaining")

    def __init__(self, conn: Connection, h11conn: h11.Connection, head_only: bool, *,
                 keep_alive: bool, http10: bool) -> None:
        self.started = False
        self.ended = False
        self.detached = False
        self.close_after = False
        self.keep_alive = keep_alive
        self.status = 0
        self.bytes_sent = 0
        self._conn = conn
        self._h11 = h11conn
        self._head_only = head_only
        self._http10 = http10
        self._pending: list[bytes] = []
        self._framing = _NO_BODY
        self._remaining = 0

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        if self.started:
            raise RuntimeError("response already started")
        if not 200 <= status <= 599:
            raise error_for_status(502, f"cannot send status {status} as a response")
        if reason and _BAD_REASON.search(reason):
            reason = b""
        if reason and reason != REASONS.get(status):
            line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        else:
            line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
        out = [line, SERVER_LINE, b"date: " + http_date(time.time()) + b"\r\n"]
        length: int | None = None
        lines: list[bytes] = []
        for name, value in headers:
            if name in self._conn.dropped_headers:
                if name == b"connection" and value.lower() == b"close":
                    self.close_after = True
                continue
            if name == b"content-length":
                if not _DIGITS.fullmatch(value) or (length is not None and int(value) != length):
                    raise error_for_status(502, f"invalid Content-Length {value[:40]!r}")
                length = int(value)
            lines.append(name + b": " + value + b"\r\n")
        block = b"".join(lines)
        if not _HEADER_BLOCK.fullmatch(block):
            # Response splitting guard: nothing from a backend may end a header line early.
            bad = next(n for n, v in headers if not _HEADER_BLOCK.fullmatch(n + b": " + v + b"\r\n"))
            raise error_for_status(502, f"invalid response header {bad[:40]!r}")
        out.append(block)
        if self._head_only or status in (204, 304):
            self._framing = _NO_BODY
        elif length is not None:
            self._framing = _LENGTH
            self._remaining = length
        elif not self._http10:
            self._framing = _CHUNKED
            out.append(b"transfer-encoding: chunked\r\n")
        else:
            self._framing = _CLOSE
            self.close_after = True
        if not self.keep_alive or self.close_after:
            self.close_after = True
            out.append(b"connection: close\r\n\r\n")
        elif self._http10:
            out.append(b"connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")
        self.started = True
        self.status = status
        # The head waits for the first body bytes so that small responses leave in one packet.
        self._pending.append(b"".join(out))

    def _frame(self, n: int) -> tuple[bytes, bytes]:
        """What goes before and after n body bytes, after checking them against the framing."""
        framing = self._framing
        if framing == _CHUNKED:
            return b"%x\r\n" % n, b"\r\n"
        if framing == _LENGTH:
            if n > self._remaining:
                self.close_after = True
                raise error_for_status(502, "response body longer than its Content-Length")
            self._remaining -= n
        return b"", b""

    async def write(self, data: bytes) -> None:
        if not data or self._framing == _NO_BODY:
            return
        before, after = self._frame(len(data))
        self.bytes_sent += len(data)
        out = self._pending
        self._pending = []
        if before:
            out.append(before)
        out.append(data)
        if after:
            out.append(after)
        await self._conn.send(out)

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        if count <= 0 or self._framing == _NO_BODY:
            return
        if count <= SMALL_FILE:
            # A small body goes out with the head in one write: cheaper than a sendfile round.
            await self.write(os.pread(file.fileno(), count, offset))
            return
        before, after = self._frame(count)
        conn = self._conn
        out = self._pending
        self._pending = []
        if before:
            out.append(before)
        await conn.send(out)
        await conn.sendfile(file, offset, count)
        self.bytes_sent += count
        if after:
            self._pending.append(after)

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        out = self._pending
        self._pending = []
        if self._framing == _CHUNKED:
            out.append(b"0\r\n\r\n")
        elif self._framing == _LENGTH and self._remaining:
            # The body fell short of its Content-Length: only closing tells the client.
            self.close_after = True
            log.error("response body %d bytes short of its Content-Length; closing", self._remaining)
        if out:
            await self._conn.send(out)

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        self.detached = True
        self.started = True
        self.close_after = True
        leftover = bytes(self._h11.trailing_data[0])
        return self._conn.reader, self._conn.writer, leftover


class Connection:
    """Serves requests on one accepted connection until either side closes or a limit ends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 dispatcher: Dispatcher, limits: Limits, access_log: AccessRecorder, tls: TLSInfo | None = None,
                 *, peer: tuple[str, int] | None = None, refused: HTTPError | None = None) -> None:
        """`peer`: the client a PROXY header named (None: the socket's peer). `refused`: the answer
        to the first request, after which the connection closes (a client over its connections)."""
        self.reader = reader
        self.writer = writer
        self.dispatcher = dispatcher
        self.limits = limits
        self.access_log = access_log
        self.buf = bytearray()
        self.eof = False
        self.idle = True  # no request in progress: graceful shutdown may close it
        self.started = time.monotonic()  # the current request's first byte (status page latency)
        sock = writer.get_extra_info("socket")
        local = writer.get_extra_info("sockname")
        if peer is None:
            peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = str(peer[0]), int(peer[1])
        else:  # Unix socket listener
            self.client_addr, self.client_port = "unix:", 0
        # Only a trusted peer's Forwarded / X-Forwarded-For is read; other connections pay nothing.
        trusted = dispatcher.trusted_proxies
        self.trusted: TrustedProxies | None = trusted if trusted is not None and self.client_addr in trusted else None
        self.refused = refused
        if isinstance(local, tuple):
            self.server_addr, self.server_port = str(local[0]), int(local[1])
        else:
            self.server_addr, self.server_port = str(local or ""), 0
        # Inside TLS the socket carries records, not the file: no sendfile(2) there.
        self._sock = sock if tls is None else None
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.dropped_headers = _PLAIN_DROPPED_HEADERS if tls is None else _FRAMING_HEADERS

    # -- output ---------------------------------------------------------------------------

    async def send(self, pieces: list[bytes]) -> None:
        writer = self.writer
        if writer.is_closing():
            raise _ClientGone()
        writer.writelines(pieces)
        transport = writer.transport
        if transport.get_write_buffer_size() > 65536:
            await self.drain()

    async def drain(self) -> None:
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await self.writer.drain()
        except TimeoutError:
            raise _ClientGone(f"client read nothing for {self.limits.send_timeout:g}s") from None
        except ConnectionError:
            raise _ClientGone() from None

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        if self.tls is not None:
            await self._send_file_chunks(file, offset, count)
            return
        loop = asyncio.get_running_loop()
        transport = self.writer.transport
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
        try:
            while offset < end:
                n = min(SENDFILE_CHUNK, end - offset)
                async with asyncio.timeout(self.limits.send_timeout):
                    # fallback=False (issue 13 §4): asyncio takes a sendfile(2) that fails at
                    # the start of a chunk (the client reset the connection) for "sendfile not
                    # available" and would read the file in a thread pool, whose module a
                    # worker that dropped privileges may not be able to import. Here it raises
                    # SendfileNotAvailableError, a RuntimeError: the client is gone.
                    sent = await loop.sendfile(transport, file, offset, n, fallback=False)
                if sent <= 0:
                    raise _ClientGone("file shrank while being sent")
                offset += sent
        except TimeoutError:
            raise _ClientGone(f"client read nothing for {self.limits.send_timeout:g}s") from None
        except (ConnectionError, RuntimeError):
            raise _ClientGone() from None

    async def _send_file_chunks(self, file: BinaryIO, offset: int, count: int) -> None:
        """A file body through TLS: read in chunks, each sent before the next is read (`send`
        drains past 64 KiB queued), so memory stays bounded whatever the file's size."""
        fd = file.fileno()
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(TLS_FILE_CHUNK, end - offset), offset)
            if not data:
                raise _ClientGone("file shrank while being sent")
            await self.send([data])
            offset += len(data)

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
            self.writer.close()

    async def _read_more(self) -> bool:
        try:
            data = await self.reader.read(READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def _read_head(self, first: bool) -> bytes | None:
        """The raw head of the next request, or None when the client closed between requests."""
        limits = self.limits
        # RFC 9112 §2.2: ignore at least one empty line before a request-line.
        while True:
            while self.buf[:1] in (b"\r", b"\n"):
                del self.buf[:1]
            if self.buf:
                break
            if self.eof:
                return None
            wait = limits.header_timeout if first else limits.keepalive_timeout
            try:
                async with asyncio.timeout(wait):
                    if not await self._read_more():
                        return None
            except TimeoutError:
                if first:
                    raise RequestTimeout(f"no request within header_timeout ({wait:g}s)") from None
                return None  # an idle keep-alive connection simply ends
        self.idle = False
        self.started = time.monotonic()
        head = self._take_head()
        if head is not None:
            return head  # the usual case: the whole head came in one read, no timer needed
        try:
            async with asyncio.timeout(limits.header_timeout):
                while True:
                    if self.eof or not await self._read_more():
                        raise BadRequest("client closed the connection inside the request head")
                    head = self._take_head()
                    if head is not None:
                        return head
        except TimeoutError:
            raise RequestTimeout(f"request head not complete within header_timeout ({limits.header_timeout:g}s)") from None

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
        # Bytes after the head belong to the body or to the next (pipelined) request.
        if self.buf:
            h.receive_data(bytes(self.buf))
            self.buf.clear()
        if self.eof:
            h.receive_data(b"")
        if body is None:
            # No body: h11 still owes the EndOfMessage that makes the request DONE.
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
        data, closed = h.trailing_data
        self.buf += data
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
        sink = Sink(self, h, head_only, keep_alive=not close,  # type: ignore[arg-type]
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
