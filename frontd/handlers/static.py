"""Static files: a vhost's `root` and `static` routes (aliases).

Nothing outside the directory is served. The request path is already decoded and normalised (no
dot segments, no encoded "/" or NUL: http/target.py); dot files and dot directories are refused;
the path is then walked one segment at a time with `lstat`, and every symlink met on the way is
resolved and must stay inside the directory (and lead to no dot file). The file finally opened
must be the very inode the walk found, so swapping a path component for a symlink between the
check and the open gains nothing. CGI directories are never served as files.

Nor is a script's source: a file whose name ends in one of the configuration's script extensions
(`Config.script_extensions`: every script-mode route's `extensions`, every CGI interpreter's) is
refused with 403, from any root, whether it was asked for by name or found as a directory's
index. Both the name asked for and the name of the file a symlink leads to count, compared
case-insensitively: `a.PHP` is a script to Apache's AddHandler and on a case-insensitive file
system. Listings still show such names (a name is not a source). Script-mode gateway routes send
the files under their `root` that are not scripts here (`serve_file`).

With `precompressed = true` (a static route or the vhost root), `a.css.zst`, `a.css.br` or
`a.css.gz` beside `a.css` is sent instead when the client accepts that coding and the encoded file
is a regular file not older than the original: with the original's Content-Type, its own
validators, ranges and conditionals, and `Vary: Accept-Encoding` on every answer for the file.

File bodies go to `sink.sendfile`: zero-copy and in constant memory (the connection copies only a
body small enough to leave in the same write as the head). The bytes of small files are kept per
worker (`[limits] file_cache_size`, handlers/file_cache.py) and written from there; every check
above still runs for each request, and the cache is keyed by the stat the walk returns. Several
ranges are coalesced by http/ranges.py and answered with the whole file when their multipart
framing would outweigh it.
"""

from __future__ import annotations

import html
import os
import stat
import time
import urllib.parse
from collections.abc import Awaitable
from typing import BinaryIO

from frontd.config.model import Config, Route, VHost
from frontd.errors import Forbidden, MethodNotAllowed, NotFound, PreconditionFailed
from frontd.handlers.file_cache import CachedFile, FileCache
from frontd.http import conditional, encoding, ranges
from frontd.http.dates import http_date
from frontd.http.mime import content_type
from frontd.http.target import is_hidden
from frontd.request import Request
from frontd.response import ResponseSink

ALLOW = b"GET, HEAD, OPTIONS"
# RFC 8615: /.well-known/ is meant to be served (ACME challenges, security.txt), unlike other
# dot names; dot files inside it are still refused.
VISIBLE_DOT_NAMES = frozenset({".well-known"})
# Request headers the handler looks at, collected in one pass over the header list.
_CONDITIONAL_HEADERS = frozenset({b"if-match", b"if-none-match", b"if-modified-since",
                                  b"if-unmodified-since", b"range", b"if-range"})
# The last component must not be a symlink (the walk resolved them all), and opening must never
# block (a FIFO swapped in is then refused by the inode check).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# precompressed: the coding of each suffix, in the order preferred when weights are equal.
PRECOMPRESSED = (("zstd", ".zst"), ("br", ".br"), ("gzip", ".gz"))
_PRECOMPRESSED_CODINGS = tuple(coding for coding, _ in PRECOMPRESSED)
_SUFFIXES = dict(PRECOMPRESSED)
_VARY = (b"vary", b"Accept-Encoding")
# Characters left as they are in a Location or a listing link; everything else is percent-encoded.
_URL_SAFE = "/!$&'()*+,;=:@-._~"


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _hidden_below(path: str, directory: str) -> bool:
    """Whether `path` (real, inside `directory`) names a dot file or lies in a dot directory."""
    return is_hidden(path[len(directory):], VISIBLE_DOT_NAMES)


class StaticHandler:
    """Serves GET and HEAD from a directory tree; OPTIONS is answered, other methods get 405."""

    def __init__(self, config: Config) -> None:
        self._script_extensions = config.script_extensions
        size = config.limits.file_cache_size
        self.cache = FileCache(size) if size > 0 else None
        # Per vhost, the CGI directories whose files must never go out as bytes.
        self._cgi_dirs: dict[int, tuple[str, ...]] = {
            id(vhost): tuple(route.directory for route in vhost.routes
                             if route.kind == "cgi" and route.directory)
            for vhost in config.vhosts
        }
        # `cgi = FILE` programs: never sent as bytes either, wherever they lie.
        self._cgi_programs = frozenset(os.path.realpath(route.program) for vhost in config.vhosts
                                       for route in vhost.routes if route.program is not None)
        # htpasswd files of `auth`: never sent, even when one lies under a root.
        self._password_files = frozenset(os.path.realpath(owner.auth.htpasswd) for vhost in config.vhosts
                                         for owner in (vhost, *vhost.routes) if owner.auth is not None)

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        vhost, route = request.vhost, request.route
        assert vhost is not None
        base, rel, index, autoindex = self._base(vhost, route, request.path)
        if base is None:
            raise NotFound("no root for this path")
        await self.serve(request, sink, base, rel, index, autoindex)

    async def serve_file(self, request: Request, sink: ResponseSink, base: str, rel: str) -> None:
        """A file under `base` that a script-mode gateway route found and that is not one of its
        scripts: served as a static file, under the same rules (Caddy's php_fastcgi does so)."""
        await self.serve(request, sink, base, rel, (), False)

    async def serve(self, request: Request, sink: ResponseSink, base: str, rel: str, index: tuple[str, ...],
                    autoindex: bool) -> None:
        """Serve `rel` (the decoded path below the root) from the directory `base`."""
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":
                # RFC 9110 §9.3.7: also the server-wide "OPTIONS *".
                await sink.start(204, [(b"allow", ALLOW)])
                return None
            raise MethodNotAllowed(f"{method} on a static file", headers=((b"allow", ALLOW),))
        # Dot files and dot directories (.git/, .env, .htpasswd) below the directory are never
        # served (a route's own prefix is the administrator's choice).
        if (rel.startswith(".") or "/." in rel) and is_hidden(rel, VISIBLE_DOT_NAMES):
            raise NotFound(f"hidden path {request.path!r}")
        path, st = self._walk(base, rel, request.path)
        cgi_dirs = self._cgi_dirs.get(id(request.vhost), ())
        if cgi_dirs and any(_inside(path, d) for d in cgi_dirs):
            raise Forbidden(f"{request.path!r} is in a CGI directory")
        if stat.S_ISDIR(st.st_mode):
            if not request.path.endswith("/"):
                await self._redirect_to_slash(request, sink)
                return None
            found = self._index(base, path, index)
            if found is None:
                if autoindex:
                    await self._listing(request, sink, path)
                    return None
                raise Forbidden(f"directory {request.path!r} has no index file")
            name, path, st = found
            if cgi_dirs and any(_inside(path, d) for d in cgi_dirs):
                raise Forbidden(f"{request.path!r}: the index file is in a CGI directory")
        elif request.path.endswith("/"):
            raise NotFound(f"{request.path!r}: a file asked for as a directory")
        else:
            name = rel.rpartition("/")[2]
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{request.path!r} is not a regular file")
        if self._script_extensions and self._is_script(name, path):
            raise Forbidden(f"{request.path!r}: {path} is a script ({' '.join(self._script_extensions)}); "
                            "its source is never served")
        if self._cgi_programs and path in self._cgi_programs:
            raise Forbidden(f"{request.path!r}: {path} is a CGI program; its bytes are never served")
        if self._password_files and path in self._password_files:
            raise Forbidden(f"{request.path!r}: {path} is an htpasswd file of auth; it is never served")
        cache = self.cache
        if cache is not None and not self._precompressed(request):
            # Keyed by the stat the walk just took: a changed, replaced or chmod-ed file misses.
            cached = cache.get(st)
            if cached is not None:
                await self.send_open_file(request, sink, path, None, st, cached=cached)
                return None
        await self._send_file(request, sink, path, st)
        return None

    @staticmethod
    def _precompressed(request: Request) -> bool:
        route = request.route
        return route.precompressed if route is not None else (request.vhost is not None
                                                               and request.vhost.precompressed)

    def _is_script(self, name: str, path: str) -> bool:
        """Whether the name asked for, or that of the file it leads to, ends in a script extension."""
        extensions = self._script_extensions
        return name.lower().endswith(extensions) or path.lower().endswith(extensions)

    @staticmethod
    def _base(vhost: VHost, route: Route | None, path: str) -> tuple[str | None, str, tuple[str, ...], bool]:
        """(directory, path relative to it, index names, autoindex) for a request path."""
        if route is None:
            return vhost.root, path[1:], vhost.index, vhost.autoindex
        rel = path[len(route.prefix):] if path.startswith(route.prefix) else ""
        return route.directory, rel, route.index or vhost.index, route.autoindex

    @staticmethod
    def _walk(base: str, rel: str, shown: str) -> tuple[str, os.stat_result]:
        """The real path and lstat of `rel` under `base`, one segment at a time.

        Cheaper than `os.path.realpath` (one lstat per segment below the root, none above it),
        and each symlink met is resolved and checked at once: it must stay inside `base` and
        not lead to a dot file.
        """
        path = base
        try:
            st = os.stat(base) if not rel.strip("/") else None
            for segment in rel.split("/"):
                if not segment:
                    continue
                path = f"{path}/{segment}" if path != "/" else f"/{segment}"
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    path = os.path.realpath(path)
                    if not _inside(path, base):
                        raise Forbidden(f"{shown!r} leaves the document root through a symlink")
                    if _hidden_below(path, base):
                        raise NotFound(f"{shown!r} is a symlink to a hidden path")
                    st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no file for {shown!r}") from None
        except OSError as exc:
            # ENAMETOOLONG, ELOOP, EACCES: nothing a client can be told more about.
            raise NotFound(f"cannot look up {shown!r}: {exc.strerror}") from None
        assert st is not None
        return path, st

    @staticmethod
    def _index(base: str, directory: str, names: tuple[str, ...]) -> tuple[str, str, os.stat_result] | None:
        """The first index file of a directory that is a regular file inside `base`: its name,
        its real path and its stat."""
        for name in names:
            candidate = f"{directory}/{name}"
            try:
                st = os.lstat(candidate)
                if stat.S_ISLNK(st.st_mode):
                    candidate = os.path.realpath(candidate)
                    if not _inside(candidate, base) or _hidden_below(candidate, base):
                        continue
                    st = os.stat(candidate)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                return name, candidate, st
        return None

    @staticmethod
    async def _redirect_to_slash(request: Request, sink: ResponseSink) -> None:
        # Built from the normalised path, not the raw one: "//evil.test" must not become the
        # scheme-relative "//evil.test/" (an open redirect), nor "/a/../b" keep its dot segments.
        location = urllib.parse.quote(request.path, safe=_URL_SAFE) + "/"
        if request.query:
            location += "?" + request.query
        await sink.start(301, [(b"location", location.encode("ascii")), (b"content-length", b"0")])

    async def _send_file(self, request: Request, sink: ResponseSink, path: str, lst: os.stat_result) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise Forbidden(f"cannot open {request.path!r}: {exc.strerror}") from None
        try:
            # Wrapping the descriptor (rather than an `opener`) spares an ioctl(FIOCLEX).
            file = open(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        with file:
            st = os.fstat(file.fileno())
            # The inode the walk checked, still a regular file (see the module docstring).
            if (st.st_ino, st.st_dev) != (lst.st_ino, lst.st_dev) or not stat.S_ISREG(st.st_mode):
                raise NotFound(f"{request.path!r} changed while it was being opened")
            if self._precompressed(request):
                await self._send_precompressed(request, sink, path, file, st)
                return
            cache = self.cache
            if cache is not None and cache.wanted(st):
                cached = cache.put(st, os.pread(fd, st.st_size, 0))
                if cached is not None:
                    await self.send_open_file(request, sink, path, None, st, cached=cached)
                    return
            await self.send_open_file(request, sink, path, file, st)

    async def _send_precompressed(self, request: Request, sink: ResponseSink, path: str, file: BinaryIO,
                                  st: os.stat_result) -> None:
        """The best encoded sibling the client accepts (see the module docstring), else the file."""
        accept = request.header(b"accept-encoding")
        weights = encoding.parse_accept_encoding(accept) if accept is not None else {}
        ranked = sorted((coding for coding in _PRECOMPRESSED_CODINGS if encoding.acceptable(weights, coding) > 0),
                        key=lambda coding: -encoding.acceptable(weights, coding))
        for coding in ranked:
            try:
                # The sibling is in the directory the walk checked; it must not be a symlink.
                fd = os.open(path + _SUFFIXES[coding], _OPEN_FLAGS)
            except OSError:
                continue
            with open(fd, "rb", buffering=0) as encoded:
                est = os.fstat(fd)
                if not stat.S_ISREG(est.st_mode) or est.st_mtime < st.st_mtime:
                    continue  # not a file, or stale: older than the original
                await self.send_open_file(request, sink, path, encoded, est,
                                           extra=((b"content-encoding", coding.encode()), _VARY))
                return
        await self.send_open_file(request, sink, path, file, st, extra=(_VARY,))

    async def send_open_file(self, request: Request, sink: ResponseSink, path: str, file: BinaryIO | None,
                              st: os.stat_result, extra: tuple[tuple[bytes, bytes], ...] = (), *,
                              cached: CachedFile | None = None) -> None:
        """`file` (of stat `st`) as the content of `path`: its type is the name's, its validators
        and length the file's own. `extra` fields go on every answer (200, 206, 304). `cached`,
        when given, is the file kept in memory, sent instead of `file`."""
        def body(offset: int, count: int) -> Awaitable[None]:
            if cached is not None:
                return sink.write(cached.data[offset:offset + count])
            assert file is not None
            return sink.sendfile(file, offset, count)

        fields: dict[bytes, bytes] = {}
        for name, value in request.headers:
            if name in _CONDITIONAL_HEADERS:
                # RFC 9110 §5.3: several lines of a list-based field are one comma-separated list.
                fields[name] = fields[name] + b", " + value if name in fields else value
        size = st.st_size
        mtime = st.st_mtime
        if cached is not None:
            etag, last_modified = cached.etag, cached.last_modified
        else:
            etag, last_modified = conditional.make_etag(st), http_date(mtime)
        ctype = content_type(path)
        headers = [(b"content-type", ctype), (b"last-modified", last_modified), (b"etag", etag),
                   (b"accept-ranges", b"bytes"), *extra]
        if fields:
            verdict = conditional.evaluate(request.method, fields.get, etag, mtime)
            if verdict == 304:
                # RFC 9110 §15.4.5: a 304 carries the validators a 200 would have.
                await sink.start(304, [(b"last-modified", last_modified), (b"etag", etag), *extra])
                return
            if verdict is not None:
                raise PreconditionFailed(f"precondition failed for {request.path!r}")
        spans: list[tuple[int, int]] | None = None
        range_header = fields.get(b"range")
        # RFC 9110 §14.2: Range is only defined for GET; for HEAD the server ignores it.
        if range_header is not None and request.method == "GET":
            if_range = fields.get(b"if-range")
            if if_range is None or conditional.if_range_ok(if_range, etag, mtime, now=time.time()):
                spans = ranges.parse_range(range_header, size)
        if spans is not None and len(spans) > 1:
            boundary = ranges.make_boundary()
            parts, closing = ranges.multipart_parts(spans, size, ctype, boundary)
            length = ranges.multipart_length(parts, closing)
            if length < size:
                head = [(k, v) for k, v in headers if k != b"content-type"]
                await sink.start(206, [*head, (b"content-type", ranges.multipart_content_type(boundary)),
                                       (b"content-length", b"%d" % length)])
                for part_head, first, last in parts:
                    await sink.write(part_head)
                    await body(first, last - first + 1)
                await sink.write(closing)
                return
            # Small ranges whose part heads outweigh the bytes asked for: the whole file costs
            # less (RFC 9110 §14.2 lets a server ignore Range), so nothing is ever amplified.
            spans = None
        if spans is None:
            headers.append((b"content-length", b"%d" % size))
            await sink.start(200, headers)
            # The sink sends the bytes zero-copy, or copies a small body into the head's write;
            # for HEAD it sends nothing.
            await body(0, size)
        else:
            first, last = spans[0]
            headers += [(b"content-range", ranges.content_range(first, last, size)),
                        (b"content-length", b"%d" % (last - first + 1))]
            await sink.start(206, headers)
            await body(first, last - first + 1)

    @staticmethod
    async def _listing(request: Request, sink: ResponseSink, directory: str) -> None:
        try:
            # Hidden names are not listed, nor names that are not UTF-8: no request path can
            # name them (http/target.py decodes paths as strict UTF-8).
            entries = sorted((entry.name, entry.is_dir()) for entry in os.scandir(directory)
                             if not entry.name.startswith(".") and entry.name.isprintable()
                             and not _has_surrogates(entry.name))
        except OSError as exc:
            raise Forbidden(f"cannot list {request.path!r}: {exc.strerror}") from None
        title = html.escape(request.path)
        rows = ['<a href="../">../</a>']
        for name, is_dir in entries:
            shown = name + ("/" if is_dir else "")
            # Percent-encoded for the URL (":" too, so no name reads as a scheme), escaped for
            # the HTML text.
            href = html.escape(urllib.parse.quote(shown, safe="/"))
            rows.append(f'<a href="{href}">{html.escape(shown)}</a>')
        body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n"
                f"<body><h1>Index of {title}</h1><hr><pre>\n" + "\n".join(rows)
                + "\n</pre><hr></body></html>\n").encode()
        await sink.start(200, [(b"content-type", b"text/html; charset=utf-8"),
                               (b"content-length", b"%d" % len(body))])
        await sink.write(body)


def _has_surrogates(name: str) -> bool:
    """Whether os.scandir decoded a name that is not UTF-8 (surrogateescape, PEP 383)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
