"""`[[vhost.route]]` tables: prefix, kind, backends, proxy targets, CGI, env and interpreters."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from frontd.config.access import ACCESS_KEYS
from frontd.config.address import parse_proxy_url
from frontd.config.model import GATEWAY_KINDS, ROUTE_KINDS, ErrorPages, ProxyTarget, Route, VHost
from frontd.config.rules import RulesSection
from frontd.config.spawn import SpawnSection
from frontd.config.units import show
from frontd.config.values import EXTENSION_RE, words

DEFAULT_PROXY_KEEPALIVE = 8
# Which kinds of route each option applies to; an option on any other kind is an error.
ROUTE_OPTIONS: dict[str, tuple[str, ...]] = {
    "root": GATEWAY_KINDS,
    "index": ("static", "cgi", *GATEWAY_KINDS),
    "extensions": GATEWAY_KINDS,
    "timeout": ("cgi", *GATEWAY_KINDS, "proxy"),
    "connect_timeout": (*GATEWAY_KINDS, "proxy"),
    "env": ("cgi", *GATEWAY_KINDS, "proxy"),  # on proxy routes only with spawn
    "interpreters": ("cgi",),
    "path": ("cgi",),
    "max_processes": ("cgi",),
    "pass_authorization": ("cgi", *GATEWAY_KINDS),
    "keepalive": ("fastcgi", "proxy"),
    "keepalive_timeout": ("fastcgi", "proxy"),
    "host": ("proxy",),
    "autoindex": ("static",),
    # Spawned backends (docs/spawn.md); all but spawn itself only go with spawn.
    "spawn": (*GATEWAY_KINDS, "proxy"),
    "processes": (*GATEWAY_KINDS, "proxy"),
    "cwd": (*GATEWAY_KINDS, "proxy"),
    "user": (*GATEWAY_KINDS, "proxy"),
    "socket": (*GATEWAY_KINDS, "proxy"),
    # Output rules (docs/rules.md); set on the vhost too, the route's overriding it.
    "headers": ROUTE_KINDS,
    "compress": ROUTE_KINDS,
    "compress_types": ROUTE_KINDS,
    "compress_min_size": ROUTE_KINDS,
    "precompressed": ("static",),
    # Site rules (docs/rules.md).
    "status": ("redirect",),
    "try_files": ("static", *GATEWAY_KINDS),  # gateway routes in script mode (with root)
    "error_pages": ROUTE_KINDS,
    "intercept_errors": ("cgi", *GATEWAY_KINDS, "proxy"),
    # Issue 13 §1: the whole request body received before a process or backend is involved.
    "request_buffering": ("cgi", *GATEWAY_KINDS, "proxy"),
    # ... and the application's output read as fast as it comes (never for NPH scripts).
    "response_buffering": ("cgi", *GATEWAY_KINDS, "proxy"),
    # X-Sendfile / X-Accel-Redirect (docs/gateways.md): files the backend may name, and the
    # static routes only such internal redirects reach.
    "x_sendfile": ("cgi", *GATEWAY_KINDS, "proxy"),
    "internal": ("static",),
}
# The order in which messages list the kinds.
KIND_ORDER: tuple[str, ...] = ("cgi", "fastcgi", "scgi", "uwsgi", "proxy", "static", "redirect")
ROUTE_KEYS: tuple[str, ...] = ("prefix", *ROUTE_KINDS, *ROUTE_OPTIONS, *ACCESS_KEYS, "authorizer")
_ROUTE_DEFAULTS = Route(prefix="/", kind="static")
_HOST_HEADER_RE = re.compile(r"[A-Za-z0-9._~\-\[\]:]+")


def script_extensions(vhosts: tuple[VHost, ...]) -> tuple[str, ...]:
    """The names no static root serves (CONFIG.md, "Script extensions"): the `extensions` of every
    script-mode route in the file and every CGI `interpreters` extension, lower-cased (they are
    refused whatever their case), longest first, each once."""
    found: set[str] = set()
    for vhost in vhosts:
        for route in vhost.routes:
            if route.root is not None:
                found.update(ext.lower() for ext in route.extensions)
            found.update(ext.lower() for ext, _ in route.interpreters)
    return tuple(sorted(found, key=lambda ext: (-len(ext), ext)))


def index_extensions(index: tuple[str, ...]) -> tuple[str, ...]:
    """The default `extensions` of a script-mode route: those of its index names, in order
    (["index.php"] -> (".php",)); () (any file) when none has one (fcgiwrap's CGI scripts)."""
    found: list[str] = []
    for name in index:
        ext = os.path.splitext(name)[1]
        if ext and ext not in found:
            found.append(ext)
    return tuple(found)


class RoutesSection(RulesSection, SpawnSection):
    """`[[vhost.route]]`: one route of any kind and the options that apply to it."""

    def route(
        self, table: dict[str, object], path: str, vhost_index: tuple[str, ...], vhost_autoindex: bool,
        vhost_pages: ErrorPages = (),
    ) -> Route:
        self.check_keys(table, ROUTE_KEYS, path)
        if "prefix" not in table:
            self.fail(path, 'missing key "prefix"')
        prefix = self.prefix(table["prefix"], f"{path}.prefix")
        kinds = [kind for kind in KIND_ORDER if kind in table]
        exactly = f"exactly one of {', '.join(KIND_ORDER)}"
        if not kinds:
            self.fail(path, f"route has no kind; set {exactly}")
        if len(kinds) == 2:
            self.fail(path, f"route has both {kinds[0]} and {kinds[1]}; {exactly}")
        if len(kinds) > 2:
            self.fail(path, f"route has {words(kinds)}; {exactly}")
        kind = kinds[0]
        for option, applies in ROUTE_OPTIONS.items():
            if option in table and kind not in applies:
                routes = [k for k in KIND_ORDER if k in applies]
                self.fail(
                    f"{path}.{option}",
                    f"not an option of {kind} routes (only of {words(routes)} routes)",
                )

        def key(name: str) -> str:
            return f"{path}.{name}"

        values: dict[str, Any] = {"prefix": prefix, "kind": kind}
        target = table[kind]
        if kind in ROUTE_OPTIONS["spawn"] and self.spawn(table, path, kind, values):
            pass  # backends or proxy: the socket frontd creates
        elif kind == "cgi":
            values.update(self.cgi_target(target, key(kind)))
        elif kind == "static":
            values["directory"] = self.directory(target, key(kind))
        elif kind == "proxy":
            values["proxy"] = self.proxy(target, key(kind))
        elif kind == "redirect":
            values["redirect"] = self.redirect_url(target, key(kind))
            if "status" in table:
                values["redirect_status"] = self.redirect_status(table["status"], key("status"))
        else:
            values["backends"] = self.backends(target, key(kind))

        if "root" in table:
            values["root"] = self.directory(table["root"], key("root"))
        if "index" in table:
            if kind in GATEWAY_KINDS and "root" not in table:
                self.fail(key("index"), "only applies with root (script mode)")
            if "program" in values:
                self.fail(key("index"), "only applies to cgi = DIR (a directory of scripts), "
                          "not to one program")
            values["index"] = self.file_names(table["index"], key("index"))
        elif kind == "static":
            values["index"] = vhost_index
        if "extensions" in table:
            if "root" not in table:
                self.fail(key("extensions"), "only applies with root (script mode)")
            values["extensions"] = self.extensions(table["extensions"], key("extensions"))
        elif "root" in table:
            values["extensions"] = index_extensions(values.get("index", ()))
        if "autoindex" in table:
            values["autoindex"] = self.boolean(table["autoindex"], key("autoindex"))
        elif kind == "static":
            values["autoindex"] = vhost_autoindex
        for name in ("timeout", "connect_timeout"):
            if name in table:
                values[name] = self.duration(table[name], key(name), positive=True)
        if "env" in table:
            values["env"] = self.env(table["env"], key("env"))
        if "path" in table:
            values["path_env"] = self.string(table["path"], key("path"), "a PATH string")
        if "interpreters" in table:
            search: str = values.get("path_env", _ROUTE_DEFAULTS.path_env)
            values["interpreters"] = self.interpreters(
                table["interpreters"], key("interpreters"), search
            )
        if "program" in values:
            self.check_cgi_program(values["program"], dict(values.get("interpreters", ())), key(kind))
        if "max_processes" in table:
            values["max_processes"] = self.integer(table["max_processes"], key("max_processes"), 1)
        if "pass_authorization" in table:
            values["pass_authorization"] = self.boolean(
                table["pass_authorization"], key("pass_authorization")
            )
        if "keepalive" in table:
            values["keepalive"] = self.integer(table["keepalive"], key("keepalive"), 0)
        elif kind == "proxy":
            values["keepalive"] = DEFAULT_PROXY_KEEPALIVE
        if "keepalive_timeout" in table:
            values["keepalive_timeout"] = self.duration(table["keepalive_timeout"], key("keepalive_timeout"),
                                                        positive=True)
        if "host" in table:
            host = self.string(table["host"], key("host"), "a Host header value")
            if not _HOST_HEADER_RE.fullmatch(host):
                self.fail(key("host"), f"bad Host header value {show(host)}")
            values["host"] = host
        if "try_files" in table:
            if kind in GATEWAY_KINDS and "root" not in table:
                self.fail(key("try_files"), "only applies with root (script mode): the files it tries are under it")
            values["try_files"] = self.try_files(table["try_files"], key("try_files"))
        if "error_pages" in table or vhost_pages:
            own = self.error_pages(table["error_pages"], key("error_pages")) if "error_pages" in table else ()
            values["error_pages"] = tuple(sorted({**dict(vhost_pages), **dict(own)}.items()))
        if "request_buffering" in table:
            values["request_buffering"] = self.boolean(table["request_buffering"], key("request_buffering"))
        if "response_buffering" in table:
            values["response_buffering"] = self.boolean(table["response_buffering"], key("response_buffering"))
        if "x_sendfile" in table:
            values["x_sendfile"] = self.x_sendfile_dirs(table["x_sendfile"], key("x_sendfile"))
        if "internal" in table:
            values["internal"] = self.boolean(table["internal"], key("internal"))
        if "intercept_errors" in table:
            values["intercept_errors"] = self.boolean(table["intercept_errors"], key("intercept_errors"))
            if values["intercept_errors"] and not values.get("error_pages"):
                self.fail(key("intercept_errors"), "no error_pages on the route or its vhost to serve instead")
        return Route(**values)

    def prefix(self, value: object, key: str) -> str:
        """A path prefix of whole segments, always ending in "/": "/app" and "/app/" are the same."""
        prefix = self.string(value, key, 'a path such as "/app/"')
        if not prefix.startswith("/"):
            self.fail(key, f'must start with "/", got {show(prefix)}')
        if any(ord(c) < 0x20 or c in "\x7f?#" for c in prefix):
            self.fail(
                key,
                "must be a plain path, without query, fragment or control characters, "
                f"got {show(prefix)}",
            )
        if "%" in prefix:
            # Routes match the percent-decoded path, so an encoded prefix could never match.
            self.fail(key, f'write the path decoded ("/a b/", not "/a%20b/"), got {show(prefix)}')
        if not prefix.endswith("/"):
            prefix += "/"
        segments = prefix[1:-1].split("/")
        if prefix != "/" and any(s in ("", ".", "..") for s in segments):
            self.fail(key, f'must not contain empty, "." or ".." segments, got {show(value)}')
        return prefix

    def x_sendfile_dirs(self, value: object, key: str) -> tuple[str, ...]:
        """The directories whose files a backend may name in X-Sendfile: absolute as written (a
        relative one would depend on where frontd starts), existing, with symlinks resolved."""
        found: list[str] = []
        for item, item_key in self.one_or_more(value, key, "an absolute directory", "absolute directories"):
            text = self.string(item, item_key, "an absolute directory")
            if not text.startswith("/"):
                self.fail(item_key, f"must be an absolute directory, got {show(text)}")
            directory = self.directory(text, item_key)
            if directory not in found:
                found.append(directory)
        return tuple(found)

    def proxy(self, value: object, key: str) -> tuple[ProxyTarget, ...]:
        targets: list[ProxyTarget] = []
        for item, item_key in self.one_or_more(value, key, "an http:// URL", "http:// URLs"):
            text = self.string(item, item_key, "an http:// URL")
            target = parse_proxy_url(text, self.where(item_key), self.base_dir)
            if any(t.address == target.address for t in targets):
                self.fail(item_key, f'"{target.address}" is listed twice')
            if targets and target.path != targets[0].path:
                self.fail(
                    item_key,
                    "every URL of one route must have the same path, "
                    f"got {show(target.path or '')} after {show(targets[0].path or '')}",
                )
            targets.append(target)
        return tuple(targets)

    def interpreters(self, value: object, key: str, search_path: str) -> tuple[tuple[str, str], ...]:
        """Extension -> interpreter; a bare program name is looked up in the route's PATH now."""
        table = self.table(value, key)
        pairs: list[tuple[str, str]] = []
        for ext, item in table.items():
            item_key = f"{key}.{show(ext)}"  # TOML quotes a key such as ".py"
            if not EXTENSION_RE.fullmatch(ext):
                self.fail(key, f'an extension must start with "." and contain no "/", got {show(ext)}')
            program = self.string(item, item_key, "an interpreter path")
            if "/" in program:
                found = os.path.normpath(os.path.join(self.base_dir, program))
            else:
                which = shutil.which(program, path=search_path)
                if which is None:
                    self.fail(item_key, f"{show(program)} is not found in PATH {show(search_path)}")
                found = which
            if not os.path.isfile(found) or not os.access(found, os.X_OK):
                self.fail(item_key, f"{show(found)} is not an executable file")
            pairs.append((ext, found))
        return tuple(pairs)

    def cgi_target(self, value: object, key: str) -> dict[str, str]:
        """`cgi = DIR`, scripts under it, or `cgi = FILE`, one program for every path under the
        prefix (Apache's ScriptAlias to a file): {"directory": real path} or {"program": path}.

        A program keeps the path as written (made absolute), symlinks and all: a multi-call
        binary tells what to do from its name.
        """
        text = self.string(value, key, "a directory or program path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if os.path.isfile(path):
            return {"program": path}
        if not os.path.exists(path):
            self.fail(key, f"directory or program {show(path)} does not exist")
        if not os.path.isdir(path):
            self.fail(key, f"{show(path)} is neither a directory nor a regular file")
        return {"directory": os.path.realpath(path)}

    def check_cgi_program(self, program: str, interpreters: dict[str, str], key: str) -> None:
        """A `cgi = FILE` program runs as it is, or through the interpreter of its extension."""
        if os.path.splitext(program)[1] in interpreters:
            return
        if not os.access(program, os.X_OK):
            self.fail(key, f"{show(program)} is not executable (set its execute bit, or name an "
                      "interpreter for its extension in interpreters)")
