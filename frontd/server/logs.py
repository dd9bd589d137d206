"""The error log (stdlib logging, nginx-like lines) and the access logs.

Access log lines are in Combined Log Format, `vhost_combined` (the same with the Host first, as
Apache's) or JSON (one object per line, fields in docs/operations.md). Each vhost may have its
own file (`access_log` on the vhost); the top-level one takes the rest.

Handlers log through `logging.getLogger("frontd")`; this module decides where lines go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import TextIO

from frontd.config.model import Config
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
    """One access log file, written in batches: one write per event-loop turn at most."""

    def __init__(self, target: str, log_format: str = "combined") -> None:
        self.target = target
        self.format = log_format
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

    def record(self, request: Request, status: int, size: int, duration: float = 0.0, *, cut: bool = False) -> None:
        """One line; `cut` when the response started and was then cut short by a failure on
        frontd's or the backend's side (the client's connection was closed without the
        response's end): a combined line then ends with ` cut`, a JSON object has "cut": true."""
        if self._file is None:
            return
        now = time.time()
        if self.format == "json":
            self._pending.append(_json_line(request, status, size, duration, now, cut))
        else:
            second = int(now)
            if second != self._clf_second:
                self._clf_second, self._clf_text = second, _clf_time(now)
            line = (f'{request.client_addr} - - [{self._clf_text}] "{_quote(request.request_line)}" {status} {size} '
                    f'"{_quote(request.header(b"referer"))}" "{_quote(request.header(b"user-agent"))}"'
                    f'{" cut" if cut else ""}\n')
            if self.format == "vhost_combined":
                line = f"{_quote(request.host)}:{request.server_port} {line}"
            self._pending.append(line)
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


def _json_line(request: Request, status: int, size: int, duration: float, now: float, cut: bool) -> str:
    """One JSON object (docs/operations.md lists the fields); header values as Latin-1 text."""
    route = request.route
    upstream = request.notes.get("upstream")
    if upstream is None and route is not None and len(route.backends) == 1:
        upstream = str(route.backends[0])
    referer = request.header(b"referer")
    agent = request.header(b"user-agent")
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
        "host": request.host or None,
        "client": request.client_addr,
        "method": request.method,
        "target": request.target,
        "protocol": f"HTTP/{request.http_version}",
        "status": status,
        "bytes": size,
        "duration": round(duration, 6),
        "upstream": upstream,
        "user_agent": agent.decode("latin-1") if agent is not None else None,
        "referer": referer.decode("latin-1") if referer is not None else None,
        "cut": cut,
    }
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


class AccessLogs:
    """The access logs of a configuration: the top-level one and each vhost's own.

    A configuration without per-vhost logs or formats costs nothing more than one AccessLog.
    """

    def __init__(self, config: Config) -> None:
        top = AccessLog(config.access_log, config.access_log_format)
        self.default = top
        by_target: dict[tuple[str, str], AccessLog] = {(top.target, top.format): top}
        self.by_vhost: dict[int, AccessLog] = {}
        for vhost in config.vhosts:
            if vhost.access_log is None and vhost.access_log_format is None:
                continue
            key = (vhost.access_log or config.access_log, vhost.access_log_format or config.access_log_format)
            if key not in by_target:
                by_target[key] = AccessLog(*key)
            self.by_vhost[id(vhost)] = by_target[key]
        self.logs = tuple(by_target.values())

    def record(self, request: Request, status: int, size: int, duration: float = 0.0, *, cut: bool = False) -> None:
        target = self.by_vhost.get(id(request.vhost), self.default) if self.by_vhost else self.default
        target.record(request, status, size, duration, cut=cut)

    def reopen(self) -> None:
        for access_log in self.logs:
            access_log.reopen()

    def flush(self) -> None:
        for access_log in self.logs:
            access_log.flush()


def log_files(config: Config) -> tuple[str, ...]:
    """Every log file the configuration names (not "-" or "off"): the master creates them."""
    targets = [config.error_log, config.access_log, *(v.access_log for v in config.vhosts if v.access_log)]
    return tuple(dict.fromkeys(t for t in targets if t not in ("-", "off")))
