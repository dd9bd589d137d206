"""X-Sendfile and X-Accel-Redirect: a backend names a file, frontd sends it (docs/gateways.md).

On a gateway or proxy route with `x_sendfile = ["/dir", ...]`, a response head carrying one of
these fields reaches `XSendfile.answer` instead of the client; the backend's body has been
discarded and the backend released already (`frontd.gateway.exchange`, `handlers/proxy.py`).

- `X-Sendfile: /dir/file` (lighttpd, Apache mod_xsendfile) is a filesystem path, taken as
  written (no percent-decoding). It must be absolute and normalised (no ".", "..", "//" or
  trailing "/"), and its real path (symlinks resolved) must lie inside the real path of one of
  the route's directories; the file opened must be a regular file frontd can read. Anything
  else is the backend's error: 502 and one log line naming the route and the path. A path
  inside a listed directory that names nothing is a 404, as lighttpd answers.
- `X-Accel-Redirect: /uri` (nginx) is a URI: an internal redirect, served by a static route
  with `internal = true` (CONFIG.md); the dispatcher checks where it lands.

The file goes out through the static handler's machinery (sendfile(2), Range and If-Range,
If-None-Match and If-Modified-Since, HEAD) with its own length and validators; the backend's
status is replaced by the file's (200, 206, 304, 412), its Content-Type wins over the one the
extension gives, and its other fields (Content-Disposition, Cache-Control, Set-Cookie, ...) are
kept (`KeptFields`).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Final

from frontd.config.model import Route
from frontd.errors import BadGateway, HTTPError, NotFound
from frontd.handlers.static import StaticHandler
from frontd.http.file_answer import X_ACCEL_REDIRECT, FileAnswer
from frontd.http.target import parse_target
from frontd.request import Request
from frontd.response import LocalRedirect, ResponseSink, SinkWrapper

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MULTIPART: Final = b"multipart/byteranges"


class KeptFields(SinkWrapper):
    """The backend's fields on the response frontd makes for its file: appended to the file's,
    its Content-Type in place of the file's (not of a multipart/byteranges one)."""

    __slots__ = ("content_type", "fields")

    def __init__(self, inner: ResponseSink, fields: list[tuple[bytes, bytes]]) -> None:
        super().__init__(inner)
        self.content_type: bytes | None = None
        self.fields: list[tuple[bytes, bytes]] = []
        for name, value in fields:
            if name == b"content-type":
                self.content_type = value
            else:
                self.fields.append((name, value))

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        ctype = self.content_type
        if ctype is not None:
            headers = [(name, ctype if name == b"content-type" and not value.startswith(_MULTIPART) else value)
                       for name, value in headers]
        await self.inner.start(status, [*headers, *self.fields], reason)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class XSendfile:
    """Acts on a FileAnswer: sends the file of X-Sendfile, redirects for X-Accel-Redirect."""

    def __init__(self, static: StaticHandler) -> None:
        self.static = static

    async def answer(self, request: Request, sink: ResponseSink, route: Route, answer: FileAnswer,
                     backend: str) -> LocalRedirect | None:
        where = f"{backend} (route {route.prefix})"
        if len(answer.fields) != 1:
            names = ", ".join(name.decode("latin-1") for name, _ in answer.fields)
            raise BadGateway(f"{where}: more than one file field in the answer ({names})")
        name, value = answer.fields[0]
        if name == X_ACCEL_REDIRECT:
            return self._redirect(value, answer, where)
        path = os.fsdecode(value)
        file, st = self._open(route, path, where)
        with file:
            await self.static.send_open_file(request, KeptFields(sink, answer.kept), path, file, st)
        return None

    @staticmethod
    def _redirect(value: bytes, answer: FileAnswer, where: str) -> LocalRedirect:
        """X-Accel-Redirect: the URI must be one a client could have sent (path and query)."""
        def refuse(why: str) -> BadGateway:
            return BadGateway(f"{where}: X-Accel-Redirect {value[:200].decode('latin-1')!r} refused: {why}")

        if not value.startswith(b"/") or value.startswith(b"//"):
            raise refuse("not a local URI (/path)")
        try:
            parse_target(value, "GET")
        except HTTPError as exc:
            raise refuse(exc.detail) from None
        return LocalRedirect(value.decode("latin-1"), fields=answer.kept)

    @staticmethod
    def _open(route: Route, path: str, where: str) -> tuple[BinaryIO, os.stat_result]:
        def refuse(why: str) -> BadGateway:
            return BadGateway(f"{where}: X-Sendfile {path[:200]!r} refused: {why}")

        if not path.startswith("/"):
            raise refuse("not an absolute path")
        if path.startswith("//") or os.path.normpath(path) != path:
            raise refuse('not a normalised path (".", "..", "//" or a trailing "/")')
        real = os.path.realpath(path)
        if not any(_inside(real, directory) for directory in route.x_sendfile):
            shown = "" if real == path else f" (it resolves to {real!r})"
            raise refuse(f"outside the route's x_sendfile directories{shown}")
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{where}: X-Sendfile {path[:200]!r}: no such file") from None
        except OSError as exc:
            raise refuse(f"cannot open it: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise refuse("not a regular file")
            return open(fd, "rb", buffering=0), st
        except BaseException:
            os.close(fd)
            raise
