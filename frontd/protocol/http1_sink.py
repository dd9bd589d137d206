"""One HTTP/1.1 request's two halves: its body as h11 decodes it (`Body`) and its response as
frontd frames it (`Sink`, the ResponseSink handlers write to).

Both talk to the connection through its ConnectionIO half (http1_io.py): the buffer of received
bytes, a wait for more, and the write path with its backpressure.
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
from frontd.errors import BadRequest, ContentTooLarge, RequestTimeout, error_for_status
from frontd.http.dates import http_date
from frontd.protocol.common import _DIGITS, check_status, declared_length  # noqa: F401 - _DIGITS re-exported by http1
from frontd.protocol.http1_io import ConnectionIO, _ClientGone

log = logging.getLogger("frontd")

SMALL_FILE = 64 * 1024
SERVER_HEADER = (b"server", SERVER_SOFTWARE.encode())
SERVER_LINE = b"server: " + SERVER_SOFTWARE.encode() + b"\r\n"
# Header lines as RFC 9110 §5.1, §5.5 allow them: a token, ": ", a value without CTLs (HTAB
# allowed). Checked on the whole block at once: one regex run per response.
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_NO_BODY, _LENGTH, _CHUNKED, _CLOSE = range(4)
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _DateLine:
    """The `date:` header line, encoded once per second rather than once per response."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def now(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = b"date: " + http_date(now) + b"\r\n"
        return self.line


DATE_LINE = _DateLine()


class Body:
    """A request body read from h11 as the handler asks for it, with limit and stall timeout.

    Bytes go from the connection's buffer to h11 only here, when a body is read; h11 hands back
    what lies past the body's end (a pipelined request) as trailing data.
    """

    __slots__ = ("length", "_conn", "_h11", "_done", "_received", "_continued")

    def __init__(self, conn: ConnectionIO, h11conn: h11.Connection, length: int | None) -> None:
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
            conn.write(_CONTINUE)
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(f"malformed request body: {exc}") from None
            if event is h11.NEED_DATA:
                buf = conn.buf
                if buf:
                    h.receive_data(bytes(buf))
                    buf.clear()
                elif conn.lost:
                    raise _ClientGone()
                elif conn.eof:
                    h.receive_data(b"")
                else:
                    try:
                        await conn.wait_data(conn.limits.body_timeout)
                    except TimeoutError:
                        raise RequestTimeout(f"request body stalled for {conn.limits.body_timeout:g}s") from None
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

    def __init__(self, conn: ConnectionIO, h11conn: h11.Connection | None, head_only: bool, *,
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
        check_status(status)
        if reason and _BAD_REASON.search(reason):
            reason = b""
        if reason and reason != REASONS.get(status):
            line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        else:
            line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
        out = [line, SERVER_LINE, DATE_LINE.now()]
        length: int | None = None
        lines: list[bytes] = []
        dropped = self._conn.dropped_headers
        for name, value in headers:
            if name in dropped:
                if name == b"connection" and value.lower() == b"close":
                    self.close_after = True
                continue
            if name == b"content-length":
                length = declared_length(value, length)
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
        conn = self._conn
        # What h11 holds past the request (a body it was given) comes before what it was not given.
        leftover = bytes(self._h11.trailing_data[0]) if self._h11 is not None else b""
        leftover += conn.buf
        conn.buf.clear()
        reader, writer = conn.detach_streams()
        return reader, writer, leftover

