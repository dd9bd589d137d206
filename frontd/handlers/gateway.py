"""The handler of gateway routes (cgi, fastcgi, scgi, uwsgi): from a URL to an exchange.

Each kind first works out where the request lands (`ScriptPaths`: SCRIPT_NAME, PATH_INFO,
SCRIPT_FILENAME), then runs the one core, `frontd.gateway.exchange.exchange`, with the kind's
transport:

- `cgi = DIR`: the path after the prefix is walked under DIR segment by segment; the first
  regular file is the script and the rest is PATH_INFO (RFC 3875 §3.3, §4.1.5); a directory
  runs its first `index` script, if the route names any. Nothing outside DIR is ever run: the
  path arrives decoded once and free of dot segments (`http/target.py`), hidden names are
  refused, and a symlink is followed only if it stays inside DIR. A file without the execute
  bit (and no interpreter for its extension) is a 403, a directory without an index a 403, a
  missing name a 404: never a listing, never the script's source.
- `cgi = FILE`: that one program for every path under the prefix (Apache's ScriptAlias to a
  file, as `git http-backend` wants): SCRIPT_NAME is the prefix without its trailing "/",
  PATH_INFO the rest of the path, SCRIPT_FILENAME the program.
- `fastcgi`/`scgi`/`uwsgi` without `root` (an application mount): SCRIPT_NAME is the prefix
  without its trailing "/", PATH_INFO the rest of the path. With `root` (script mode, php-fpm
  and fcgiwrap): the same walk as CGI under `root`, `index` names for a directory, no
  execute bit needed; a missing script is a 404. The script found must also end in one of the
  route's `extensions` (by default those of its `index` names): `/upload/a.jpg/x.php` finds
  the picture, which is then a 404 from frontd, never a request that leaves the backend to
  decide whether to run a picture as PHP (CVE-2019-11043's setup, php-fpm's
  `security.limit_extensions`). A path that ends at such a file (`/upload/a.jpg`) is served
  as a static file instead (`NotAScript`), so that one route serves an application's scripts
  and its pictures, as Caddy's `php_fastcgi` does.

Transports for the socket gateways are registered by kind (`GatewayHandler.register`, or the
`transports` argument): a factory `(route, request) -> Transport` that does not connect yet.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from frontd.config.model import GATEWAY_KINDS, Config, Route
from frontd.errors import BadGateway, Forbidden, NotFound, ServiceUnavailable
from frontd.gateway.cgi import CGITransport, ProcessSlots
from frontd.gateway.environ import ScriptPaths, build_environ, environ_pairs
from frontd.gateway.exchange import Transport, exchange
from frontd.gateway.spool import open_body
from frontd.handlers.x_sendfile import XSendfile
from frontd.http.file_answer import FileAnswer
from frontd.request import Request
from frontd.response import LocalRedirect, ResponseSink

TransportFactory = Callable[[Route, Request], Transport]
# Serves a file under a directory as a static file: (request, sink, directory, relative path).
StaticFiles = Callable[[Request, ResponseSink, str, str], Awaitable[None]]

NPH_PREFIX = "nph-"  # RFC 3875 §5: the conventional mark of a non-parsed-header script


@dataclass(frozen=True, slots=True)
class ScriptMatch:
    """A script found under a directory for a request path."""

    filename: str  # resolved path of the script file (SCRIPT_FILENAME, what is executed)
    script_name: str  # SCRIPT_NAME: the prefix and the segments up to the script, decoded
    path_info: str  # PATH_INFO: "" or "/" and the remaining segments, decoded


class NotAScript(NotFound):
    """The path ends at an existing regular file that does not end in the route's `extensions`
    (nothing follows it): a 404 for the backend, a static file for a script-mode route."""

    def __init__(self, detail: str, rel: str) -> None:
        super().__init__(detail)
        self.rel = rel  # the file's path below the directory, as requested


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _lookup(candidate: str, directory: str, path: str) -> tuple[str, os.stat_result]:
    """lstat a path under `directory`; a symlink is followed only if it stays inside."""
    try:
        st = os.lstat(candidate)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(candidate)
            if not _inside(real, directory):
                raise Forbidden(f"{path!r} leaves {directory} through a symlink")
            return real, os.stat(real)
        return candidate, st
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no script for {path!r}") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise NotFound(f"no script for {path!r}: {exc.strerror}") from None
        raise Forbidden(f"cannot look up {path!r}: {exc.strerror}") from None


def find_script(directory: str, prefix: str, path: str, index: tuple[str, ...] = (),
                extensions: tuple[str, ...] = ()) -> ScriptMatch:
    """Walk `path` (decoded, normalised) below `prefix` under `directory` (a real path).

    The first regular file is the script; the remaining segments are PATH_INFO. A path that
    ends at a directory takes the first of `index` found there, else it is a 403. Raises
    NotFound for a missing or hidden name and Forbidden for anything that is not a regular
    file or a symlink leading out of `directory`. With `extensions`, a script whose name (as
    requested, and once symlinks are resolved) ends in none of them is a 404 and an index
    name that ends in none of them is skipped; when the path ends at such a file, the 404 is
    a `NotAScript`.
    """
    rel = path[len(prefix):] if path.startswith(prefix) else ""
    segments = rel.split("/") if rel else []
    current = directory
    for i, segment in enumerate(segments):
        if not segment:
            break  # a trailing "/": the path names a directory
        if segment.startswith("."):
            # Dot files (.htaccess, .git) are never scripts, as they are never static files.
            raise NotFound(f"hidden path {path!r}")
        real, st = _lookup(os.path.join(current, segment), directory, path)
        if stat.S_ISDIR(st.st_mode):
            current = real
            continue
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden(f"{path!r} is not a regular file")
        if extensions and not (segment.endswith(extensions) and real.endswith(extensions)):
            # PROTOCOLS.md §4, CVE-2019-11043 row: `/upload/a.jpg/x.php` finds the picture, and
            # the backend must not be asked to run it: a 404, as for a missing script.
            detail = f"{path!r}: script {real} does not end in {' or '.join(extensions)}"
            if i == len(segments) - 1 and not segment.endswith(extensions):
                # Nothing after it, and not named like a script (a symlink `x.php` to a
                # picture stays a 404): a file the caller may serve as a static file.
                raise NotAScript(detail, "/".join(segments))
            raise NotFound(detail)
        rest = segments[i + 1:]
        return ScriptMatch(filename=real, script_name=prefix + "/".join(segments[:i + 1]),
                           path_info="/" + "/".join(rest) if rest else "")
    base = prefix + rel
    if rel and not rel.endswith("/"):
        base += "/"
    for name in index:
        if extensions and not name.endswith(extensions):
            continue
        try:
            real, st = _lookup(os.path.join(current, name), directory, path)
        except NotFound:
            continue
        if stat.S_ISREG(st.st_mode) and (not extensions or real.endswith(extensions)):
            return ScriptMatch(filename=real, script_name=base + name, path_info="")
    raise Forbidden(f"{path!r} is a directory")


def mount_paths(request: Request, route: Route) -> ScriptPaths:
    """An application mounted at the route's prefix: SCRIPT_NAME = prefix, PATH_INFO = the rest."""
    prefix = route.prefix
    script_name = prefix[:-1]
    path = request.path
    path_info = path[len(script_name):] if path.startswith(prefix) else ""
    root = request.vhost.root if request.vhost is not None and request.vhost.root else ""
    return ScriptPaths(script_name=script_name, path_info=path_info, document_root=root)


@dataclass(slots=True)
class _RouteSetup:
    """What a gateway route needs per request, worked out once per worker."""

    extra: tuple[tuple[bytes, bytes], ...]  # PATH (CGI) and the route's env, as bytes
    interpreters: dict[str, str]
    slots: ProcessSlots


class GatewayHandler:
    """Serves cgi routes itself and fastcgi/scgi/uwsgi routes through registered transports."""

    def __init__(self, config: Config, transports: Mapping[str, TransportFactory] | None = None,
                 static: StaticFiles | None = None, files: XSendfile | None = None) -> None:
        self.limits = config.limits
        self.transports: dict[str, TransportFactory] = dict(transports or {})
        # What serves the files of a script-mode route that are not scripts (else they are 404s).
        self.static = static
        self.files = files  # what acts on X-Sendfile / X-Accel-Redirect (routes with x_sendfile)
        self._routes: dict[int, _RouteSetup] = {}
        for vhost in config.vhosts:
            for route in vhost.routes:
                if route.kind != "cgi" and route.kind not in GATEWAY_KINDS:
                    continue
                extra = environ_pairs(route.env)
                if route.kind == "cgi":
                    extra = ((b"PATH", route.path_env.encode()), *extra)
                # The dispatcher (and so this handler) is built in each worker: the count of
                # processes is per worker, as max_processes is.
                self._routes[id(route)] = _RouteSetup(extra, dict(route.interpreters),
                                                      ProcessSlots(route.max_processes))

    def close(self) -> None:
        """Worker shutdown: transport factories that pool backend connections (a `close`
        method, as `FastCGIGateway` has) close them."""
        for factory in self.transports.values():
            close = getattr(factory, "close", None)
            if close is not None:
                close()

    def register(self, kind: str, factory: TransportFactory) -> None:
        """Serve `kind` routes ("fastcgi", "scgi", "uwsgi") through transports from `factory`."""
        self.transports[kind] = factory

    async def handle(self, request: Request, sink: ResponseSink) -> LocalRedirect | None:
        route = request.route
        assert route is not None
        setup = self._routes[id(route)]
        if route.kind == "cgi":
            return await self._cgi(request, sink, route, setup)
        factory = self.transports.get(route.kind)
        if factory is None:
            raise BadGateway(f"no transport for {route.kind} routes")
        if route.root:
            try:
                match = find_script(route.root, route.prefix, request.path, route.index, route.extensions)
            except NotAScript as exc:
                if self.static is None:
                    raise
                await self.static(request, sink, route.root, exc.rel)
                return None
            paths = ScriptPaths(match.script_name, match.path_info, route.root, match.filename)
        else:
            paths = mount_paths(request, route)
        return await self._run(request, sink, route, setup, paths, factory(route, request))

    async def _cgi(self, request: Request, sink: ResponseSink, route: Route,
                   setup: _RouteSetup) -> LocalRedirect | None:
        if route.program is not None:
            # One program for the whole prefix: SCRIPT_NAME is the prefix, PATH_INFO the rest.
            mount = mount_paths(request, route)
            match = ScriptMatch(route.program, mount.script_name, mount.path_info)
            name = route.program
        else:
            assert route.directory is not None
            match = find_script(route.directory, route.prefix, request.path, route.index)
            name = match.script_name
        script = match.filename
        interpreter = setup.interpreters.get(os.path.splitext(name)[1]) if setup.interpreters else None
        if interpreter is not None:
            argv = [interpreter, script]
        elif os.access(script, os.X_OK):
            # RFC 3875 §4.4 and CVE-2012-1823: argv is the script alone, never query words.
            argv = [script]
        else:
            raise Forbidden(f"{script} is not executable")
        if setup.slots.full:
            # Checked before a chunked body is spooled for nothing; `open` takes the slot.
            raise ServiceUnavailable(f"cgi {script}: max_processes ({setup.slots.limit}) reached")
        vhost = request.vhost
        paths = ScriptPaths(match.script_name, match.path_info,
                            vhost.root if vhost is not None and vhost.root else "", script)
        transport = CGITransport(argv, os.path.dirname(script), script=script, slots=setup.slots,
                                 log_context=request.log_context(), timeout=route.timeout)
        nph = os.path.basename(name).startswith(NPH_PREFIX)
        return await self._run(request, sink, route, setup, paths, transport, nph=nph)

    async def _run(self, request: Request, sink: ResponseSink, route: Route, setup: _RouteSetup,
                   paths: ScriptPaths, transport: Transport, *, nph: bool = False) -> LocalRedirect | None:
        # Before the exchange: with request buffering (the default) no process is spawned and
        # no backend connected until the whole body is here (issue 13 §1).
        body = await open_body(request, self.limits.max_body_size, buffering=route.request_buffering)
        try:
            environ = build_environ(request, paths, content_length=body.length,
                                    pass_authorization=route.pass_authorization, extra=setup.extra)
            result = await exchange(request, sink, transport, environ, body, timeout=route.timeout,
                                    send_timeout=self.limits.send_timeout, nph=nph,
                                    buffer_response=route.response_buffering,
                                    x_sendfile=bool(route.x_sendfile) and self.files is not None)
        finally:
            body.close()
        if isinstance(result, FileAnswer):  # the application is released already
            assert self.files is not None
            return await self.files.answer(request, sink, route, result, transport.name)
        return result
