"""Request bodies as a gateway or proxy takes them: received whole first (request buffering),
or streamed as they arrive.

By default (`request_buffering = true` on the route) `open_body` reads the whole body into a
`Spool` before the exchange starts: memory up to `max_memory` bytes, then an unlinked temporary
file, never more than `max_body_size` bytes (413 beyond). No CGI process, FastCGI child or
backend connection then waits on a slow client (issue 13 §1: 128 slow uploads held every CGI
slot), the application gets CONTENT_LENGTH / Content-Length whatever the client's framing, and
a body that fails (bad chunk, 413, 408) never reaches it.

With `request_buffering = false`, a body with a Content-Length is not held at all:
`StreamedBody` passes the client's chunks on as the gateway takes them, so backpressure reaches
the client. A chunked body is still spooled: RFC 3875 §4.2 wants CONTENT_LENGTH on the
script's side and no transfer-coding on its input, and the SCGI and uwsgi heads carry the
length before the body.

Whoever opens a body closes it (`close()` in a `finally`): the temporary file goes with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections import deque
from typing import BinaryIO, Final, Protocol

from frontd.errors import ContentTooLarge
from frontd.request import Request, RequestBody
from frontd.response import ResponseSink

log = logging.getLogger("frontd")

DEFAULT_MAX_MEMORY: Final = 64 * 1024
CHUNK_SIZE: Final = 64 * 1024


class BodySource(Protocol):
    """A request body ready for a gateway: its CONTENT_LENGTH and its bytes, in order."""

    # None: the request has no body (no CONTENT_LENGTH at all, RFC 3875 §4.1.2).
    length: int | None

    async def read(self) -> bytes:
        """The next bytes of the body, b"" at its end."""
        ...

    def close(self) -> None:
        """Release what the body holds (a spool file); safe to call twice."""
        ...


class NoBody:
    """A request without a body."""

    length: int | None = None

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class StreamedBody:
    """A body of known length, read from the client as the gateway asks for it."""

    __slots__ = ("length", "_body")

    def __init__(self, body: RequestBody, length: int) -> None:
        self.length: int | None = length
        self._body = body

    async def read(self) -> bytes:
        return await self._body.read()

    def close(self) -> None:
        pass


class Spool:
    """A whole body held in memory up to `max_memory` bytes, then in an unlinked temporary file.

    `write` appends and raises ContentTooLarge past `max_size`; `read` then returns the bytes
    from the start, a chunk at a time.
    """

    __slots__ = ("max_size", "max_memory", "length", "_memory", "_file", "_offset")

    def __init__(self, max_size: int, max_memory: int = DEFAULT_MAX_MEMORY) -> None:
        self.max_size = max_size
        self.max_memory = max_memory
        self.length: int | None = 0
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        self._offset = 0  # read position

    @property
    def in_file(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        assert self.length is not None
        size = self.length + len(data)
        if size > self.max_size:
            raise ContentTooLarge(f"request body over max_body_size ({self.max_size})")
        self.length = size
        if self._file is None and size <= self.max_memory:
            self._memory += data
            return
        if self._file is None:
            # TemporaryFile is unlinked on creation (O_TMPFILE on Linux): nothing is left on
            # disk whatever happens to this process.
            self._file = tempfile.TemporaryFile()
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    def rewind(self) -> None:
        self._offset = 0
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)

    async def read(self) -> bytes:
        if self._file is not None:
            return self._file.read(CHUNK_SIZE)
        data = bytes(self._memory[self._offset:self._offset + CHUNK_SIZE])
        self._offset += len(data)
        return data

    def close(self) -> None:
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None


async def spool(body: RequestBody, max_size: int, max_memory: int = DEFAULT_MAX_MEMORY) -> Spool:
    """Read a whole body into a Spool (ContentTooLarge past `max_size`), ready to be read."""
    held = Spool(max_size, max_memory)
    try:
        while True:
            data = await body.read()
            if not data:
                break
            held.write(data)
        held.rewind()
    except BaseException:
        held.close()
        raise
    return held


async def open_body(request: Request, max_body_size: int, max_memory: int = DEFAULT_MAX_MEMORY, *,
                    buffering: bool = True) -> BodySource:
    """The request's body as a gateway takes it: spooled whole first with `buffering`, or when
    it is chunked (RFC 3875 §4.2); else streamed.

    A request with `Content-Length: 0` has a body, of no bytes (CONTENT_LENGTH=0); one with
    neither Content-Length nor Transfer-Encoding has none.
    """
    body = request.body
    length = body.length
    if length is None or (length > 0 and buffering):
        return await spool(body, max_body_size, max_memory)
    if length > 0:
        return StreamedBody(body, length)
    if request.header(b"content-length") is not None:
        empty = NoBody()
        empty.length = 0
        return empty
    return NoBody()


DEFAULT_MAX_RESPONSE_FILE: Final = 1 << 30  # nginx's proxy_max_temp_file_size
# A response buffer's file, once this large and all sent, is replaced by a new one.
FILE_ROTATE: Final = 16 << 20
# A part of a response buffer's file up to this size is copied out (pread and write, 64 KiB at a
# time), not sent with sendfile, and the file may then be written over from its start: for a
# client that keeps up, reusing the same cached pages costs less than new pages for every byte
# (a 50 MiB FastCGI response: 40 ms of worker CPU instead of 65).
COPY_LIMIT: Final = 1 << 20


class ResponseBuffer:
    """An application's output between the reader that takes it as fast as it comes and the
    sender that passes it on as fast as the client takes it (response buffering, issue 13 §1).

    Chunks stay in memory, as they came (no copy), up to `max_memory` bytes; past that they go
    to an unlinked temporary file of at most `max_file` bytes, beyond which `put` waits until
    the sender has drained it (backpressure, as without buffering). When the file cannot be
    written (the disk or the worker's RLIMIT_FSIZE is full), the response goes on without it:
    each chunk waits until the sender has taken everything before it, as without buffering.
    `send_to` passes everything on in order: memory chunks with `write`; what waits in the file,
    when more than `copy_limit` bytes (a client that does not keep up), with `sendfile` straight
    from the file, so that those bytes are not read back through Python; a smaller part is
    copied out.

    sendfile(2) to a TCP socket does not copy: the socket's queue refers to the file's pages
    until the client has acknowledged them. So once part of a file went out with sendfile,
    nothing is written over it: the file is only appended to, and once it was all sent and
    holds `file_rotate` bytes (or the next chunk would take it past `max_file`), it is closed
    (the queued pages live on) and the next bytes start a new file. A file only ever copied out
    starts again from its start each time it was all sent.
    """

    __slots__ = ("max_memory", "max_file", "file_rotate", "copy_limit", "_chunks", "_memory", "_file",
                 "_written", "_sent", "_shared", "_finished", "_changed", "_no_file")

    def __init__(self, max_memory: int = DEFAULT_MAX_MEMORY, max_file: int = DEFAULT_MAX_RESPONSE_FILE,
                 file_rotate: int = FILE_ROTATE, copy_limit: int = COPY_LIMIT) -> None:
        self.max_memory = max_memory
        self.max_file = max_file
        self.file_rotate = file_rotate
        self.copy_limit = copy_limit
        self._chunks: deque[bytes] = deque()
        self._memory = 0
        self._file: BinaryIO | None = None
        self._written = 0  # the file's size: bytes written to it
        self._sent = 0  # bytes of the file passed on; [_sent, _written) waits or is being sent
        self._shared = False  # part of the file went out with sendfile: never written over
        self._finished = False
        self._changed = asyncio.Event()
        self._no_file = False  # writing the file failed: no more buffering for this response

    async def put(self, data: bytes) -> None:
        # Order: once a chunk went to the file, the following go there too until it is drained.
        if self._memory + len(data) <= self.max_memory and self._sent == self._written:
            self._chunks.append(data)
            self._memory += len(data)
        else:
            while self._written + len(data) > self.max_file and self._written:
                if self._sent == self._written:
                    self._new_file()
                else:
                    await self._wait()
            rest = data if self._no_file else self._spill(data)
            if rest:
                # What the file did not take waits until everything before it was sent.
                while self._chunks or self._sent < self._written:
                    await self._wait()
                self._chunks.append(rest)
                self._memory += len(rest)
        self._changed.set()

    def _new_file(self) -> None:
        """The file was all sent: the next bytes go to a new one, never over these."""
        if self._file is not None:
            self._file.close()  # the pages the socket still refers to live on
            self._file = None
        self._sent = self._written = 0
        self._shared = False

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _spill(self, data: bytes) -> bytes:
        """Append `data` to the file; return what it could not take (b"" when all of it)."""
        view = memoryview(data)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile()
            while view:
                written = os.pwrite(self._file.fileno(), view, self._written)
                self._written += written
                view = view[written:]
        except OSError as exc:
            # ENOSPC, EDQUOT, EFBIG (RLIMIT_FSIZE: Python ignores SIGXFSZ): the response is not
            # lost, it goes at the client's pace.
            self._no_file = True
            log.warning("response buffer: cannot write its temporary file (%s); the rest of the "
                        "response goes at the client's pace", exc.strerror or exc)
        return bytes(view)

    def finish(self) -> None:
        self._finished = True
        self._changed.set()

    async def send_to(self, sink: ResponseSink) -> None:
        """Pass the output on to `sink` as it comes, until `finish` was called and all of it was
        sent."""
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._memory -= len(data)
                self._changed.set()
                await sink.write(data)
            elif self._sent < self._written:
                assert self._file is not None
                # Everything in the file so far, at once; `put` appends beyond it meanwhile.
                start, end = self._sent, self._written
                if end - start <= self.copy_limit:
                    await self._copy_out(sink, start, end)
                else:
                    await sink.sendfile(self._file, start, end - start)
                    self._shared = True
                self._sent = end
                if self._sent == self._written:
                    if not self._shared:
                        self._sent = self._written = 0  # copied out: the same pages again
                    elif self._written >= self.file_rotate:
                        self._new_file()
                self._changed.set()
            elif self._finished:
                return
            else:
                self._changed.clear()
                await self._changed.wait()

    async def _copy_out(self, sink: ResponseSink, start: int, end: int) -> None:
        assert self._file is not None
        fd = self._file.fileno()
        while start < end:
            data = os.pread(fd, min(CHUNK_SIZE, end - start), start)
            await sink.write(data)  # waits while more than 64 KiB are queued for the client
            start += len(data)

    def close(self) -> None:
        self._chunks.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


# Response buffering: a chunk up to this size before any other is written to the client
# directly; the socket's buffer takes it without waiting for the client.
DIRECT_WRITE: Final = 16 * 1024


class BufferedWriter:
    """The response-buffering side of a relay (issue 13 §1): `write` takes an application's
    output as fast as it comes, and a task sends it on to the sink at the client's pace.

    A small first chunk goes straight to the sink; only what follows it goes through a
    `ResponseBuffer` (memory, then a temporary file sent with sendfile) and the sender task, so
    most responses cost neither. Once the application's output has all been read, the caller
    releases the application (a CGI process, a backend connection) and then awaits `drain`;
    `close` (in a `finally`) stops the sender if it still runs and drops the buffer, so output
    cut by an error stays cut.
    """

    __slots__ = ("_sink", "_buffer", "_sender")

    def __init__(self, sink: ResponseSink) -> None:
        self._sink = sink
        self._buffer: ResponseBuffer | None = None
        self._sender: asyncio.Task[None] | None = None

    async def write(self, data: bytes) -> None:
        if self._buffer is None:
            if len(data) <= DIRECT_WRITE:
                await self._sink.write(data)  # queued on the socket: no wait for the client
                return
            self._buffer = ResponseBuffer()
            self._sender = asyncio.create_task(self._buffer.send_to(self._sink))
        assert self._sender is not None
        if self._sender.done():
            self._sender.result()  # the client is gone: stop reading
        await self._buffer.put(data)

    async def drain(self) -> None:
        """All the output was written: wait until the client has taken it."""
        if self._buffer is not None:
            self._buffer.finish()
        if self._sender is not None:
            await self._sender

    async def close(self) -> None:
        sender = self._sender
        if sender is not None:
            if not sender.done():
                sender.cancel()
            await asyncio.wait((sender,))
        if self._buffer is not None:
            self._buffer.close()
