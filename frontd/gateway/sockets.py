"""Backend connections on bare non-blocking sockets, for the gateways (FastCGI, SCGI, uwsgi).

asyncio's `open_connection` builds a transport, a protocol, a StreamReader and a StreamWriter per
connection, and wakes the reading task through the protocol's buffer for every chunk: about half of
the CPU of a short exchange with an SCGI or uwsgi application, which opens a connection per
request. A `SocketStream` is one object that plays the three parts the gateways use (reader,
writer and transport, with the same method names) on the socket itself:

- `read` calls `recv` directly and waits for readiness only when nothing is there; the reader
  registration stays in the loop between reads and is dropped when the socket turns readable with
  nobody waiting (no epoll_ctl per chunk);
- `write` calls `send` directly and buffers only what the kernel did not take, then flushes it from
  a writer callback; `drain` waits until the buffer is empty;
- a failed `send` (EPIPE, a reset) does not close the socket: what the application answered before
  it stopped reading is still read; `drain` and `is_closing` report the failure, and a later
  `read` reports the reset if there was one;
- `abort` closes at once and wakes a pending read (which returns b""); `set_exception` makes
  pending and later reads raise, as StreamReader's does; `write_eof` shuts down the sending side
  once the buffer is flushed;
- while a connection is parked in a pool, `on_idle_input` (when set) gets what arrives instead
  of the reader (b"" for EOF or an error), as `BackendConnection.watch_idle` asks; `peek` tells,
  with one MSG_PEEK `recv` instead of a turn of the event loop, whether anything came since.

`connect` opens one to a numeric address or a Unix socket (names go through asyncio). On loopback
a TCP connect that says EINPROGRESS has nearly always completed by the time the call returns (the
handshake runs in the kernel as the call releases the socket): a second `connect` tells, and only
one still in progress waits for writability.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import Any

READ_SIZE = 65536


class SocketStream:
    """A connected non-blocking stream socket: the reader, writer and transport of one backend
    connection (see the module's docstring for how each part behaves)."""

    __slots__ = ("loop", "sock", "fd", "transport", "_buffer", "_eof", "_exc", "_write_exc", "_closed",
                 "_out", "_out_eof", "_reader_on", "_writer_on", "_read_waiter", "_drain_waiter",
                 "on_idle_input")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.transport = self  # StreamWriter's `writer.transport`: the same object here
        self._buffer = b""  # received and not read yet (only what `read(n)` left over)
        self._eof = False
        self._exc: BaseException | None = None  # what reads raise (set_exception, a reset)
        self._write_exc: OSError | None = None  # the send that failed
        self._closed = False
        self._out = bytearray()  # what the kernel did not take yet
        self._out_eof = False  # shut down the sending side once `_out` is flushed
        self._reader_on = False
        self._writer_on = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.on_idle_input: Callable[[bytes], None] | None = None

    # -- reading (StreamReader's names) ---------------------------------------------------------

    async def read(self, n: int = READ_SIZE) -> bytes:
        while True:
            if self._buffer:
                data, self._buffer = self._buffer[:n], self._buffer[n:]
                return data
            if self._exc is not None:
                raise self._exc
            if self._eof or self._closed:
                return b""
            try:
                data = self.sock.recv(n)
            except (BlockingIOError, InterruptedError):
                await self._wait_readable()
                continue
            except OSError as exc:
                self._exc = exc
                raise
            if not data:
                self._eof = True
            return data

    def peek(self) -> bytes | bool:
        """On an idle connection: False when nothing is there, else True for EOF (or an error)
        or the bytes that came, which are left unread."""
        if self._closed:
            return True
        try:
            data = self.sock.recv(READ_SIZE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data or True

    def at_eof(self) -> bool:
        return (self._eof or self._closed) and not self._buffer

    def ended(self) -> bool:
        """Without waiting: True when the peer has closed its side and everything it sent was
        read. False when bytes are still to read, nothing came yet, or the connection failed
        (a read then reports the failure)."""
        if self._buffer or self._exc is not None or self._closed:
            return False
        if self._eof:
            return True
        try:
            data = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError: nothing yet; anything else: a read will say
            return False
        if data:
            return False
        self._eof = True
        return True

    def exception(self) -> BaseException | None:
        return self._exc

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        self._wake_reader()

    async def _wait_readable(self) -> None:
        waiter = self.loop.create_future()
        self._read_waiter = waiter
        if not self._reader_on:
            self.loop.add_reader(self.fd, self._readable)
            self._reader_on = True
        try:
            await waiter
        finally:
            self._read_waiter = None

    def _readable(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        callback = self.on_idle_input
        if callback is None:
            self._reader_off()  # nobody reads: stop watching until the next read waits
            return
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._eof = True
            self._reader_off()
        callback(data)

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _reader_off(self) -> None:
        if self._reader_on:
            self._reader_on = False
            if not self._closed:
                self.loop.remove_reader(self.fd)

    def watch_idle(self, on_input: Callable[[bytes], None] | None) -> None:
        """While parked: report what arrives (or EOF) to `on_input`; None stops that."""
        self.on_idle_input = on_input
        if on_input is not None and not self._reader_on and not self._closed:
            self.loop.add_reader(self.fd, self._readable)
            self._reader_on = True

    # -- writing (StreamWriter's and the transport's names) -------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._write_exc is not None or self._out_eof or not data:
            return
        if not self._out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._write_failed(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self.loop.add_writer(self.fd, self._writable)
            self._writer_on = True
        self._out += data

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._write_failed(exc)
            return
        del self._out[:sent]
        if not self._out:
            self._writer_off()
            if self._out_eof:
                self._shutdown_write()
            self._wake_drain()

    def _write_failed(self, exc: OSError) -> None:
        self._write_exc = exc
        self._out.clear()
        self._writer_off()
        if isinstance(exc, ConnectionResetError) and self._exc is None:
            self._exc = exc  # reads would find the reset too; say it now
            self._wake_reader()
        self._wake_drain()

    def _writer_off(self) -> None:
        if self._writer_on:
            self._writer_on = False
            if not self._closed:
                self.loop.remove_writer(self.fd)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Return once everything written has gone to the kernel; raise if a send failed."""
        while self._out and not self._closed and self._write_exc is None:
            waiter = self.loop.create_future()
            self._drain_waiter = waiter
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self._write_exc is not None:
            raise self._write_exc
        if self._closed:
            raise ConnectionResetError("connection closed")

    def write_eof(self) -> None:
        if self._closed or self._out_eof:
            return
        self._out_eof = True
        if not self._out:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def get_write_buffer_size(self) -> int:
        return len(self._out)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def is_closing(self) -> bool:
        return self._closed or self._write_exc is not None

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close; what is still buffered is dropped (a gateway closes only after its exchange)."""
        self.abort()

    def abort(self) -> None:
        if self._closed:
            return
        self._reader_off()
        self._writer_off()
        self._closed = True
        self._out.clear()
        self.sock.close()
        self._wake_reader()
        self._wake_drain()


async def connect(family: int, address: str | tuple[str, int], timeout: float) -> SocketStream:
    """A connected SocketStream to `address`; TimeoutError after `timeout`, OSError if refused."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            # Asked again: 0 (or EISCONN) once the handshake is done, the error if it failed.
            err = sock.connect_ex(address)
            if err in _IN_PROGRESS:
                await _connected(loop, sock, timeout)
            elif err and err != errno.EISCONN:
                raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return SocketStream(loop, sock)


_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN, errno.EINTR})


async def _connected(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float) -> None:
    waiter = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _done, waiter)
    expiry = loop.call_later(timeout, _done, waiter, TimeoutError())
    try:
        await waiter
    finally:
        expiry.cancel()
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def _done(waiter: asyncio.Future[None], exc: BaseException | None = None) -> None:
    if not waiter.done():
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
