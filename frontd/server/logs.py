"""The error log (stdlib logging, nginx-like lines) and the access log (Combined Log Format).

Handlers log through `logging.getLogger("frontd")`; this module decides where lines go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import TextIO

from frontd.request import Request

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
log = logging.getLogger("frontd")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        text = f"{stamp} [{record.levelname.lower()}] {os.getpid()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _ReopenableHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on "-" (stderr) or a file opened for append, reopened on USR1."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(self._open())

    def _open(self) -> TextIO:
        if self.target == "-":
            return sys.stderr
        return open(self.target, "a", buffering=1, encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        old = self.stream
        self.setStream(self._open())
        if old is not sys.stderr:
            old.close()


def setup_error_log(target: str, level: str = "info") -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    handler = _ReopenableHandler(target)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(_LEVELS.get(level, logging.INFO))
    log.propagate = False


def fork() -> int:
    """os.fork() at a moment when no thread of this process is writing to the error log.

    The master has a thread that logs the output of spawned processes (spawn/output.py). Forked
    in the middle of one of its writes, a child would inherit the file object's internal lock
    held by a thread that does not exist there, and hang at its first log line. Every write
    happens under its handler's lock, so holding those locks across the fork is enough; in the
    child, logging's own fork hook gives the handlers fresh locks.
    """
    handlers = list(log.handlers)
    for handler in handlers:
        handler.acquire()
    try:
        pid = os.fork()
    except BaseException:
        for handler in handlers:
            handler.release()
        raise
    if pid != 0:
        for handler in handlers:
            handler.release()
    return pid


def reopen_error_log() -> None:
    for handler in log.handlers:
        if isinstance(handler, _ReopenableHandler):
            handler.reopen()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _clf_time(now: float) -> str:
    t = time.localtime(now)
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d} {sign}{offset // 60:02d}{offset % 60:02d}")


def _quote(value: bytes | str | None) -> str:
    if not value:
        return "-"
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    # Escape what would let a client forge a log line or break the quoted field.
    return text.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "backslashreplace").decode(
        "ascii").replace("\n", "\\n").replace("\r", "\\r")


class AccessLog:
    """Combined Log Format lines, written in batches: one write per event-loop turn at most."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._pending: list[str] = []
        self._scheduled = False
        self._file: TextIO | None = None
        self._clf_second = -1
        self._clf_text = ""
        self.reopen()

    def reopen(self) -> None:
        self.flush()
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        if self.target == "off":
            self._file = None
        elif self.target == "-":
            self._file = sys.stdout
        else:
            self._file = open(self.target, "a", encoding="utf-8")

    def record(self, request: Request, status: int, size: int, *, cut: bool = False) -> None:
        """One line; `cut` when the response started and was then cut short by a failure on
        frontd's or the backend's side (the client's connection was closed without the
        response's end): the line then ends with ` cut`."""
        if self._file is None:
            return
        now = time.time()
        second = int(now)
        if second != self._clf_second:
            self._clf_second, self._clf_text = second, _clf_time(now)
        self._pending.append(
            f'{request.client_addr} - - [{self._clf_text}] "{_quote(request.request_line)}" {status} {size} '
            f'"{_quote(request.header(b"referer"))}" "{_quote(request.header(b"user-agent"))}"'
            f'{" cut" if cut else ""}\n'
        )
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if self._pending and self._file is not None:
            self._file.write("".join(self._pending))
            self._file.flush()
        self._pending.clear()
