"""The gateway core (frontd.gateway.exchange) against an in-memory transport and sink."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from frontd.errors import BadGateway, GatewayTimeout, RequestTimeout
from frontd.gateway.exchange import StreamTransport, Transport, exchange
from frontd.gateway.spool import NoBody, StreamedBody
from frontd.request import Request
from frontd.response import LocalRedirect


class FakeTransport(Transport):
    """Replays scripted output; records what it was sent and how it ended."""

    def __init__(self, output: list[bytes | float], *, stop_reading_after: int | None = None) -> None:
        self.name = "fake"
        self.output = list(output)  # bytes to return, or a delay in seconds before the next
        self.received: list[bytes] = []
        self.body_ended = False
        self.opened_with: tuple[Mapping[bytes, bytes], int | None] | None = None
        self.closed = False
        self.aborted = False
        self.stop_reading_after = stop_reading_after
        self._wake = asyncio.Event()

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        self.opened_with = (environ, content_length)

    async def write(self, data: bytes) -> None:
        if self.stop_reading_after is not None and len(self.received) >= self.stop_reading_after:
            raise BrokenPipeError("script closed stdin")
        self.received.append(data)

    async def end_body(self) -> None:
        self.body_ended = True

    async def read(self) -> bytes:
        while self.output and not self.aborted:
            item = self.output.pop(0)
            if isinstance(item, float):
                try:
                    await asyncio.wait_for(self._wake.wait(), item)
                except TimeoutError:
                    pass
                continue
            return item
        return b""

    async def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self._wake.set()


class FakeSink:
    def __init__(self) -> None:
        self.started = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.ended = False
        self.bytes_sent = 0
        self.raw = bytearray()

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        assert not self.started
        self.started, self.status, self.headers, self.reason = True, status, headers, reason

    async def write(self, data: bytes) -> None:
        assert self.started and not self.ended
        self.body += data

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        raise AssertionError("not used")

    async def end(self) -> None:
        self.ended = True

    def detach(self) -> tuple[Any, Any, bytes]:
        sink = self

        class Writer:
            def write(self, data: bytes) -> None:
                sink.raw += data

            async def drain(self) -> None:
                pass

        self.started = True
        return None, Writer(), b""


class Body:
    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.length: int | None = sum(map(len, chunks))

    async def read(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            await asyncio.sleep(0)
            raise self.error
        return b""


def request(method: str = "GET") -> Request:
    return Request(method=method, target="/x", path="/x", raw_path="/x", query="", http_version="1.1",
                   headers=[], host="h", client_addr="127.0.0.1", client_port=1, server_addr="127.0.0.1",
                   server_port=80)


def run(transport: Transport, sink: FakeSink, body: Any = None, timeout: float = 5.0, nph: bool = False) -> Any:
    return asyncio.run(exchange(request(), sink, transport, {b"A": b"1"}, body or NoBody(), timeout=timeout,
                                nph=nph))


def header(sink: FakeSink, name: bytes) -> bytes | None:
    return next((v for k, v in sink.headers if k == name), None)


def test_document_relayed() -> None:
    transport = FakeTransport([b"Content-Type: text/plain\r\nX-A: 1\n", b"\nhel", b"lo"])
    sink = FakeSink()
    assert run(transport, sink) is None
    assert (sink.status, bytes(sink.body), sink.ended) == (200, b"hello", True)
    assert header(sink, b"content-type") == b"text/plain" and header(sink, b"x-a") == b"1"
    assert transport.closed and not transport.aborted
    assert transport.opened_with == ({b"A": b"1"}, None) and transport.body_ended


def test_status_field_and_dropped_fields() -> None:
    transport = FakeTransport([b"Status: 404 Nowhere\nContent-Type: text/plain\nConnection: close\n"
                               b"Transfer-Encoding: chunked\nServer: evil\nDate: x\n\nnope"])
    sink = FakeSink()
    run(transport, sink)
    assert (sink.status, sink.reason) == (404, b"Nowhere")
    assert [k for k, _ in sink.headers] == [b"content-type"]


@pytest.mark.parametrize("location", [b"/a b", b"/x#frag", b"/../etc/passwd", b"/%zz"])
def test_bad_local_redirect_is_502(location: bytes) -> None:
    transport = FakeTransport([b"Location: " + location + b"\n\n"])
    sink = FakeSink()
    with pytest.raises(BadGateway):
        run(transport, sink)
    assert not sink.started


def test_client_redirect_is_302() -> None:
    sink = FakeSink()
    run(FakeTransport([b"Location: http://example.test/next\n\n"]), sink)
    assert sink.status == 302 and header(sink, b"location") == b"http://example.test/next"


def test_local_redirect_returned_and_body_dropped() -> None:
    transport = FakeTransport([b"Location: /other?q=1\n\n", b"ignored"])
    sink = FakeSink()
    result = run(transport, sink)
    assert isinstance(result, LocalRedirect) and result.target == "/other?q=1"
    assert not sink.started and transport.closed


@pytest.mark.parametrize("output", [
    [],  # died before answering
    [b"Content-Type: text/plain\n"],  # no blank line
    [b"no colon here\n\n"],
    [b"Content-Type: text/plain\nX-Bad: a\rSet-Cookie: x=1\n\n"],  # CR injection
    [b"Content-Type: text/plain\nX-Bad: a\x00b\n\n"],
    [b"X-Only: 1\n\n"],  # no CGI field
    [b"Content-Type: text/plain\n" + b"X-Long: " + b"a" * 70000 + b"\n\n"],  # oversized
    [b"Content-Type: text/plain\nContent-Length: 12x\n\n"],
])
def test_bad_output_is_502(output: list[bytes | float]) -> None:
    transport = FakeTransport(output)
    sink = FakeSink()
    with pytest.raises(BadGateway):
        run(transport, sink)
    assert not sink.started and transport.aborted and not transport.closed


def test_silence_is_504_and_aborts() -> None:
    transport = FakeTransport([b"Content-Type: text/plain\n\n", b"part", 30.0, b"never"])
    sink = FakeSink()
    with pytest.raises(GatewayTimeout):
        run(transport, sink, timeout=0.05)
    assert transport.aborted and sink.started and not sink.ended


def test_silence_is_counted_per_read_not_per_exchange() -> None:
    # Six pauses of 0.04 s with a 0.1 s timeout: 0.24 s in all, never 0.1 s of silence. The
    # loop's watch looks again when what is left of each silence is over, never fires early.
    output: list[bytes | float] = [b"Content-Type: text/plain\n\n"]
    for i in range(6):
        output += [0.04, b"%d" % i]
    transport = FakeTransport(output)
    sink = FakeSink()
    run(transport, sink, timeout=0.1)
    assert bytes(sink.body) == b"012345" and sink.ended and transport.closed and not transport.aborted


def test_exchanges_on_one_loop_each_time_out_by_their_own_deadline() -> None:
    # One watch serves every exchange of the loop: a short timeout that starts after a long one
    # is still kept, and the long one is not cut by the short one's firing.
    async def main() -> tuple[BaseException | None, bytes, bool]:
        patient = FakeTransport([b"Content-Type: text/plain\n\n", 0.3, b"late but in time"])
        hasty = FakeTransport([b"Content-Type: text/plain\n\n", 30.0, b"never"])
        patient_sink, hasty_sink = FakeSink(), FakeSink()
        first = asyncio.ensure_future(exchange(request(), patient_sink, patient, {}, NoBody(), timeout=5.0))
        # Until the first waits in its 0.3 s silence: its deadline (5 s) is the watch's when the
        # next one starts.
        for _ in range(1000):
            if len(patient.output) == 1:
                break
            await asyncio.sleep(0)
        assert len(patient.output) == 1
        async with asyncio.timeout(3):
            second = await asyncio.gather(
                exchange(request(), hasty_sink, hasty, {}, NoBody(), timeout=0.05), return_exceptions=True)
            await first
        return second[0], bytes(patient_sink.body), hasty.aborted

    error, body, aborted = asyncio.run(main())
    assert isinstance(error, GatewayTimeout) and aborted
    assert body == b"late but in time"


def test_time_the_client_takes_is_not_the_applications_silence() -> None:
    class SlowSink(FakeSink):
        async def write(self, data: bytes) -> None:
            await asyncio.sleep(0.15)  # beyond the timeout, and no read waits meanwhile
            await super().write(data)

    transport = FakeTransport([b"Content-Type: text/plain\n\n", b"a", b"b"])
    sink = SlowSink()
    run(transport, sink, timeout=0.1)
    assert bytes(sink.body) == b"ab" and not transport.aborted


def test_content_length_excess_cut_and_shortfall_502() -> None:
    sink = FakeSink()
    transport = FakeTransport([b"Content-Type: text/plain\nContent-Length: 3\n\nabcdef"])
    run(transport, sink)
    assert bytes(sink.body) == b"abc" and header(sink, b"content-length") == b"3" and transport.closed
    sink = FakeSink()
    with pytest.raises(BadGateway):
        run(FakeTransport([b"Content-Type: text/plain\nContent-Length: 10\n\nabc"]), sink)
    assert sink.started and not sink.ended


def test_no_content_status_drops_body() -> None:
    sink = FakeSink()
    run(FakeTransport([b"Status: 204\nContent-Length: 4\n\nbody"]), sink)
    assert sink.status == 204 and sink.body == b"" and header(sink, b"content-length") is None


def test_body_is_pumped() -> None:
    transport = FakeTransport([0.05, b"Content-Type: text/plain\n\nok"])
    body = StreamedBody(Body([b"ab", b"cd"]), 4)  # type: ignore[arg-type]
    run(transport, FakeSink(), body)
    assert transport.received == [b"ab", b"cd"] and transport.body_ended
    assert transport.opened_with is not None and transport.opened_with[1] == 4


def test_script_that_stops_reading_still_answers() -> None:
    transport = FakeTransport([0.05, b"Content-Type: text/plain\n\nearly"], stop_reading_after=1)
    sink = FakeSink()
    run(transport, sink, StreamedBody(Body([b"ab", b"cd", b"ef"]), 6))  # type: ignore[arg-type]
    assert bytes(sink.body) == b"early" and transport.received == [b"ab"]


def test_client_body_failure_wins_and_aborts() -> None:
    transport = FakeTransport([30.0, b"Content-Type: text/plain\n\n"])
    body = StreamedBody(Body([b"ab"], error=RequestTimeout("body stalled")), 10)  # type: ignore[arg-type]
    with pytest.raises(RequestTimeout):
        run(transport, FakeSink(), body)
    assert transport.aborted


def test_nph_passes_output_unchanged() -> None:
    raw = [b"HTTP/1.1 299 Odd\r\nX-Raw: 1\r\n\r\n", b"body"]
    sink = FakeSink()
    run(FakeTransport(list(raw)), sink, nph=True)
    assert bytes(sink.raw) == b"".join(raw)
    with pytest.raises(BadGateway):
        run(FakeTransport([]), FakeSink(), nph=True)


class Netstring(StreamTransport):
    """A toy framing for StreamTransport: head = netstring of the env, body raw, reply raw."""

    def encode_head(self, environ: Mapping[bytes, bytes], content_length: int | None) -> bytes:
        data = b"".join(k + b"\0" + v + b"\0" for k, v in environ.items())
        return b"%d:%s," % (len(data), data)

    def decode(self, data: bytes) -> bytes:
        return data


class FakeWriter:
    """Answers on `reader` once `request_size` bytes were written, as a backend would."""

    def __init__(self, reader: asyncio.StreamReader, request_size: int, answer: bytes) -> None:
        self.data = bytearray()
        self.closed = False
        self.transport = self
        self.reader, self.request_size, self.answer = reader, request_size, answer

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) == self.request_size:
            self.reader.feed_data(self.answer)
            self.reader.feed_eof()

    async def drain(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_stream_transport_adds_only_framing() -> None:
    async def main() -> tuple[FakeSink, FakeWriter]:
        reader = asyncio.StreamReader()
        writer = FakeWriter(reader, 10, b"Status: 201\nContent-Type: text/plain\n\ncreated")

        async def connect() -> Any:
            return reader, writer

        sink = FakeSink()
        transport = Netstring("toy 127.0.0.1:1", connect)
        await exchange(request("POST"), sink, transport, {b"A": b"1"},
                       StreamedBody(Body([b"xyz"]), 3), timeout=5)  # type: ignore[arg-type]
        return sink, writer

    sink, writer = asyncio.run(main())
    assert (sink.status, bytes(sink.body)) == (201, b"created")
    assert bytes(writer.data) == b"4:A\x001\x00,xyz" and writer.closed


class ResettingWriter(FakeWriter):
    """Sends `answer`, then the connection is reset, as asyncio reports it: the reader's
    exception set by the protocol's connection_lost(ConnectionResetError)."""

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) == self.request_size:
            if self.answer:
                self.reader.feed_data(self.answer)
            self.reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))


def run_stream(writer_class: type[FakeWriter], answer: bytes, sink: FakeSink) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        writer = writer_class(reader, len(b"4:A\x001\x00,"), answer)  # the head: no body

        async def connect() -> Any:
            return reader, writer

        transport = Netstring("toy 127.0.0.1:1", connect)
        await exchange(request(), sink, transport, {b"A": b"1"}, NoBody(), timeout=5)

    asyncio.run(main())


def test_backend_reset_before_the_response_is_502_naming_it() -> None:
    # A ConnectionResetError escaping the handler would be taken for the client leaving (499).
    sink = FakeSink()
    with pytest.raises(BadGateway, match=r"^toy 127\.0\.0\.1:1: connection lost: Connection reset by peer$"):
        run_stream(ResettingWriter, b"", sink)
    assert not sink.started


def test_backend_reset_inside_the_response_is_502_after_start() -> None:
    sink = FakeSink()

    class HalfThenReset(ResettingWriter):
        def write(self, data: bytes) -> None:
            self.data += data
            if len(self.data) == self.request_size:
                self.reader.feed_data(self.answer)
                # The reset comes once the first part was read, as over a socket.
                asyncio.get_running_loop().call_later(0.01, self.reader.set_exception,
                                                      ConnectionResetError(104, "Connection reset by peer"))

    with pytest.raises(BadGateway, match="connection lost"):
        run_stream(HalfThenReset, b"Content-Type: text/plain\nContent-Length: 10\n\nhalf", sink)
    assert sink.started and not sink.ended and bytes(sink.body) == b"half"


class RaisingTransport(FakeTransport):
    """Any transport, not only StreamTransport: socket errors from its own methods."""

    def __init__(self, output: list[bytes | float], **errors: OSError) -> None:
        super().__init__(output)
        self.errors = errors

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        if "open" in self.errors:
            raise self.errors["open"]
        await super().open(environ, content_length)

    async def end_body(self) -> None:
        if "end_body" in self.errors:
            raise self.errors["end_body"]
        await super().end_body()

    async def read(self) -> bytes:
        data = await super().read()
        if not data and "read" in self.errors:
            raise self.errors["read"]
        return data


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"),
                                   BrokenPipeError(32, "Broken pipe"),
                                   TimeoutError(110, "Connection timed out")])  # a TCP keepalive's ETIMEDOUT
def test_socket_error_from_any_transport_read_is_502_not_504(error: OSError) -> None:
    transport = RaisingTransport([], read=error)
    with pytest.raises(BadGateway, match=f"^fake: connection lost: {error.strerror}$"):
        run(transport, FakeSink())
    assert transport.aborted


def test_refused_open_is_502() -> None:
    transport = RaisingTransport([], open=ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(BadGateway, match="^fake: cannot start: Connection refused$"):
        run(transport, FakeSink())
    assert transport.aborted


def test_end_body_failure_without_a_body_still_reads_the_response() -> None:
    transport = RaisingTransport([b"Content-Type: text/plain\n\nok"], end_body=BrokenPipeError(32, "Broken pipe"))
    sink = FakeSink()
    run(transport, sink)
    assert bytes(sink.body) == b"ok" and transport.closed


def test_stream_abort_wakes_the_read_and_leaves_the_reader_open_to_data() -> None:
    async def main() -> tuple[bytes, Netstring]:
        reader = asyncio.StreamReader()
        writer = FakeWriter(reader, -1, b"")

        async def connect() -> Any:
            return reader, writer

        transport = Netstring("toy 127.0.0.1:1", connect)
        await transport.open({b"A": b"1"}, None)
        pending = asyncio.create_task(transport.read())
        await asyncio.sleep(0)
        transport.abort()
        transport.abort()  # idempotent
        # A half-closed connection still receives: data after abort must be taken, not refused
        # (feed_data after feed_eof fails, and the protocol resets the connection for it).
        reader.feed_data(b"late bytes")
        return await pending, transport

    data, transport = asyncio.run(main())
    assert data == b"" and transport.aborted and transport.finished
