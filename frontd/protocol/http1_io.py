"""The I/O half of an HTTP/1.1 connection: an asyncio.Protocol with one receive buffer, one timer
and the write path with its backpressure. protocol/http1.py's Connection builds requests on it;
a request's Body and Sink (http1_sink.py) read and write through it.

Received bytes go to one buffer (`data_received`); past READ_HIGH unconsumed bytes the transport
stops reading until more is wanted. Only a wait creates a future: for bytes (`wait_data`) or for a
paused transport to drain (`drain`). One timer handle per connection serves every phase's timeout
(header, body, keep-alive, send): a wait sets its deadline, and the handle, when it fires before
a deadline, re-arms itself for what is left, so a wait that ends in time costs no timer call.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import BinaryIO, cast

from frontd.config.model import Limits
from frontd.request import TLSInfo

SENDFILE_CHUNK = 1 << 20
TLS_FILE_CHUNK = 256 * 1024  # a file body through TLS is read and encrypted this much at a time
# Received bytes not yet consumed past which the transport stops reading (a client pipelining
# faster than it reads its answers); never below max_header_size, or a large head could not end.
READ_HIGH = 256 * 1024
STREAM_LIMIT = 1 << 16  # the StreamReader a detached connection's handler gets
# A timer may run this early (the loop's clock resolution): count its deadline as reached.
TIMER_SLACK = 0.001
# Framing and hop-by-hop fields are the connection's business, never a handler's.
_FRAMING_HEADERS = frozenset({b"connection", b"transfer-encoding", b"keep-alive"})
# RFC 6797 §7.2: HSTS is never sent over plain HTTP, whoever set it.
_PLAIN_DROPPED_HEADERS = _FRAMING_HEADERS | {b"strict-transport-security"}


class _ClientGone(Exception):
    """The client closed or reset the connection, or stopped reading for send_timeout."""


class ConnectionIO(asyncio.Protocol):
    """Bytes in and out of one client connection, with the limits' timeouts."""

    transport: asyncio.Transport

    def __init__(self, limits: Limits, tls: TLSInfo | None) -> None:
        self.limits = limits
        self.tls = tls
        self.dropped_headers = _PLAIN_DROPPED_HEADERS if tls is None else _FRAMING_HEADERS
        self.buf = bytearray()
        self.eof = False  # the client ended its side (or the connection is lost)
        self.lost = False  # the transport is closed
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._fd = -1  # the socket's descriptor, for writes that need not queue (not over TLS)
        # Whether the loop implements sendfile (asyncio's does; uvloop's does not).
        self._loop_sendfile = type(self._loop).sendfile is not asyncio.AbstractEventLoop.sendfile
        self._reading = True
        self._read_high = max(READ_HIGH, limits.max_header_size + 1)
        self._writing_paused = False
        self._stalled = False  # the client stopped reading: abort, do not wait to flush
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_deadline = 0.0
        self._write_waiter: asyncio.Future[None] | None = None
        self._write_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        # Inside TLS the socket carries records, not the file: no sendfile(2) there.
        self._sock = transport.get_extra_info("socket") if self.tls is None else None
        if self._sock is not None:
            self._fd = self._sock.fileno()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self._reading and len(buf) > self._read_high:
            self._reading = False
            self.transport.pause_reading()
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # Keep the sending side open: a client that half-closed still gets its answer. (Over
        # TLS the transport closes at the client's close_notify whatever this returns.)
        return self.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        for waiter in (self._read_waiter, self._write_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._disarm()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the timer ------------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first and re-arms itself for this deadline
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        """The timer fired: fail the waits whose deadline passed, re-arm for the others."""
        self._timer = None
        now = self._loop.time() + TIMER_SLACK
        later: float | None = None
        for waiter, deadline in ((self._read_waiter, self._read_deadline),
                                 (self._write_waiter, self._write_deadline)):
            if waiter is None or waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError())
            elif later is None or deadline < later:
                later = deadline
        if later is not None:
            self._timer = self._loop.call_at(later, self._expire)

    # -- input ----------------------------------------------------------------------------

    async def wait_data(self, timeout: float) -> None:
        """Until bytes arrive or the client ends its side; TimeoutError after `timeout` s."""
        await self._wait_data_until(self._loop.time() + timeout)

    async def _wait_data_until(self, deadline: float) -> None:
        if self.eof:
            return
        if not self._reading:
            # More is wanted, so what is buffered has been consumed: read again.
            self._reading = True
            self.transport.resume_reading()
        waiter = self._loop.create_future()
        self._read_waiter = waiter
        self._read_deadline = deadline
        self._arm(deadline)
        try:
            await waiter
        finally:
            self._read_waiter = None

    # -- output ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def send(self, pieces: list[bytes]) -> None:
        transport = self.transport
        if transport.is_closing():
            raise _ClientGone()
        if self._fd < 0 or transport.get_write_buffer_size():
            transport.writelines(pieces)
        else:
            # Nothing queued: the pieces go to the socket in one writev(2), without the join
            # (a copy of the whole body) that the transport's writelines makes first; what the
            # socket does not take is queued in the transport, which sends it when it can.
            try:
                sent = os.writev(self._fd, pieces)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                raise _ClientGone() from None
            if sent < sum(map(len, pieces)):
                transport.write(b"".join(pieces)[sent:])
        if self._writing_paused:
            await self.drain()

    async def drain(self) -> None:
        """Until the transport takes writes again (below its low-water mark); _ClientGone when the
        connection is lost or the client read nothing for send_timeout."""
        while self._writing_paused and not self.lost:
            timeout = self.limits.send_timeout
            waiter = self._loop.create_future()
            self._write_waiter = waiter
            self._write_deadline = deadline = self._loop.time() + timeout
            self._arm(deadline)
            try:
                await waiter
            except TimeoutError:
                self._stalled = True
                raise _ClientGone(f"client read nothing for {timeout:g}s") from None
            finally:
                self._write_waiter = None
        if self.lost:
            raise _ClientGone()

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        if self.tls is not None:
            await self._send_file_chunks(file, offset, count)
            return
        transport = self.transport
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
        if offset >= end:
            return
        if not self._loop_sendfile:
            # A loop without sendfile (uvloop): the rest goes as copies, a chunk at a time.
            await self._send_file_chunks(file, offset, end - offset)
            return
        try:
            while offset < end:
                n = min(SENDFILE_CHUNK, end - offset)
                # loop.sendfile can only be interrupted by cancelling it: here alone a timeout
                # context stands in for the connection's timer, once per chunk of a large file.
                async with asyncio.timeout(self.limits.send_timeout):
                    # fallback=False (issue 13 §4): asyncio takes a sendfile(2) that fails at
                    # the start of a chunk (the client reset the connection) for "sendfile not
                    # available" and would read the file in a thread pool, whose module a
                    # worker that dropped privileges may not be able to import. Here it raises
                    # SendfileNotAvailableError, a RuntimeError: the client is gone.
                    sent = await self._loop.sendfile(transport, file, offset, n, fallback=False)
                if sent <= 0:
                    raise _ClientGone("file shrank while being sent")
                offset += sent
        except TimeoutError:
            self._stalled = True
            raise _ClientGone(f"client read nothing for {self.limits.send_timeout:g}s") from None
        except (ConnectionError, RuntimeError):
            raise _ClientGone() from None

    async def _send_file_chunks(self, file: BinaryIO, offset: int, count: int) -> None:
        """A file body through TLS: read in chunks, each sent before the next is read (`send`
        drains past the transport's high-water mark), so memory stays bounded whatever the
        file's size."""
        fd = file.fileno()
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(TLS_FILE_CHUNK, end - offset), offset)
            if not data:
                raise _ClientGone("file shrank while being sent")
            await self.send([data])
            offset += len(data)

    def detach_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the transport to a StreamReader/StreamWriter pair; this protocol hears no more of
        it. Bytes already buffered stay in `buf` for the caller (Sink.detach returns them)."""
        loop = self._loop
        transport = self.transport
        self._disarm()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._writing_paused:
            protocol.pause_writing()  # the transport calls resume_writing on the new protocol
        if not self._reading:
            self._reading = True
            transport.resume_reading()  # the reader pauses it again past its own limit
        if self.lost:
            protocol.connection_lost(None)
        elif self.eof:
            reader.feed_eof()
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def close(self) -> None:
        """Close the connection (a graceful stop closing an idle one)."""
        self.transport.close()

    def finish(self) -> None:
        """The connection's end: the timer stopped, the transport closed, or reset when the
        client stopped reading (what it did not read would wait for it forever)."""
        self._disarm()
        if self._stalled:
            self.transport.abort()
        else:
            self.transport.close()
