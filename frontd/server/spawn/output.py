"""The output of spawned processes, line by line into the error log with its usual prefix.

Each process writes its standard output and standard error into pipes of its own; a thread of the
master reads them and logs every line as `fastcgi example.test/app/: process 4790: LINE`, at
level info (standard output) or warning (standard error), so that an application's lines (uWSGI's
banner, a traceback) carry the time, the level and their source like frontd's own, and follow the
error log when it is reopened or changed by a reload.

A thread, not the master's loop: that loop sleeps in sigtimedwait with every signal blocked and
has no descriptor to wait on. The thread blocks every signal, so that they still reach the
master's loop; it only reads pipes and logs (logging is thread-safe, and its locks are reset in a
forked child).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import threading
from dataclasses import dataclass, field

log = logging.getLogger("frontd")

MAX_LINE = 16384  # a longer line is logged in pieces of this many bytes
CLOSE_TIMEOUT = 1.0  # at exit, how long what the processes wrote last may take to be logged


@dataclass(slots=True, eq=False)
class _Stream:
    source: str  # "fastcgi example.test/app/: process 4790"
    level: int
    pending: bytearray = field(default_factory=bytearray)  # a line not yet ended


class OutputRelay:
    """Pipes of spawned processes, read by one thread started with the first of them."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._streams: dict[int, _Stream] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread: threading.Thread | None = None
        self._closing = False

    def add(self, read: int, source: str, level: int) -> None:
        """Log the lines that arrive on `read` (a pipe's read end, ours from now on) at `level`,
        as coming from `source`, until its end."""
        self._streams[read] = _Stream(source, level)
        self._selector.register(read, selectors.EVENT_READ)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spawn-output", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            for key, _ in self._selector.select():
                fd = int(key.fd)
                if fd == self._wake_r:
                    os.read(fd, 64)
                    continue
                self._read(fd)
            if self._closing and len(self._streams) == 0:
                return

    def _read(self, fd: int) -> None:
        stream = self._streams[fd]
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            if stream.pending:
                self._emit(stream, bytes(stream.pending))
            self._selector.unregister(fd)
            del self._streams[fd]
            os.close(fd)
            return
        stream.pending += data
        while True:
            end = stream.pending.find(b"\n")
            if end < 0:
                if len(stream.pending) >= MAX_LINE:
                    self._emit(stream, bytes(stream.pending[:MAX_LINE]))
                    del stream.pending[:MAX_LINE]
                    continue
                return
            self._emit(stream, bytes(stream.pending[:end]))
            del stream.pending[:end + 1]

    @staticmethod
    def _emit(stream: _Stream, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "backslashreplace")
        log.log(stream.level, "%s: %s", stream.source, text)

    def close(self) -> None:
        """At the master's exit, once the processes are gone: log what they wrote last (until
        every pipe is at its end, or CLOSE_TIMEOUT), then stop."""
        self._closing = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)

    def close_in_child(self) -> None:
        """In a forked worker: our descriptors are the master's business (no thread runs here)."""
        for fd in [*self._streams, self._wake_r, self._wake_w]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._streams = {}
        self._selector.close()
