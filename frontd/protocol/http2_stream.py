"""The two halves of one HTTP/2 stream as handlers see them: `StreamBody` reads the request body
from DATA frames, `StreamSink` answers with HEADERS and DATA as the flow-control windows allow.

Both call back into their connection through `StreamConnection`, which `H2Protocol` in
frontd/protocol/http2.py fulfils; `StreamGone` ends a stream's work when the client reset it, the
connection closed, or the client's window stayed shut for send_timeout.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import time
from collections.abc import Callable
from typing import BinaryIO, Protocol

import h2.errors

from frontd import SERVER_SOFTWARE
from frontd.config.model import Limits
from frontd.errors import ContentTooLarge, RequestTimeout, error_for_status
from frontd.http.dates import http_date
from frontd.protocol.common import check_status, declared_length

log = logging.getLogger("frontd")

FILE_CHUNK = 64 * 1024  # a file body is read this much at a time, as the window allows
# Connection-specific fields never go into an HTTP/2 response (RFC 9113 §8.2.2).
CONNECTION_FIELDS = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"proxy-connection",
                               b"upgrade"})
# RFC 6797 §7.2: HSTS is never sent over plain HTTP (h2c), whoever set it.
PLAIN_DROPPED = CONNECTION_FIELDS | {b"strict-transport-security"}
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
_SERVER = (b"server", SERVER_SOFTWARE.encode())


class StreamGone(Exception):
    """The client reset the stream, the connection closed, or its window stayed shut for send_timeout."""


class StreamConnection(Protocol):
    """What a stream's body and sink need from their connection (H2Protocol)."""

    limits: Limits
    dropped_headers: frozenset[bytes]  # response fields never sent on this connection

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = False) -> None: ...

    def send_data(self, stream_id: int, data: memoryview, end: bool = False) -> None: ...

    def end_stream(self, stream_id: int) -> None: ...

    def reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None: ...

    def acknowledge(self, stream_id: int, size: int) -> None: ...

    async def window(self, stream_id: int, waiter: Callable[[], asyncio.Event], wanted: int) -> int: ...

    async def drain(self) -> None: ...


class StreamBody:
    """A request body fed from DATA frames; the window reopens only as the handler reads."""

    __slots__ = ("length", "_conn", "_id", "_chunks", "_ended", "_received", "_more", "_failed", "_expect")

    def __init__(self, conn: StreamConnection, stream_id: int, length: int | None, expect: bool = False) -> None:
        self.length = length
        self._expect = expect  # the client waits for a 100 (Continue) before it sends the body
        self._conn = conn
        self._id = stream_id
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self._ended = False
        self._failed = False
        self._received = 0
        self._more = asyncio.Event()

    @property
    def done(self) -> bool:
        return self._ended and not self._chunks

    def feed(self, data: bytes, flow_length: int) -> None:
        self._received += len(data)
        self._chunks.append((data, flow_length))
        self._more.set()

    def end(self, failed: bool = False) -> None:
        self._ended = True
        self._failed = failed
        self._more.set()

    async def read(self) -> bytes:
        conn = self._conn
        if self._expect:
            # RFC 9110 §10.1.1: the handler wants the body, so ask for it.
            self._expect = False
            if not self._chunks and not self._ended:
                conn.send_headers(self._id, [(b":status", b"100")])
        while not self._chunks:
            if self._ended:
                if self._failed:
                    raise StreamGone()
                return b""
            self._more.clear()
            try:
                async with asyncio.timeout(conn.limits.body_timeout):
                    await self._more.wait()
            except TimeoutError:
                raise RequestTimeout(f"request body stalled for {conn.limits.body_timeout:g}s") from None
        data, flow_length = self._chunks.popleft()
        if self._received > conn.limits.max_body_size:
            raise ContentTooLarge(f"request body over max_body_size ({conn.limits.max_body_size})")
        conn.acknowledge(self._id, flow_length)
        return data

    def discard(self) -> None:
        """Give back the window of what was received and never read (the stream is over)."""
        total = sum(n for _, n in self._chunks)
        self._chunks.clear()
        if total:
            self._conn.acknowledge(self._id, total)


class StreamSink:
    """The ResponseSink of one stream: HEADERS, then DATA as the flow-control windows allow."""

    __slots__ = ("started", "status", "bytes_sent", "ended", "_conn", "_id", "_head_only", "_no_body",
                 "_remaining", "_window", "_head")

    def __init__(self, conn: StreamConnection, stream_id: int, head_only: bool) -> None:
        self.started = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0
        self._conn = conn
        self._id = stream_id
        self._head_only = head_only
        self._no_body = head_only
        self._remaining: int | None = None
        # Set by WINDOW_UPDATE and SETTINGS while a write waits on it; made by the first such wait.
        self._window: asyncio.Event | None = None
        self._head: list[tuple[bytes, bytes]] | None = None  # a bodiless response's fields, until end()

    def window_opened(self) -> None:
        """WINDOW_UPDATE or SETTINGS from the client: a write waiting for its window tries again."""
        if self._window is not None:
            self._window.set()

    def _window_waiter(self) -> asyncio.Event:
        if self._window is None:
            self._window = asyncio.Event()
        return self._window

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        if self.started:
            raise RuntimeError("response already started")
        check_status(status)
        dropped = self._conn.dropped_headers
        out = [(b":status", str(status).encode()), _SERVER, (b"date", http_date(time.time()))]
        length: int | None = None
        for name, value in headers:
            name = name.lower()
            if type(value) is not bytes or type(name) is not bytes:  # a bytearray: the encoder hashes fields
                name, value = bytes(name), bytes(value)
            if name in dropped:
                continue
            if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
                raise error_for_status(502, f"invalid response header {name[:40]!r}")
            if name == b"content-length":
                if length is not None and declared_length(value, length) == length:
                    continue  # the same length twice: sent once
                length = declared_length(value, length)
            out.append((name, value.strip(b" \t")))
        self._no_body = self._head_only or status in (204, 304)
        self._remaining = None if self._no_body else length
        self.started = True
        self.status = status
        if self._no_body:
            self._head = out  # sent by end() with END_STREAM: one HEADERS frame is the response
        else:
            self._conn.send_headers(self._id, out)

    async def write(self, data: bytes) -> None:
        if not data or self._no_body:
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                raise error_for_status(502, "response body longer than its Content-Length")
            self._remaining -= len(data)
        # Frames hold views of the body until the next flush: a bytes body is not copied, a
        # mutable one (a caller may reuse its buffer) is, once.
        view = memoryview(data if type(data) is bytes else bytes(data))
        conn = self._conn
        while view:
            n = await conn.window(self._id, self._window_waiter, len(view))
            # The frame that completes the Content-Length ends the stream: no empty DATA frame after.
            last = n == len(view) and self._remaining == 0
            conn.send_data(self._id, view[:n], end=last)
            self.bytes_sent += n
            view = view[n:]
            if last:
                self.ended = True
                return
            await conn.drain()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        """sendfile(2) cannot write into frames: the file is read in chunks, each framed only as
        the window allows, so a large file costs FILE_CHUNK of memory at a time."""
        if self._no_body:
            return
        fd = file.fileno()
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(FILE_CHUNK, end - offset), offset)
            if not data:
                raise StreamGone("file shrank while being sent")
            await self.write(data)
            offset += len(data)

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._remaining:
            log.error("response body %d bytes short of its Content-Length; resetting the stream", self._remaining)
            self._conn.reset(self._id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            raise StreamGone()
        if self._head is not None:
            self._conn.send_headers(self._id, self._head, end=True)
        else:
            self._conn.end_stream(self._id)

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        # Raw output (NPH scripts, Upgrade tunnels) has no place in a stream of frames.
        raise error_for_status(502, "raw (non-parsed-header or upgraded) output cannot be sent over HTTP/2")

