"""A blocking HTTP/2 client on h2 for the tests: ordinary requests, and the frames attackers send.

`H2Client` connects over TLS (ALPN h2) or in the clear (prior knowledge), sends requests and
collects what comes back per stream: headers, body, end, reset code; and for the connection
whether a GOAWAY came (its error code and last stream id) and whether the socket closed. Every
wait has a deadline. `raw` writes bytes that h2 itself would refuse to produce.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

WAIT = 10.0


@dataclass
class Stream:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the error code of the server's RST_STREAM

    @property
    def status(self) -> int:
        return int(self.headers.get(":status", "0"))

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    def __init__(self, port: int, *, context: ssl.SSLContext | None = None, server_name: str = "a.test",
                 settings: dict[int, int] | None = None, auto_ack: bool = True, connect: bool = True) -> None:
        self.authority = server_name
        self.auto_ack = auto_ack  # give the window back as DATA arrives (off: a client that never does)
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if context is not None:
            context.set_alpn_protocols(["h2"])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname=server_name)
            assert self.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
        else:
            self.sock = raw
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.events: list[h2.events.Event] = []
        self._pending = bytearray()
        if connect:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers: list[tuple[str, str]] | None = None,
                body: bytes | None = None, *, end: bool = True, authority: str | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket) else "http"),
                  (":authority", authority or self.authority), (":path", path), *(headers or [])]
        self.conn.send_headers(stream_id, fields, end_stream=end and body is None)
        self.streams[stream_id] = Stream()
        if body is not None:
            self.send_body(stream_id, body, end=end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end: bool = True) -> None:
        """Send as the server's window allows, reading its WINDOW_UPDATEs in between."""
        view = memoryview(body)
        deadline = time.monotonic() + WAIT
        stream = self.streams.get(stream_id)
        while view:
            if stream is not None and stream.done:
                return  # answered (and reset) before the whole body went
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read_once(deadline)
                continue
            self.conn.send_data(stream_id, view[:window].tobytes())
            self.flush()
            view = view[window:]
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    # -- receiving ------------------------------------------------------------------------

    def read_once(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        except TimeoutError:
            raise AssertionError("timed out waiting for the server") from None
        if not data:
            self.closed = True
            return
        # Frame by frame, so that a graceful GOAWAY reopens h2's state machine (see _event) before
        # the frames that follow it in the same read.
        self._pending += data
        while len(self._pending) >= 9:
            size = 9 + int.from_bytes(self._pending[:3], "big")
            if len(self._pending) < size:
                break
            frame, self._pending = bytes(self._pending[:size]), self._pending[size:]
            try:
                events = self.conn.receive_data(frame)
            except h2.exceptions.ProtocolError:
                self.closed = True
                return
            for event in events:
                self.events.append(event)
                self._event(event)
        try:
            self.flush()
        except OSError:
            self.closed = True

    def _event(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = dict(event.headers or ())  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None:
                stream.body += event.data or b""
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id or 0)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            if event.error_code == h2.errors.ErrorCodes.NO_ERROR:
                # h2 closes its state machine on any GOAWAY; a graceful one (RFC 9113 §6.8) lets
                # the streams up to its last stream id finish, so the client keeps reading them.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def wait(self, condition: Callable[[], object], timeout: float = WAIT, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.closed:
                raise AssertionError(f"connection closed waiting for {what}")
            try:
                self.read_once(deadline)
            except AssertionError:
                raise AssertionError(f"timed out waiting for {what}") from None

    def response(self, stream_id: int, timeout: float = WAIT) -> Stream:
        stream = self.streams[stream_id]
        self.wait(lambda: stream.done, timeout, f"stream {stream_id}")
        return stream

    def get(self, path: str, headers: list[tuple[str, str]] | None = None, method: str = "GET",
            body: bytes | None = None) -> Stream:
        return self.response(self.request(path, method, headers, body))

    def wait_closed(self, timeout: float = WAIT) -> None:
        """Until the server closes the connection (after a GOAWAY or not)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            self.read_once(deadline)
