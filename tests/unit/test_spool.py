"""Request bodies for gateways (frontd.gateway.spool): streamed, or spooled to learn their length."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import BinaryIO

import pytest

from frontd.errors import ContentTooLarge, RequestTimeout
from frontd.gateway.spool import NoBody, ResponseBuffer, Spool, StreamedBody, open_body, spool
from frontd.request import Request, RequestBody


class Chunks:
    """A RequestBody that yields given chunks, then raises `error` if one is given."""

    def __init__(self, chunks: list[bytes], length: int | None = None, error: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.length = length
        self.error = error
        self.reads = 0

    async def read(self) -> bytes:
        self.reads += 1
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        return b""


def request_with(body: RequestBody, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(method="POST", target="/", path="/", raw_path="/", query="", http_version="1.1",
                   headers=headers or [], host="", client_addr="127.0.0.1", client_port=1,
                   server_addr="127.0.0.1", server_port=80, body=body)


async def read_all(source: object) -> bytes:
    out = []
    while True:
        data = await source.read()  # type: ignore[attr-defined]
        if not data:
            return b"".join(out)
        out.append(data)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_small_body_stays_in_memory() -> None:
    held = asyncio.run(spool(Chunks([b"hello ", b"world"]), max_size=100, max_memory=64))
    try:
        assert held.length == 11
        assert not held.in_file
        assert asyncio.run(read_all(held)) == b"hello world"
    finally:
        held.close()


def test_body_over_the_memory_threshold_goes_to_an_unlinked_file() -> None:
    chunks = [bytes([i]) * 1000 for i in range(50)]
    before = open_fds()
    held = asyncio.run(spool(Chunks(chunks), max_size=1 << 20, max_memory=4096))
    try:
        assert held.in_file
        assert held.length == 50_000
        # The file has no name: nothing to clean up on disk if the process dies.
        assert os.fstat(held._file.fileno()).st_nlink == 0  # type: ignore[union-attr]
        assert asyncio.run(read_all(held)) == b"".join(chunks)
    finally:
        held.close()
    assert open_fds() == before  # released


def test_limits_just_under_and_just_over() -> None:
    held = asyncio.run(spool(Chunks([b"x" * 60, b"y" * 40]), max_size=100, max_memory=10))
    assert held.length == 100
    held.close()
    before = open_fds()
    with pytest.raises(ContentTooLarge):
        asyncio.run(spool(Chunks([b"x" * 60, b"y" * 41]), max_size=100, max_memory=10))
    assert open_fds() == before  # the spool file is released on the error


def test_client_error_releases_the_spool() -> None:
    before = open_fds()
    body = Chunks([b"x" * 5000], error=RequestTimeout("stalled"))
    with pytest.raises(RequestTimeout):
        asyncio.run(spool(body, max_size=1 << 20, max_memory=100))
    assert open_fds() == before


def test_empty_chunked_body_has_length_zero() -> None:
    held = asyncio.run(spool(Chunks([]), max_size=10))
    assert held.length == 0
    assert asyncio.run(read_all(held)) == b""


def test_close_twice_is_harmless() -> None:
    held = Spool(max_size=10, max_memory=2)
    held.write(b"abcdef")
    held.close()
    held.close()


def test_open_body_chooses() -> None:
    # Chunked (length None): spooled, CONTENT_LENGTH known after.
    source = asyncio.run(open_body(request_with(Chunks([b"ab", b"cd"], length=None)), 100))
    assert isinstance(source, Spool) and source.length == 4
    assert asyncio.run(read_all(source)) == b"abcd"
    # Content-Length, request buffering (the default): received whole before the exchange.
    body = Chunks([b"ab", b"cd"], length=4)
    source = asyncio.run(open_body(request_with(body), 100))
    assert isinstance(source, Spool) and source.length == 4 and body.reads == 3
    assert asyncio.run(read_all(source)) == b"abcd"
    # Content-Length without buffering: streamed, nothing read ahead.
    body = Chunks([b"abcd"], length=4)
    source = asyncio.run(open_body(request_with(body), 100, buffering=False))
    assert isinstance(source, StreamedBody) and source.length == 4 and body.reads == 0
    # Chunked without buffering: still spooled (RFC 3875 §4.2, CONTENT_LENGTH).
    source = asyncio.run(open_body(request_with(Chunks([b"ab"], length=None)), 100, buffering=False))
    assert isinstance(source, Spool) and source.length == 2
    # "Content-Length: 0": a body of no bytes; no header at all: no body.
    zero = asyncio.run(open_body(request_with(Chunks([], length=0), [(b"content-length", b"0")]), 100))
    assert zero.length == 0
    none = asyncio.run(open_body(request_with(Chunks([], length=0)), 100))
    assert isinstance(none, NoBody) and none.length is None


def test_open_body_chunked_over_limit() -> None:
    with pytest.raises(ContentTooLarge):
        asyncio.run(open_body(request_with(Chunks([b"x" * 11], length=None)), 10))


class RecordingSink:
    """What a ResponseBuffer passes on: ("write", bytes) and ("sendfile", the bytes of the file
    range), recorded when the send starts; each send then waits for a permit (a client that
    takes its time)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.permits = asyncio.Semaphore(0)

    async def write(self, data: bytes) -> None:
        self.sent.append(("write", data))
        await self.permits.acquire()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        self.sent.append(("sendfile", os.pread(file.fileno(), count, offset)))
        await self.permits.acquire()
        # Still the same bytes once sent: nothing was written over the range meanwhile.
        assert os.pread(file.fileno(), count, offset) == self.sent[-1][1]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_response_buffer_keeps_order_through_memory_and_file() -> None:
    async def run() -> tuple[list[tuple[str, bytes]], bool]:
        buffer = ResponseBuffer(max_memory=4, max_file=10, copy_limit=0)  # sendfile only
        sink = RecordingSink()
        await buffer.put(b"ab")  # memory
        await buffer.put(b"cde")  # over max_memory: the file
        await buffer.put(b"f")  # fits in memory, but the file is not drained: the file
        sender = asyncio.create_task(buffer.send_to(sink))
        await until(lambda: len(sink.sent) == 1)  # "ab" is being written
        sink.permits.release()
        await until(lambda: len(sink.sent) == 2)  # the file's 4 bytes are being sent
        await buffer.put(b"h")  # appended beyond the range being sent, never over it
        # The file holds 5 of its 10 bytes; 7 more must wait until the sender drained it.
        blocked = asyncio.create_task(buffer.put(b"g" * 7))
        await asyncio.sleep(0)
        waited = not blocked.done()
        for _ in range(3):
            sink.permits.release()
        await blocked
        buffer.finish()
        sink.permits.release()
        await sender
        buffer.close()
        return sink.sent, waited

    sent, waited = asyncio.run(run())
    # In order, and what went to the file leaves through sendfile, never read back by Python.
    assert sent == [("write", b"ab"), ("sendfile", b"cdef"), ("sendfile", b"h"), ("sendfile", b"g" * 7)], sent
    assert waited


class QueueingSink(RecordingSink):
    """A RecordingSink whose sendfile, like sendfile(2) to a TCP socket, keeps referring to the
    file after it returned: what it sent must never be written over."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[int, int, int, bytes]] = []  # (a dup of the fd, offset, count, bytes)

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        data = os.pread(file.fileno(), count, offset)
        self.queued.append((os.dup(file.fileno()), offset, count, data))
        self.sent.append(("sendfile", data))


def test_response_buffer_never_writes_over_what_it_sent() -> None:
    """sendfile(2) to a TCP socket queues references to the file's pages, not copies: a file
    written over from its start once drained sent the new bytes in place of the old ones."""
    async def run() -> QueueingSink:
        buffer = ResponseBuffer(max_memory=0, max_file=100, file_rotate=12, copy_limit=0)
        sink = QueueingSink()
        sender = asyncio.create_task(buffer.send_to(sink))
        for n in range(10):
            await buffer.put(b"%d" % n * 5)
            await until(lambda n=n: len(sink.sent) == n + 1)  # drained after each put
        buffer.finish()
        await sender
        buffer.close()
        return sink

    sink = asyncio.run(run())
    assert b"".join(data for _, data in sink.sent) == b"".join(b"%d" % n * 5 for n in range(10))
    try:
        for fd, offset, count, data in sink.queued:
            assert os.pread(fd, count, offset) == data  # what the socket would still send
        assert len({os.fstat(fd).st_ino for fd, *_ in sink.queued}) == 4  # 12 bytes a file, then a new one
    finally:
        for fd, *_ in sink.queued:
            os.close(fd)


def test_response_buffer_copies_small_parts_out_and_reuses_its_file() -> None:
    """A part of the file no larger than `copy_limit` is copied out with `write`, and the file,
    all sent, starts again from its start: the same pages, no new ones."""
    async def run() -> tuple[list[tuple[str, bytes]], int]:
        buffer = ResponseBuffer(max_memory=0, copy_limit=8)
        sink = RecordingSink()
        for _ in range(100):
            sink.permits.release()
        sender = asyncio.create_task(buffer.send_to(sink))
        for n in range(5):
            await buffer.put(b"%d" % n * 5)
            await until(lambda n=n: len(sink.sent) == n + 1)
        size = buffer._written
        buffer.finish()
        await sender
        buffer.close()
        return sink.sent, size

    sent, size = asyncio.run(run())
    assert sent == [("write", b"%d" % n * 5) for n in range(5)]
    assert size == 0  # drained, and written again from offset 0 each time
