"""The output half of an HTTP/2 connection, a mixin of H2Protocol: HEADERS and DATA framed only
as the client's flow-control windows allow, the frames of all streams written together once per
turn of the event loop, and every stream held while the transport is paused (the client reads
nothing) for at most send_timeout.

These are the calls a stream's body and sink make (`StreamConnection` in http2_stream.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container

import h2.connection
import h2.exceptions
import h2.stream
import hpack.huffman
import hpack.huffman_constants
from h2.connection import ConnectionInputs
from h2.errors import ErrorCodes
from h2.stream import StreamInputs

from frontd.config.model import Limits
from frontd.errors import error_for_status
from frontd.protocol.http2_stream import StreamGone
from frontd.wire.hpack import encode_field

log = logging.getLogger("frontd")

HIGH_WATER = 256 * 1024  # bytes queued in the transport before the streams wait for the client
# Stream states in which HEADERS and DATA may go (RFC 9113 §5.1): send_headers and send_data
# frame them without h2 there.
_SENDING_STATES = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE})
# RFC 7541 Appendix B, as hpack has it.
_HUFFMAN = hpack.huffman.HuffmanEncoder(hpack.huffman_constants.REQUEST_CODES,
                                        hpack.huffman_constants.REQUEST_CODES_LENGTH).encode
# Response fields, HPACK-coded, for every connection of the worker: Server, Content-Type, the
# Date of this second and a hot file's Last-Modified, ETag and Content-Length come back again
# and again, and Huffman coding in Python costs microseconds a field.
_CODED: dict[tuple[bytes, bytes], bytes] = {}
MAX_CODED_FIELDS = 1024
MAX_CODED_FIELD = 256  # bytes of name and value; a longer field is coded each time, not kept
# RFC 9113 §6.1, §6.2: frame types and flags.
_DATA = b"\x00"
_HEADERS = b"\x01"
_END_STREAM = 0x1
_END_HEADERS = 0x4


class H2Output:
    """Frames responses into the transport; the connection provides what is declared here.

    `ErrorCodes` is imported by name: in this class body `h2` names the connection."""

    h2: h2.connection.H2Connection
    limits: Limits
    client_addr: str
    streams: Container[int]  # the streams still served: output to any other is StreamGone

    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._unflushed = 0  # DATA bytes framed since the last write to the transport
        self._framed: list[bytes | memoryview] = []  # frames waiting for that write, in order
        self._flush_scheduled = False
        self._writable = asyncio.Event()
        self._writable.set()

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
        """A response's HEADERS frame. A final response in one frame is encoded and framed here:
        static-table HPACK without indexing (frontd/wire/hpack.py) costs a fraction of h2's
        stateful encoder and frame objects, and h2's stream and connection states move as its
        send_headers would move them. An informational response, one over a frame, or the first
        after the client resized its HPACK table (the size update goes first, RFC 7541 §4.2)
        goes through h2."""
        self._check(stream_id)
        stream = self.h2.streams.get(stream_id)
        if (stream is not None and stream.state_machine.state in _SENDING_STATES
                and not headers[0][1].startswith(b"1") and not self.h2.encoder.header_table.resized):
            block = _encode_block(headers)
            if len(block) <= self.h2.max_outbound_frame_size:
                try:
                    self.h2.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
                    stream.state_machine.process_input(StreamInputs.SEND_HEADERS)
                    if end:
                        stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
                except h2.exceptions.ProtocolError as exc:  # the connection is closed
                    raise StreamGone() from exc
                flags = _END_HEADERS | _END_STREAM if end else _END_HEADERS
                self._frame(_HEADERS, flags, stream_id, block)
                self._schedule_flush()
                return
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.StreamClosedError:
            raise StreamGone() from None
        except h2.exceptions.ProtocolError as exc:  # a field h2's own checks refuse
            raise error_for_status(502, f"response header not sendable over HTTP/2: {exc}") from None
        self._schedule_flush()

    def _frame(self, kind: bytes, flags: int, stream_id: int, payload: bytes | memoryview) -> None:
        """A frame built here (RFC 9113 §4.1: a 9-byte head, no padding or priority), queued after
        whatever h2 has framed before it."""
        framed = self._framed
        queued = self.h2.data_to_send()
        if queued:
            framed.append(queued)
        framed.append(len(payload).to_bytes(3, "big") + kind + bytes((flags,)) + stream_id.to_bytes(4, "big"))
        framed.append(payload)

    def send_data(self, stream_id: int, data: memoryview, end: bool = False) -> None:
        """DATA within the windows `window` granted, framed here (RFC 9113 §6.1: no padding),
        which costs a tenth of h2's frame objects; h2's two outbound windows are charged, and
        its stream state moved on END_STREAM, as its send_data would. The frames are views of
        `data` until the flush joins them."""
        self._check(stream_id)
        stream = self.h2.streams.get(stream_id)
        fast = stream is not None and stream.state_machine.state in _SENDING_STATES
        size = self.h2.max_outbound_frame_size
        total = len(data)
        for start in range(0, total, size):
            piece = data[start:start + size]
            last = start + size >= total
            if not fast:
                try:
                    self.h2.send_data(stream_id, piece, end_stream=end and last)
                except h2.exceptions.ProtocolError:  # the stream closed meanwhile
                    raise StreamGone() from None
                continue
            n = len(piece)
            self.h2.outbound_flow_control_window -= n
            stream.outbound_flow_control_window -= n  # type: ignore[union-attr]
            flags = 0
            if end and last:
                stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)  # type: ignore[union-attr]
                flags = _END_STREAM
            self._frame(_DATA, flags, stream_id, piece)
        self._unflushed += total
        self._schedule_flush()

    def end_stream(self, stream_id: int) -> None:
        self._check(stream_id)
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.ProtocolError:
            raise StreamGone() from None
        self._schedule_flush()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
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
            raise StreamGone()

    async def window(self, stream_id: int, waiter: Callable[[], asyncio.Event], wanted: int) -> int:
        """How many bytes may go on the stream now (at least 1), waiting up to send_timeout for
        the client to open its window (on the stream's event, which `waiter` gives)."""
        while True:
            self._check(stream_id)
            try:
                available = self.h2.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                raise StreamGone() from None
            if available > 0:
                return min(available, wanted)
            event = waiter()
            event.clear()
            try:
                async with asyncio.timeout(self.limits.send_timeout):
                    await event.wait()
            except TimeoutError:
                log.info("HTTP/2 stream %d: the client's window stayed shut for %gs; resetting it, client: %s",
                         stream_id, self.limits.send_timeout, self.client_addr)
                self.reset(stream_id, ErrorCodes.CANCEL)
                raise StreamGone() from None

    async def drain(self) -> None:
        if self._unflushed >= HIGH_WATER:
            # Streams with wide windows: what they framed goes out before they read more, and the
            # other streams (and a connection_lost) get their turn.
            self._flush()
            await asyncio.sleep(0)
            if self.transport is None:
                raise StreamGone()
        if not self._paused:
            return
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await self._writable.wait()
        except TimeoutError:
            log.info("HTTP/2 client read nothing for %gs; closing, client: %s", self.limits.send_timeout,
                     self.client_addr)
            self.abort()
            raise StreamGone() from None
        if self.transport is None:
            raise StreamGone()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()



def _encode_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A response's header block (frontd/wire/hpack.py), its fields coded once per worker."""
    coded = _CODED
    out = []
    for field in headers:
        piece = coded.get(field)
        if piece is None:
            piece = encode_field(field[0], field[1], _HUFFMAN)
            if len(field[0]) + len(field[1]) <= MAX_CODED_FIELD:
                if len(coded) >= MAX_CODED_FIELDS:
                    coded.clear()
                coded[field] = piece
        out.append(piece)
    return b"".join(out)
