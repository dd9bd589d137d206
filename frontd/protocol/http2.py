"""One client connection speaking HTTP/2 (RFC 9113): h2's codec under an asyncio.Protocol.

Each stream becomes a `Request` with a `ResponseSink` of its own and runs the same dispatcher as
an HTTP/1.1 request, as a task; handlers never know which version they serve. Flow control goes
both ways: a request body is acknowledged (WINDOW_UPDATE) only as the handler reads it, so a
slow gateway slows the client; a response is framed only as the client's window allows, and
the transport's pause_writing/resume_writing hold every stream while the client reads nothing.

The connection also defends itself against the HTTP/2 attacks that cost a server more than a
client: streams reset as soon as they are opened (Rapid Reset, CVE-2023-44487), floods of
SETTINGS, PING, PRIORITY or empty DATA frames, an endless header block (CONTINUATION flood,
bounded by h2 to 64 frames), a header list that decompresses to megabytes (HPACK bomb: the
decoder stops at HEADER_LIST_HARD_LIMIT times max_header_size), and a window held shut forever
(send_timeout).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import time
from typing import BinaryIO, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hyperframe.frame

from frontd import SERVER_SOFTWARE
from frontd.config.model import Limits
from frontd.errors import (
    BadRequest,
    ContentTooLarge,
    HeaderFieldsTooLarge,
    HTTPError,
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
from frontd.protocol.common import check_status, declared_length
from frontd.protocol.http1 import KNOWN_METHODS
from frontd.request import EMPTY_BODY, Request, TLSInfo
from frontd.response import AccessRecorder
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

# RFC 9113 §3.4: what a client connection starts with, before its SETTINGS frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FILE_CHUNK = 64 * 1024  # a file body is read this much at a time, as the window allows
HIGH_WATER = 256 * 1024  # bytes queued in the transport before the streams wait for the client
# Rapid Reset: once the client has reset this many streams, and more than it let finish, the
# connection gets GOAWAY ENHANCE_YOUR_CALM (a browser cancels a few streams, not hundreds).
MAX_RESETS = 100
# SETTINGS, PING, PRIORITY and empty DATA frames cost a reply or a wake-up and carry nothing:
# a bucket of this many, refilled at CONTROL_RATE per second; past it, GOAWAY ENHANCE_YOUR_CALM.
CONTROL_BURST = 1000
CONTROL_RATE = 100.0
# A header list over max_header_size is a 431 on its stream; decoding stops (and the connection
# ends) at this many times max_header_size.
HEADER_LIST_HARD_LIMIT = 4
# Connection-specific fields never go into an HTTP/2 response (RFC 9113 §8.2.2).
_CONNECTION_FIELDS = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"proxy-connection",
                                b"upgrade"})
# RFC 6797 §7.2: HSTS is never sent over plain HTTP (h2c), whoever set it.
_PLAIN_DROPPED = _CONNECTION_FIELDS | {b"strict-transport-security"}
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
_SERVER = (b"server", SERVER_SOFTWARE.encode())
# Stream states in which DATA may go (RFC 9113 §5.1): send_data frames it without h2 there.
_SENDING_STATES = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE})


class _StreamGone(Exception):
    """The client reset the stream, the connection closed, or its window stayed shut for send_timeout."""


class StreamBody:
    """A request body fed from DATA frames; the window reopens only as the handler reads."""

    __slots__ = ("length", "_conn", "_id", "_chunks", "_ended", "_received", "_more", "_failed", "_expect")

    def __init__(self, conn: H2Protocol, stream_id: int, length: int | None, expect: bool = False) -> None:
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
                    raise _StreamGone()
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

    def __init__(self, conn: H2Protocol, stream_id: int, head_only: bool) -> None:
        self.started = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0
        self._conn = conn
        self._id = stream_id
        self._head_only = head_only
        self._no_body = head_only
        self._remaining: int | None = None
        self._window = asyncio.Event()  # set by WINDOW_UPDATE and SETTINGS while we wait on it
        self._head: list[tuple[bytes, bytes]] | None = None  # a bodiless response's fields, until end()

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        if self.started:
            raise RuntimeError("response already started")
        check_status(status)
        dropped = self._conn.dropped_headers
        out = [(b":status", str(status).encode()), _SERVER, (b"date", http_date(time.time()))]
        length: int | None = None
        for name, value in headers:
            name = name.lower()
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
        view = memoryview(data)
        conn = self._conn
        while view:
            n = await conn.window(self._id, self._window, len(view))
            # The frame that completes the Content-Length ends the stream: no empty DATA frame after.
            last = n == len(view) and self._remaining == 0
            conn.send_data(self._id, view[:n].tobytes(), end=last)
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
                raise _StreamGone("file shrank while being sent")
            await self.write(data)
            offset += len(data)

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._remaining:
            log.error("response body %d bytes short of its Content-Length; resetting the stream", self._remaining)
            self._conn.reset(self._id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            raise _StreamGone()
        if self._head is not None:
            self._conn.send_headers(self._id, self._head, end=True)
        else:
            self._conn.end_stream(self._id)

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        # Raw output (NPH scripts, Upgrade tunnels) has no place in a stream of frames.
        raise error_for_status(502, "raw (non-parsed-header or upgraded) output cannot be sent over HTTP/2")


class _LocalSettings(h2.settings.Settings):
    """Our SETTINGS as sent, with h2's own count of concurrent streams turned off: h2 would end the
    connection for a stream over the limit, even one a client opened before it saw our SETTINGS.
    H2Protocol refuses that stream alone instead (REFUSED_STREAM, RFC 9113 §5.1.2), which a
    client can retry."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2**31


class _Stream:
    __slots__ = ("request", "body", "sink", "task", "started", "client_done")

    def __init__(self, request: Request | None, body: StreamBody | None, sink: StreamSink, started: float) -> None:
        self.request = request
        self.body = body
        self.sink = sink
        self.task: asyncio.Task[None] | None = None
        self.started = started
        self.client_done = False  # END_STREAM received: the client sends nothing more on it


class H2Protocol(asyncio.Protocol):
    """Serves the streams of one HTTP/2 connection until the client or a limit ends it."""

    def __init__(self, dispatcher: Dispatcher, limits: Limits, access_log: AccessRecorder,
                 tls: TLSInfo | None = None, *, peer: tuple[str, int] | None = None,
                 refused: HTTPError | None = None) -> None:
        self.dispatcher = dispatcher
        self.limits = limits
        self.access_log = access_log
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.dropped_headers = _PLAIN_DROPPED if tls is None else _CONNECTION_FIELDS
        self.refused = refused
        self._peer = peer
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.going_away = False
        self.first = True  # no request yet: header_timeout applies, not keepalive_timeout
        self._paused = False
        self._unflushed = 0  # DATA bytes framed since the last write to the transport
        self._framed: list[bytes] = []  # frames waiting for that write, in order (send_data)
        self._flush_scheduled = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._timer: asyncio.TimerHandle | None = None
        self._resets = 0
        self._completed = 0
        self._control = 0.0
        self._control_at = time.monotonic()
        # Response fields are checked and lower-cased by StreamSink.start already: h2's own
        # outbound checks would cost a third of the time spent on a small response.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_inbound_headers=True, normalize_inbound_headers=True,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        # HPACK bomb: decoding stops at HEADER_LIST_HARD_LIMIT times max_header_size (before our
        # SETTINGS are acknowledged too) and the connection ends, as its HPACK state is lost; a
        # header list over max_header_size alone gets a 431 on its stream.
        self.h2.decoder.max_header_list_size = limits.max_header_size * HEADER_LIST_HARD_LIMIT
        self.h2.local_settings = _LocalSettings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.http2_max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_size,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })

    @property
    def idle(self) -> bool:
        return not self.streams

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        # Backpressure in bytes, not in writes: pause_writing past HIGH_WATER.
        transport.set_write_buffer_limits(high=HIGH_WATER)
        local = transport.get_extra_info("sockname")
        peer = self._peer if self._peer is not None else transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_addr, self.client_port = str(peer[0]), int(peer[1])
        else:
            self.client_addr, self.client_port = "unix:", 0
        if isinstance(local, tuple):
            self.server_addr, self.server_port = str(local[0]), int(local[1])
        else:
            self.server_addr, self.server_port = str(local or ""), 0
        trusted = self.dispatcher.trusted_proxies
        self.trusted: TrustedProxies | None = (
            trusted if trusted is not None and self.client_addr in trusted else None)
        STATS.connection_opened()
        STATS.http2_connection(True)
        self.h2.initiate_connection()
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            log.info("HTTP/2 connection error (%s): %s, client: %s", _code_name(code), exc, self.client_addr)
            self._goaway_and_close(code)
            return
        for event in events:
            self._event(event)
            if self.transport is None or self.transport.is_closing():
                return
        self._flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in list(self.streams.values()):
            self._cancel(stream)
        self._writable.set()
        if not self.closed.done():
            STATS.connection_closed()
            STATS.http2_connection(False)
            self.closed.set_result(None)
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True
        self._writable.clear()
        # The client reads nothing: read nothing from it either, so that what it sends (PINGs,
        # requests) cannot pile up answers in our buffer.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._writable.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- events -----------------------------------------------------------------------------

    def _event(self, event: h2.events.Event) -> None:
        kind = type(event)
        if kind is h2.events.RequestReceived:
            self._request(event)  # type: ignore[arg-type]
        elif kind is h2.events.DataReceived:
            self._data(event)  # type: ignore[arg-type]
        elif kind is h2.events.StreamEnded:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream.client_done = True
                if stream.body is not None:
                    stream.body.end()
        elif kind is h2.events.StreamReset:
            self._reset_by_client(event.stream_id)  # type: ignore[attr-defined]
        elif kind is h2.events.WindowUpdated:
            self._window_opened(event.stream_id)  # type: ignore[attr-defined]
        elif kind is h2.events.RemoteSettingsChanged:
            self._count_control()
            self._window_opened(0)
        elif kind in (h2.events.PingReceived, h2.events.PriorityUpdated, h2.events.SettingsAcknowledged,
                      h2.events.PingAckReceived):
            self._count_control()
        elif kind is h2.events.ConnectionTerminated:
            self.going_away = True
            self._close_when_done()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        STATS.http2_stream()
        if self.going_away:
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.limits.http2_max_streams:
            self._count_control()  # a client that keeps doing this is flooding
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self.first = False
        self._cancel_timer()
        ended = event.stream_ended is not None
        now = time.monotonic()
        method = b"GET"
        for name, value in event.headers or ():
            if name == b":method":
                method = bytes(value)
        sink = StreamSink(self, stream_id, method == b"HEAD")
        stream = _Stream(None, None, sink, now)
        stream.client_done = ended
        self.streams[stream_id] = stream
        error: HTTPError | None = self.refused
        try:
            stream.body = self._make_request(stream, stream_id, list(event.headers or ()), ended)
        except HTTPError as exc:
            error = exc
        stream.task = asyncio.get_running_loop().create_task(self._serve(stream_id, stream, error))
        if self.refused is not None:
            self.shutdown()  # client_connections: this stream's 429 is the last answer

    def _data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        stream = self.streams.get(stream_id)
        if not data and event.stream_ended is None:
            self._count_control()  # an empty DATA frame carries nothing
        if stream is None or stream.body is None:
            # A stream we no longer serve (or one that sent no body fields): give the window back.
            if flow:
                self.acknowledge(stream_id, flow)
            return
        stream.body.feed(data, flow)

    def _reset_by_client(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        self._resets += 1
        self._cancel(stream)
        if self._resets > MAX_RESETS and self._resets > self._completed:
            log.warning("HTTP/2 client reset %d streams (%d completed): GOAWAY ENHANCE_YOUR_CALM, client: %s",
                        self._resets, self._completed, self.client_addr)
            self._goaway_and_close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif not self.streams:
            self._stream_less()

    def _count_control(self) -> None:
        now = time.monotonic()
        self._control = max(0.0, self._control - (now - self._control_at) * CONTROL_RATE) + 1
        self._control_at = now
        if self._control > CONTROL_BURST and self.transport is not None and not self.transport.is_closing():
            log.warning("HTTP/2 flood of SETTINGS/PING/PRIORITY/empty DATA frames: GOAWAY ENHANCE_YOUR_CALM, "
                        "client: %s", self.client_addr)
            self._goaway_and_close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _window_opened(self, stream_id: int) -> None:
        if stream_id == 0:
            for stream in self.streams.values():
                stream.sink._window.set()
        else:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.sink._window.set()

    # -- requests -------------------------------------------------------------------------

    def _make_request(self, stream: _Stream, stream_id: int, fields: list[tuple[bytes, bytes]],
                      ended: bool) -> StreamBody | None:
        """The stream's Request from a header list h2 has validated (RFC 9113 §8.2, §8.3:
        pseudo-header fields present once and first, names in lower case, no connection-specific
        fields, te only "trailers"); raises the HTTPError it is answered with, once
        `stream.request` is set for the error and access logs."""
        pseudo: dict[bytes, bytes] = {}
        headers: list[tuple[bytes, bytes]] = []
        cookies: list[bytes] = []
        size = 0
        for name, value in fields:
            name, value = bytes(name), bytes(value)
            size += len(name) + len(value) + 32  # RFC 9113 §6.5.2: a field's size in the list
            if name.startswith(b":"):
                pseudo[name] = value
            elif name == b"cookie":
                cookies.append(value)
            else:
                headers.append((name, value))
        if cookies:
            # RFC 9113 §8.2.3: crumbs are joined with "; " before HTTP/1.1 semantics see them.
            headers.append((b"cookie", b"; ".join(cookies)))
        method = pseudo.get(b":method", b"").decode("latin-1")
        authority = pseudo.get(b":authority")
        host_field = next((v for k, v in headers if k == b"host"), None)
        if authority is not None and host_field is None:
            # RFC 9113 §8.3.1: gateways and proxies that speak HTTP/1.1 get Host from :authority.
            headers.insert(0, (b"host", authority))
        length: int | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value)  # h2 has checked it is digits and matches the DATA frames
        target = pseudo.get(b":path", b"")
        request = Request(
            method=method or "-", target=target.decode("latin-1") or "-", path="/", raw_path="/", query="",
            http_version="2.0", headers=headers, host="", client_addr=self.client_addr,
            client_port=self.client_port, server_addr=self.server_addr, server_port=self.server_port,
            scheme=self.scheme, tls=self.tls)
        stream.request = request
        if self.trusted is not None:
            found = real_client(headers, self.trusted)
            if found is not None:
                request.peer_addr = self.client_addr
                request.client_addr, request.client_port = found
        if size > self.limits.max_header_size:
            raise HeaderFieldsTooLarge(f"header list over max_header_size ({self.limits.max_header_size})")
        if method == "CONNECT" or b":protocol" in pseudo:
            # RFC 9113 §8.5 and RFC 8441 (WebSocket) tunnels are not offered.
            raise NotImplementedMethod("CONNECT over HTTP/2 is not supported")
        if method not in KNOWN_METHODS:
            raise NotImplementedMethod(f"unknown method {method}")
        if len(target) > self.limits.max_target_size:
            raise URITooLong(f"request target over {self.limits.max_target_size} bytes")
        scheme = pseudo.get(b":scheme", b"")
        if scheme not in (b"http", b"https"):
            raise BadRequest(f"unsupported :scheme {scheme[:20]!r}")
        parsed = parse_target(target, method)
        request.path, request.raw_path, request.query = parsed.path, parsed.raw_path, parsed.query
        # RFC 9113 §8.3.1: :authority, else Host, names the target's host.
        host_value = authority if authority is not None else host_field
        if host_value is None:
            raise BadRequest("neither :authority nor Host")
        request.host = host_from_header(host_value)
        body: StreamBody | None = None
        if not ended:
            if length is not None and length > self.limits.max_body_size:
                raise ContentTooLarge(f"Content-Length {length} over max_body_size ({self.limits.max_body_size})")
            expect = any(k == b"expect" and v.lower() == b"100-continue" for k, v in headers)
            body = StreamBody(self, stream_id, length, expect)
            request.body = body
        else:
            request.body = EMPTY_BODY
        return body

    async def _serve(self, stream_id: int, stream: _Stream, error: HTTPError | None) -> None:
        sink = stream.sink
        request = stream.request
        cut = False
        try:
            try:
                if error is not None:
                    raise error
                assert request is not None
                await self.dispatcher.handle(request, sink)
                if not sink.ended:
                    await sink.end()
            except HTTPError as exc:
                if sink.started:
                    log.error("%s after the response started; resetting the stream%s", exc.detail,
                              request.log_context() if request else "")
                    self.reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    cut = True
                else:
                    await self._send_error(stream_id, stream, exc)
            except _StreamGone:
                self._log_access(stream, sink.status or 499, sink.bytes_sent)
                return
            except Exception:
                log.exception("unhandled error%s", request.log_context() if request else "")
                if sink.started:
                    self.reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    cut = True
                else:
                    await self._send_error(stream_id, stream, error_for_status(500), logged=True)
            self._completed += 1
            self._log_access(stream, sink.status, sink.bytes_sent, cut=cut)
            if not stream.client_done:
                # RFC 9113 §8.1: the response is complete before the request; the client may
                # stop sending it.
                self.reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except _StreamGone:
            pass
        finally:
            if self.streams.get(stream_id) is stream:
                del self.streams[stream_id]
                if stream.body is not None:
                    stream.body.discard()
                self._schedule_flush()
                if not self.streams:
                    self._stream_less()

    async def _send_error(self, stream_id: int, stream: _Stream, exc: HTTPError, *, logged: bool = False) -> None:
        status = exc.status
        request = stream.request
        if not logged:
            level = logging.INFO if status in (404, 403, 304) else logging.WARNING if status < 500 else logging.ERROR
            context = request.log_context() if request else f", client: {self.client_addr}"
            log.log(level, "%d: %s%s", status, exc.detail, context)
        headers = self.dispatcher.rule_headers(request, [*error_headers(status, close=False), *exc.headers])
        await stream.sink.start(status, headers)
        await stream.sink.write(error_body(status))
        await stream.sink.end()

    def _log_access(self, stream: _Stream, status: int, size: int, *, cut: bool = False) -> None:
        request = stream.request
        if request is None:
            return
        self.access_log.record(request, status, size, time.monotonic() - stream.started, cut=cut)
        STATS.request(status, size, stream.started)

    # -- output -----------------------------------------------------------------------------

    def _flush(self) -> None:
        self._unflushed = 0
        data = self.h2.data_to_send()
        if self._framed:
            # DATA framed by send_data went after what h2 had queued then; what h2 queued since
            # (WINDOW_UPDATE, END_STREAM) follows it.
            self._framed.append(data)
            data = b"".join(self._framed)
            self._framed.clear()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _schedule_flush(self) -> None:
        """Frames from the streams go out once per turn of the event loop, together: fewer TLS
        records and system calls when many streams answer at once."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = False) -> None:
        self._check(stream_id)
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.StreamClosedError:
            raise _StreamGone() from None
        except h2.exceptions.ProtocolError as exc:  # a field h2's own checks refuse
            raise error_for_status(502, f"response header not sendable over HTTP/2: {exc}") from None
        self._schedule_flush()

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """DATA within the windows `window` granted. A frame that ends the stream goes through
        h2 (its stream state changes); the others are framed here (RFC 9113 §6.1: a 9-byte head,
        no flags, no padding), which costs a tenth of h2's frame objects, and h2's two outbound
        windows are charged as its send_data would."""
        self._check(stream_id)
        stream = self.h2.streams.get(stream_id)
        fast = stream is not None and stream.state_machine.state in _SENDING_STATES
        size = self.h2.max_outbound_frame_size
        total = len(data)
        for start in range(0, total, size):
            piece = data[start:start + size]
            last = start + size >= total
            if not fast or (end and last):
                try:
                    self.h2.send_data(stream_id, piece, end_stream=end and last)
                except h2.exceptions.ProtocolError:  # the stream closed meanwhile
                    raise _StreamGone() from None
                continue
            n = len(piece)
            self.h2.outbound_flow_control_window -= n
            stream.outbound_flow_control_window -= n  # type: ignore[union-attr]
            framed = self._framed
            queued = self.h2.data_to_send()
            if queued:
                framed.append(queued)  # a HEADERS frame before its DATA
            framed.append(n.to_bytes(3, "big") + b"\x00\x00" + stream_id.to_bytes(4, "big"))
            framed.append(piece)
        self._unflushed += total
        self._schedule_flush()

    def end_stream(self, stream_id: int) -> None:
        self._check(stream_id)
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.ProtocolError:
            raise _StreamGone() from None
        self._schedule_flush()

    def reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            return
        except h2.exceptions.ProtocolError:
            return
        self._schedule_flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if self.transport is None:
            return
        self.h2.acknowledge_received_data(size, stream_id)
        self._schedule_flush()

    def _check(self, stream_id: int) -> None:
        if self.transport is None or self.transport.is_closing() or stream_id not in self.streams:
            raise _StreamGone()

    async def window(self, stream_id: int, event: asyncio.Event, wanted: int) -> int:
        """How many bytes may go on the stream now (at least 1), waiting up to send_timeout for
        the client to open its window."""
        while True:
            self._check(stream_id)
            try:
                available = self.h2.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                raise _StreamGone() from None
            if available > 0:
                return min(available, wanted)
            event.clear()
            try:
                async with asyncio.timeout(self.limits.send_timeout):
                    await event.wait()
            except TimeoutError:
                log.info("HTTP/2 stream %d: the client's window stayed shut for %gs; resetting it, client: %s",
                         stream_id, self.limits.send_timeout, self.client_addr)
                self.reset(stream_id, h2.errors.ErrorCodes.CANCEL)
                raise _StreamGone() from None

    async def drain(self) -> None:
        if self._unflushed >= HIGH_WATER:
            # Streams with wide windows: what they framed goes out before they read more, and the
            # other streams (and a connection_lost) get their turn.
            self._flush()
            await asyncio.sleep(0)
            if self.transport is None:
                raise _StreamGone()
        if not self._paused:
            return
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await self._writable.wait()
        except TimeoutError:
            log.info("HTTP/2 client read nothing for %gs; closing, client: %s", self.limits.send_timeout,
                     self.client_addr)
            self.abort()
            raise _StreamGone() from None
        if self.transport is None:
            raise _StreamGone()

    # -- lifetime ---------------------------------------------------------------------------

    def _cancel(self, stream: _Stream) -> None:
        """Stop a stream's handler: the client reset it or the connection is over (499 unless
        the response had started)."""
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
            self._log_access(stream, stream.sink.status or 499, stream.sink.bytes_sent,
                             cut=stream.sink.started)
        if stream.body is not None:
            stream.body.end(failed=True)
            stream.body.discard()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        """One timer: header_timeout for the first request, keepalive_timeout between streams."""
        self._cancel_timer()
        if self.transport is None:
            return
        timeout = self.limits.header_timeout if self.first else self.limits.keepalive_timeout
        self._timer = asyncio.get_running_loop().call_later(max(timeout, 0.001), self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._timer = None
        if not self.streams:
            self._goaway_and_close(h2.errors.ErrorCodes.NO_ERROR)

    def _stream_less(self) -> None:
        if self.going_away:
            self._close_when_done()
        else:
            self._arm_timer()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY with the last stream id; streams in flight finish, then close."""
        if self.transport is None or self.going_away:
            self._close_when_done()
            return
        self.going_away = True
        self._flush()
        # h2's close_connection would close its state machine, and the streams in flight could
        # send nothing more: the GOAWAY is framed here (it changes no HPACK or stream state).
        goaway = hyperframe.frame.GoAwayFrame(0)
        goaway.last_stream_id = self.h2.highest_inbound_stream_id
        goaway.error_code = h2.errors.ErrorCodes.NO_ERROR
        if self.transport is not None:
            self.transport.write(goaway.serialize())
        self._close_when_done()

    def _close_when_done(self) -> None:
        if not self.streams and self.transport is not None:
            self._flush()
            self.transport.close()

    def _goaway_and_close(self, code: int) -> None:
        self.going_away = True
        if self.transport is None:
            return
        try:
            self.h2.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        self._flush()
        for stream in list(self.streams.values()):
            self._cancel(stream)
        self.streams.clear()
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def serve(self, stopping: asyncio.Event) -> None:
        """Until the connection closes; when `stopping` is set, GOAWAY and let streams finish.
        Cancelled (a fast stop, or shutdown_timeout over), it drops the connection."""
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait([self.closed, stop], return_when=asyncio.FIRST_COMPLETED)
            if not self.closed.done():
                self.shutdown()
                await self.closed
        finally:
            stop.cancel()
            if not self.closed.done():
                self.abort()
                for stream in list(self.streams.values()):
                    self._cancel(stream)


def _code_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)
