"""Static files: a vhost's `root` and `static` routes (aliases).

Nothing outside the directory is served: the path is already normalised (no dot segments), dot
files and dot directories are refused, the resolved real path must stay under the directory
(a symlink that leaves it is refused), and CGI directories are never served as files.
"""

from __future__ import annotations

import html
import os
import stat
import urllib.parse

from frontd.config.model import Config, Route, VHost
from frontd.errors import Forbidden, MethodNotAllowed, NotFound, PreconditionFailed, RangeNotSatisfiable
from frontd.http import conditional, ranges
from frontd.http.dates import http_date
from frontd.http.mime import content_type
from frontd.request import Request
from frontd.response import ResponseSink

ALLOW = b"GET, HEAD, OPTIONS"


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class StaticHandler:
    def __init__(self, config: Config) -> None:
        # Per vhost, the CGI directories whose files must never go out as bytes.
        self._cgi_dirs: dict[int, tuple[str, ...]] = {
            id(vhost): tuple(route.directory for route in vhost.routes
                             if route.kind == "cgi" and route.directory)
            for vhost in config.vhosts
        }

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        vhost, route = request.vhost, request.route
        assert vhost is not None
        base, rel, index, autoindex = self._base(vhost, route, request.path)
        if base is None:
            raise NotFound("no root for this path")
        if request.method not in ("GET", "HEAD"):
            if request.method == "OPTIONS":
                await sink.start(204, [(b"allow", ALLOW)])
                return None
            raise MethodNotAllowed(f"{request.method} on a static file", headers=((b"allow", ALLOW),))
        # Dot files and dot directories (.git/, .env, .htpasswd) are never served.
        if any(segment.startswith(".") for segment in rel.split("/")):
            raise NotFound(f"hidden path {request.path!r}")
        full = os.path.join(base, rel) if rel else base
        try:
            real = os.path.realpath(full)
        except (OSError, ValueError):
            raise NotFound(f"cannot resolve {request.path!r}") from None
        if not _inside(real, base):
            raise Forbidden(f"{request.path!r} leaves the document root through a symlink")
        if any(_inside(real, d) for d in self._cgi_dirs.get(id(vhost), ())):
            raise Forbidden(f"{request.path!r} is in a CGI directory")
        try:
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no file for {request.path!r}") from None
        except OSError as exc:
            raise Forbidden(f"cannot stat {request.path!r}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            if not request.path.endswith("/"):
                location = request.raw_path + "/" + (f"?{request.query}" if request.query else "")
                await sink.start(301, [(b"location", location.encode("latin-1", "replace")),
                                       (b"content-length", b"0")])
                return None
            for name in index:
                candidate = os.path.join(real, name)
                try:
                    st = os.stat(candidate)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    real = candidate
                    break
            else:
                if autoindex:
                    await self._listing(request, sink, real)
                    return None
                raise Forbidden(f"directory {request.path!r} has no index file")
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{request.path!r} is not a regular file")
        await self._send_file(request, sink, real, st)
        return None

    @staticmethod
    def _base(vhost: VHost, route: Route | None, path: str) -> tuple[str | None, str, tuple[str, ...], bool]:
        if route is None:
            return vhost.root, path[1:], vhost.index, vhost.autoindex
        rel = path[len(route.prefix):] if path.startswith(route.prefix) else ""
        return route.directory, rel, route.index or vhost.index, route.autoindex

    async def _send_file(self, request: Request, sink: ResponseSink, path: str, st: os.stat_result) -> None:
        etag = conditional.make_etag(st)
        mtime = st.st_mtime
        size = st.st_size
        ctype = content_type(path)
        headers = [(b"content-type", ctype), (b"last-modified", http_date(mtime)), (b"etag", etag),
                   (b"accept-ranges", b"bytes")]
        verdict = conditional.evaluate(request.method, request.header, etag, mtime)
        if verdict is not None:
            if verdict == 304:
                await sink.start(304, [(b"last-modified", http_date(mtime)), (b"etag", etag)])
                return
            raise PreconditionFailed(f"precondition failed for {request.path!r}")
        spans: list[tuple[int, int]] | None = None
        range_header = request.header(b"range")
        if range_header is not None and request.method == "GET":
            if_range = request.header(b"if-range")
            if if_range is None or conditional.if_range_ok(if_range, etag, mtime):
                try:
                    spans = ranges.parse_range(range_header, size)
                except RangeNotSatisfiable as exc:
                    raise RangeNotSatisfiable(exc.detail, headers=((b"content-range", f"bytes */{size}".encode()),)) from None
        try:
            file = open(path, "rb")
        except OSError as exc:
            raise Forbidden(f"cannot open {request.path!r}: {exc.strerror}") from None
        with file:
            if spans is None:
                await sink.start(200, [*headers, (b"content-length", str(size).encode())])
                await sink.sendfile(file, 0, size)
            elif len(spans) == 1:
                first, last = spans[0]
                await sink.start(206, [*headers, (b"content-range", ranges.content_range(first, last, size)),
                                       (b"content-length", str(last - first + 1).encode())])
                await sink.sendfile(file, first, last - first + 1)
            else:
                await self._multipart(sink, file, headers, spans, size, ctype)

    @staticmethod
    async def _multipart(sink: ResponseSink, file: object, headers: list[tuple[bytes, bytes]],
                         spans: list[tuple[int, int]], size: int, ctype: bytes) -> None:
        boundary = os.urandom(12).hex().encode()
        parts, closing = ranges.multipart_parts(spans, size, ctype, boundary)
        length = sum(len(head) + last - first + 1 for head, first, last in parts) + len(closing)
        head = [(k, v) for k, v in headers if k != b"content-type"]
        await sink.start(206, [*head, (b"content-type", b"multipart/byteranges; boundary=" + boundary),
                               (b"content-length", str(length).encode())])
        for part_head, first, last in parts:
            await sink.write(part_head)
            await sink.sendfile(file, first, last - first + 1)  # type: ignore[arg-type]
        await sink.write(closing)

    @staticmethod
    async def _listing(request: Request, sink: ResponseSink, directory: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise Forbidden(f"cannot list {request.path!r}: {exc.strerror}") from None
        title = html.escape(request.path)
        rows = ['<a href="../">../</a>']
        for name in names:
            if name.startswith("."):
                continue
            is_dir = os.path.isdir(os.path.join(directory, name))
            shown = name + ("/" if is_dir else "")
            rows.append(f'<a href="{urllib.parse.quote(shown)}">{html.escape(shown)}</a>')
        body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n"
                f"<body><h1>Index of {title}</h1><hr><pre>\n" + "\n".join(rows) + "\n</pre><hr></body></html>\n").encode()
        await sink.start(200, [(b"content-type", b"text/html; charset=utf-8"),
                               (b"content-length", str(len(body)).encode())])
        await sink.write(body)
