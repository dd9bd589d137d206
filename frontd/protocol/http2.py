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

Beside it: http2_stream.py (a stream's body and sink), http2_request.py (its Request from the
header list), http2_output.py (framing under the flow-control windows), http2_guard.py (flood
accounting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hyperframe.frame

from frontd.config.model import Limits
from frontd.errors import HTTPError, error_for_status
from frontd.handlers.dispatch import Dispatcher
from frontd.handlers.error_page import error_body, error_headers
from frontd.http.forwarded import TrustedProxies
from frontd.protocol.http2_guard import FloodGuard
from frontd.protocol.http2_output import HIGH_WATER, H2Output
from frontd.protocol.http2_request import Malformed, check_trailers, make_request
from frontd.protocol.http2_stream import CONNECTION_FIELDS, PLAIN_DROPPED, StreamBody, StreamGone, StreamSink
from frontd.request import Request, TLSInfo
from frontd.response import AccessRecorder
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

# RFC 9113 §3.4: what a client connection starts with, before its SETTINGS frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A header list over max_header_size is a 431 on its stream; decoding stops (and the connection
# ends) at this many times max_header_size.
HEADER_LIST_HARD_LIMIT = 4
# Header blocks of indexed fields remembered per connection with what they decode to: at most
# this many blocks of at most this many bytes (one field a byte), a few KiB of tuples whose
# names and values are the dynamic table's own.
MAX_REPEATED_BLOCKS = 8
MAX_REPEATED_BLOCK = 64


class _LocalSettings(h2.settings.Settings):
    """Our SETTINGS as sent, with h2's own count of concurrent streams turned off: h2 would end the
    connection for a stream over the limit, even one a client opened before it saw our SETTINGS.
    H2Protocol refuses that stream alone instead (REFUSED_STREAM, RFC 9113 §5.1.2), which a
    client can retry."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2**31


class RepeatingDecoder(hpack.Decoder):
    """hpack's decoder, which returns the fields it decoded last time for a block it has seen
    since the dynamic table last changed, when the block is only indexed fields (RFC 7541 §6.1:
    every byte has its top bit set). Such a block does not change the table, so it decodes the
    same way until a block that is not all indexed (a literal with indexing, a table size update)
    arrives. A client repeating its requests sends such blocks (its :authority, user-agent and
    accept fields indexed once), and hpack's decoding would cost a tenth of each request. The
    table does not change while blocks are remembered, so they keep no field alive that the
    table does not hold too."""

    def __init__(self) -> None:
        super().__init__()
        self._repeats: dict[bytes, list[hpack.HeaderTuple]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[hpack.HeaderTuple]:  # type: ignore[override]
        if not raw or not data or min(data) < 0x80:
            self._repeats.clear()
            return cast(list[hpack.HeaderTuple], super().decode(data, raw))
        if len(data) > MAX_REPEATED_BLOCK:
            return cast(list[hpack.HeaderTuple], super().decode(data, raw))
        found = self._repeats.get(data)
        if found is None:
            found = cast(list[hpack.HeaderTuple], super().decode(data, raw))
            if len(self._repeats) >= MAX_REPEATED_BLOCKS:
                self._repeats.clear()
            self._repeats[data] = found
        return found


class _Stream:
    __slots__ = ("request", "body", "sink", "task", "started", "client_done")

    def __init__(self, request: Request | None, body: StreamBody | None, sink: StreamSink, started: float) -> None:
        self.request = request
        self.body = body
        self.sink = sink
        self.task: asyncio.Task[None] | None = None
        self.started = started
        self.client_done = False  # END_STREAM received: the client sends nothing more on it


class H2Protocol(H2Output, asyncio.Protocol):
    """Serves the streams of one HTTP/2 connection until the client or a limit ends it."""

    def __init__(self, dispatcher: Dispatcher, limits: Limits, access_log: AccessRecorder,
                 tls: TLSInfo | None = None, *, peer: tuple[str, int] | None = None,
                 refused: HTTPError | None = None) -> None:
        self.dispatcher = dispatcher
        self.limits = limits
        self.access_log = access_log
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.dropped_headers = PLAIN_DROPPED if tls is None else CONNECTION_FIELDS
        super().__init__()
        self.refused = refused
        self._peer = peer
        self.streams: dict[int, _Stream] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.going_away = False
        self.first = True  # no request yet: header_timeout applies, not keepalive_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._guard = FloodGuard()
        # h2's own header checks are off, both ways: response fields are checked and lower-cased
        # by StreamSink.start, request fields by make_request (RFC 9113 §8.2, §8.3) in the pass
        # that builds the Request, and cookie crumbs are joined there too.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_inbound_headers=False, normalize_inbound_headers=False,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.decoder = RepeatingDecoder()
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
        elif kind is h2.events.TrailersReceived:
            try:
                check_trailers(event.headers or ())  # type: ignore[attr-defined]
            except Malformed as exc:
                self._malformed(exc)

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
        now = time.monotonic()
        ended = event.stream_ended is not None
        try:
            made = make_request(event.headers or (), ended, self.limits, client=(self.client_addr, self.client_port),
                                server=(self.server_addr, self.server_port), scheme=self.scheme, tls=self.tls,
                                trusted=self.trusted)
        except Malformed as exc:
            self._malformed(exc)
            return
        self.first = False
        self._cancel_timer()
        sink = StreamSink(self, stream_id, made.request.method == "HEAD")
        stream = _Stream(made.request, None, sink, now)
        stream.client_done = ended
        self.streams[stream_id] = stream
        error = made.error if made.error is not None else self.refused
        if made.error is None and not ended:
            stream.body = made.request.body = StreamBody(self, stream_id, made.length, made.expect)
        stream.task = asyncio.get_running_loop().create_task(self._serve(stream_id, stream, error))
        if self.refused is not None:
            self.shutdown()  # client_connections: this stream's 429 is the last answer

    def _malformed(self, exc: Malformed) -> None:
        log.info("HTTP/2 connection error (PROTOCOL_ERROR): malformed request: %s, client: %s", exc,
                 self.client_addr)
        self._goaway_and_close(h2.errors.ErrorCodes.PROTOCOL_ERROR)

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
        rapid = self._guard.stream_reset()
        self._cancel(stream)
        if rapid:
            log.warning("HTTP/2 client reset %d streams (%d completed): GOAWAY ENHANCE_YOUR_CALM, client: %s",
                        self._guard.resets, self._guard.completed, self.client_addr)
            self._goaway_and_close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif not self.streams:
            self._stream_less()

    def _count_control(self) -> None:
        if self._guard.control_frame() and self.transport is not None and not self.transport.is_closing():
            log.warning("HTTP/2 flood of SETTINGS/PING/PRIORITY/empty DATA frames: GOAWAY ENHANCE_YOUR_CALM, "
                        "client: %s", self.client_addr)
            self._goaway_and_close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _window_opened(self, stream_id: int) -> None:
        if stream_id == 0:
            for stream in self.streams.values():
                stream.sink.window_opened()
        else:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.sink.window_opened()

    # -- requests -------------------------------------------------------------------------

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
            except StreamGone:
                self._log_access(stream, sink.status or 499, sink.bytes_sent)
                return
            except Exception:
                log.exception("unhandled error%s", request.log_context() if request else "")
                if sink.started:
                    self.reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    cut = True
                else:
                    await self._send_error(stream_id, stream, error_for_status(500), logged=True)
            self._guard.completed += 1
            self._log_access(stream, sink.status, sink.bytes_sent, cut=cut)
            if not stream.client_done:
                # RFC 9113 §8.1: the response is complete before the request; the client may
                # stop sending it.
                self.reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except StreamGone:
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
