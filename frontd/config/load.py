"""Loading `frontd.conf`: TOML to the frozen `Config`, every mistake caught before anything is bound.

Every error is a `ConfigError` of one line, `FILE: key.path: what is wrong (did you mean "x"?)`, so
that `frontd -t` and a refused reload can say exactly where to look. Relative paths resolve against
the directory of the config file, never the working directory.
"""

from __future__ import annotations

import difflib
import grp
import hashlib
import ipaddress
import os
import pwd
import re
import shlex
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, NoReturn

from frontd.config.address import (
    MAX_UNIX_PATH,
    parse_address,
    parse_hostname,
    parse_proxy_url,
)
from frontd.config.model import (
    GATEWAY_KINDS,
    LETSENCRYPT_DIRECTORY,
    REDIRECT_STATUSES,
    ROUTE_KINDS,
    AcmeConfig,
    Address,
    BasicAuth,
    Config,
    ConfigError,
    ErrorPages,
    Limits,
    Listener,
    ProxyTarget,
    RewriteRule,
    Route,
    TLSSettings,
    VHost,
)
from frontd.config.permissions import (
    EXECUTE,
    READ,
    WRITE,
    Identity,
    interpreter,
    may,
    unreachable,
)
from frontd.config.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_size,
    show,
)
from frontd.http.passwords import HtpasswdError, read_htpasswd
from frontd.http.patterns import RuleError, check_rule

__all__ = ["ConfigError", "load_config", "parse_config", "summary"]

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_PROXY_KEEPALIVE = 8
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

TOP_KEYS: tuple[str, ...] = (
    "listen", "workers", "pid_file", "error_log", "access_log", "log_level", "user", "group",
    "shutdown_timeout", "limits", "vhost", "run_dir", "tls", "acme",
)
LIMIT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
# Access rules (docs/access.md): on a vhost, and on a route of any kind, where they replace the vhost's.
ACCESS_KEYS: tuple[str, ...] = ("allow", "deny", "auth")
AUTH_KEYS: tuple[str, ...] = ("realm", "htpasswd")
VHOST_KEYS: tuple[str, ...] = ("names", "default", "root", "index", "autoindex", "route", "status", "status_allow",
                               "tls_certificate", "tls_key", "tls", "redirect_https", "rewrite", "try_files",
                               "error_pages", *ACCESS_KEYS)
REWRITE_KEYS: tuple[str, ...] = ("match", "to", "status")
LISTENER_KEYS: tuple[str, ...] = ("address", "tls", "http2", "proxy_protocol")
TLS_KEYS: tuple[str, ...] = ("min_version", "http2", "session_tickets")
TLS_VERSIONS: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
VHOST_TLS_SOURCES: tuple[str, ...] = ("acme", "internal")
ACME_KEYS: tuple[str, ...] = ("email", "directory", "ca_bundle", "storage", "challenge")
ACME_CHALLENGES: tuple[str, ...] = ("http-01", "tls-alpn-01")
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
    # Site rules (docs/rules.md).
    "status": ("redirect",),
    "try_files": ("static", *GATEWAY_KINDS),  # gateway routes in script mode (with root)
    "error_pages": ROUTE_KINDS,
    "intercept_errors": ("cgi", *GATEWAY_KINDS, "proxy"),
    # Issue 13 §1: the whole request body received before a process or backend is involved.
    "request_buffering": ("cgi", *GATEWAY_KINDS, "proxy"),
    # ... and the application's output read as fast as it comes (never for NPH scripts).
    "response_buffering": ("cgi", *GATEWAY_KINDS),
}
SPAWN_ONLY: tuple[str, ...] = ("processes", "cwd", "user", "socket")
# The order in which messages list the kinds.
KIND_ORDER: tuple[str, ...] = ("cgi", "fastcgi", "scgi", "uwsgi", "proxy", "static", "redirect")
ROUTE_KEYS: tuple[str, ...] = ("prefix", *ROUTE_KINDS, *ROUTE_OPTIONS, *ACCESS_KEYS, "authorizer")

_ROUTE_DEFAULTS = Route(prefix="/", kind="static")
_VHOST_DEFAULTS = VHost(names=())
_CONFIG_DEFAULTS = Config(path="", listen=(), vhosts=())
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXTENSION_RE = re.compile(r"\.[^/\0]+")
_HOST_HEADER_RE = re.compile(r"[A-Za-z0-9._~\-\[\]:]+")
_SOCKET_NAME_RE = re.compile(r"[^A-Za-z0-9.-]+")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TOML_POSITION_RE = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)", re.DOTALL)


def load_config(path: str) -> Config:
    """Read, parse and validate the config file at `path`; ConfigError on any mistake."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: invalid TOML: not UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_error(str(exc))}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: str) -> Config:
    """Validate parsed TOML `data` read from `path`; relative paths resolve against its directory."""
    return _Loader(path).config(data)


def _toml_error(message: str) -> str:
    """tomllib's "What (at line L, column C)" as "line L, column C: invalid TOML: What"."""
    match = _TOML_POSITION_RE.fullmatch(message)
    if match is None:
        return f"invalid TOML: {message}"
    what, line, column = match.groups()
    if line is None:
        return f"end of file: invalid TOML: {what}"
    return f"line {line}, column {column}: invalid TOML: {what}"


def _words(items: tuple[str, ...] | list[str]) -> str:
    """("a", "b", "c") -> "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class _Loader:
    """One pass over one file's data; knows the file name and directory for messages and paths."""

    def __init__(self, path: str) -> None:
        self.file = path
        self.path = os.path.abspath(path)
        self.base_dir = os.path.dirname(self.path)
        # For spawn routes: set by `config` and `vhost` before the routes are read.
        self.listen_addresses: tuple[Address, ...] = ()
        self.top_user: str | None = None
        self.top_group: str | None = None
        self.run_dir_path = ""
        self.vhost_label = ""
        self.spawn_sockets: dict[Address, str] = {}  # socket -> key path of the route that has it

    # -- messages ------------------------------------------------------------------------------

    def where(self, key: str) -> str:
        return f"{self.file}: {key}" if key else self.file

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(key)}: {message}")

    def check_keys(self, table: dict[str, object], allowed: tuple[str, ...], path: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.fail(path, f"unknown key {show(key)}{hint}")

    # -- typed values --------------------------------------------------------------------------

    def string(self, value: object, key: str, what: str = "a string") -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected {what}, got {show(value)}")
        if not value:
            self.fail(key, f"expected {what}, got an empty string")
        if "\0" in value:
            self.fail(key, "contains a NUL character")
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {show(value)}")
        return value

    def integer(self, value: object, key: str, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, got {show(value)}")
        if value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def size(self, value: object, key: str, *, positive: bool) -> int:
        size = parse_size(value, self.where(key))
        if positive and size == 0:
            self.fail(key, "must be greater than 0")
        return size

    def duration(self, value: object, key: str, *, positive: bool) -> float:
        seconds = parse_duration(value, self.where(key))
        if positive and seconds == 0:
            self.fail(key, "must be greater than 0")
        return seconds

    def table(self, value: object, key: str) -> dict[str, object]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {show(value)}")
        return value

    def tables(self, value: object, key: str, header: str) -> list[dict[str, object]]:
        """An array of tables, as `[[header]]` sections make."""
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(key, f"expected an array of tables ([[{header}]] sections), got {show(value)}")
        return value

    def one_or_more(
        self, value: object, key: str, one: str, many: str
    ) -> list[tuple[object, str]]:
        """A string or a non-empty array: (item, key path) pairs, "key[i]" for array items."""
        if isinstance(value, list):
            if not value:
                self.fail(key, f"empty array; give one or more {many}")
            return [(item, f"{key}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, str):
            return [(value, key)]
        self.fail(key, f"expected {one} or an array of {many}, got {show(value)}")

    def directory(self, value: object, key: str) -> str:
        """An existing directory, absolute and with symlinks resolved."""
        text = self.string(value, key, "a directory path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if not os.path.exists(path):
            self.fail(key, f"directory {show(path)} does not exist")
        if not os.path.isdir(path):
            self.fail(key, f"{show(path)} is not a directory")
        return os.path.realpath(path)

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

    def file_path(self, value: object, key: str) -> str:
        """A file frontd writes (pid file, log): absolute; it may be missing but not a directory,
        and frontd's user can write it, or create it in its existing directory."""
        text = self.string(value, key, "a file path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if os.path.isdir(path):
            self.fail(key, f"{show(path)} is a directory")
        self.creatable(path, key, "file")
        return path

    def creatable(self, path: str, key: str, what: str) -> None:
        """`path` is writable by frontd's own user, or can be created by it (a file, a socket or a
        directory): found now rather than by a master or workers that fail at start."""
        me = Identity.current()
        if os.path.lexists(path):
            if what != "socket" and not may(path, WRITE, me):
                self.fail(key, f"{show(path)} is not writable by user {show(me.name)}")
            return
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            self.fail(key, f"directory {show(parent)} for the {what} does not exist")
        if not may(parent, WRITE | EXECUTE, me):
            self.fail(key, f"cannot create the {what} {show(path)}: directory {show(parent)} is not "
                      f"writable by user {show(me.name)}")

    def reachable_by_workers(self, path: str, key: str, user: str | None, group: str | None) -> None:
        """A file the workers open themselves (the access log at start, both logs on USR1): when
        they run as another user, every directory above it must let that user through."""
        if user is None or os.geteuid() != 0:
            return
        worker = Identity.of(user, group)
        blocked = unreachable(path, worker)
        if blocked is not None:
            self.fail(key, f"the workers' user {show(worker.name)} cannot reach {show(path)}: "
                      f"no search permission on {show(blocked)}")

    def extensions(self, value: object, key: str) -> tuple[str, ...]:
        """Script-mode extensions: ".php"-like strings; [] allows any file."""
        if not isinstance(value, list):
            self.fail(key, f'expected an array of extensions such as [".php"], got {show(value)}')
        found: list[str] = []
        for i, item in enumerate(value):
            ext = self.string(item, f"{key}[{i}]", "an extension")
            if not _EXTENSION_RE.fullmatch(ext):
                self.fail(f"{key}[{i}]", f'an extension must start with "." and contain no "/", got {show(ext)}')
            found.append(ext)
        return tuple(found)

    def file_names(self, value: object, key: str) -> tuple[str, ...]:
        """An index list: plain file names, looked up in the requested directory."""
        if not isinstance(value, list):
            self.fail(key, f"expected an array of file names, got {show(value)}")
        names: list[str] = []
        for i, item in enumerate(value):
            name = self.string(item, f"{key}[{i}]", "a file name")
            if "/" in name or name in (".", ".."):
                self.fail(f"{key}[{i}]", f'expected a file name without "/", got {show(name)}')
            names.append(name)
        return tuple(names)

    # -- the file ------------------------------------------------------------------------------

    def config(self, data: dict[str, object]) -> Config:
        self.check_keys(data, TOP_KEYS, "")
        listeners = self.listen(data.get("listen", DEFAULT_LISTEN))
        listen = tuple(listener.address for listener in listeners)
        workers = self.workers(data.get("workers", 1))
        pid_file = self.file_path(data["pid_file"], "pid_file") if "pid_file" in data else None
        error_log = self.log_file(data.get("error_log", "-"), "error_log", ("-",))
        access_log = self.log_file(data.get("access_log", "-"), "access_log", ("-", "off"))
        log_level = self.log_level(data.get("log_level", "info"))
        user = self.account(data["user"], "user") if "user" in data else None
        group = self.account(data["group"], "group") if "group" in data else None
        shutdown_timeout = self.duration(
            data.get("shutdown_timeout", _CONFIG_DEFAULTS.shutdown_timeout),
            "shutdown_timeout",
            positive=False,
        )
        limits = self.limits(data["limits"]) if "limits" in data else Limits()
        # The workers open the access log at start, and both logs again on USR1.
        for key, target in (("error_log", error_log), ("access_log", access_log)):
            if target not in ("-", "off"):
                self.reachable_by_workers(target, key, user, group)
        self.listen_addresses, self.top_user, self.top_group = listen, user, group
        self.run_dir_path = self.run_dir(data.get("run_dir"), pid_file)
        vhosts = self.vhosts(data.get("vhost"))
        if self.spawn_sockets and not os.path.isdir(self.run_dir_path):
            # The master creates run_dir for the spawned backends' sockets.
            self.creatable(self.run_dir_path, "run_dir", "directory")
        tls = self.tls(data["tls"]) if "tls" in data else TLSSettings()
        acme = self.acme(data.get("acme"), vhosts)
        self.check_tls(listeners, vhosts)
        return Config(
            path=self.path,
            listen=listen,
            vhosts=vhosts,
            workers=workers,
            pid_file=pid_file,
            error_log=error_log,
            access_log=access_log,
            log_level=log_level,
            user=user,
            group=group,
            shutdown_timeout=shutdown_timeout,
            limits=limits,
            run_dir=self.run_dir_path,
            script_extensions=script_extensions(vhosts),
            listeners=listeners,
            tls=tls,
            acme=acme,
        )

    def listen(self, value: object) -> tuple[Listener, ...]:
        listeners: list[Listener] = []
        seen: dict[Address, str] = {}
        if isinstance(value, dict):
            value = [value]  # listen = { address = ..., tls = true } alone
        for item, key in self.one_or_more(value, "listen", "an address", "addresses"):
            options: dict[str, Any] = {}
            if isinstance(item, dict):
                item, key, options = self.listener_table(item, key)
            if not isinstance(item, str):
                self.fail(
                    key,
                    'expected an address ("host:port", "[v6]:port", ":port" or "unix:/path") '
                    f'or a table {{ address = "...", tls = true }}, got {show(item)}',
                )
            address = parse_address(item, self.where(key), listener=True, base_dir=self.base_dir)
            # Port 0 asks the kernel for any free port, so two of them do not collide.
            if address in seen and (address.kind == "unix" or address.port != 0):
                self.fail(key, f'"{address}" is already listed as {seen[address]}')
            seen.setdefault(address, key)
            if address.kind == "unix":
                self.check_listener_socket(address.path, key)
            listeners.append(Listener(address, **options))
        return tuple(listeners)

    def listener_table(self, table: dict[str, object], key: str) -> tuple[object, str, dict[str, Any]]:
        """`{ address = "...", tls = true, http2 = false }`: the address, its key path, the options."""
        self.check_keys(table, LISTENER_KEYS, key)
        if "proxy_protocol" in table:
            self.fail(f"{key}.proxy_protocol", "not supported yet (the PROXY protocol comes in a later version)")
        if "address" not in table:
            self.fail(key, 'missing key "address"')
        options: dict[str, Any] = {}
        for name in ("tls", "http2"):
            if name in table:
                options[name] = self.boolean(table[name], f"{key}.{name}")
        return table["address"], f"{key}.address", options

    def tls(self, value: object) -> TLSSettings:
        table = self.table(value, "tls")
        self.check_keys(table, TLS_KEYS, "tls")
        values: dict[str, Any] = {}
        if "min_version" in table:
            values["min_version"] = self.choice(table["min_version"], "tls.min_version", TLS_VERSIONS)
        for name in ("http2", "session_tickets"):
            if name in table:
                values[name] = self.boolean(table[name], f"tls.{name}")
        return TLSSettings(**values)

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, exactly as written there."""
        text = self.string(value, key, " or ".join(f'"{c}"' for c in choices))
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.fail(key, f"expected {' or '.join(show(c) for c in choices)}, got {show(text)}{hint}")
        return text

    def acme(self, value: object, vhosts: tuple[VHost, ...]) -> AcmeConfig | None:
        """`[acme]`: present when the file has the table or a vhost has tls = "acme" or "internal"."""
        if value is None:
            if not any(v.tls is not None for v in vhosts):
                return None
            value = {}
        table = self.table(value, "acme")
        self.check_keys(table, ACME_KEYS, "acme")
        if "storage" in table:
            text = self.string(table["storage"], "acme.storage", "a directory path")
            storage = os.path.normpath(os.path.join(self.base_dir, text))
            if os.path.exists(storage) and not os.path.isdir(storage):
                self.fail("acme.storage", f"{show(storage)} is not a directory")
        else:
            storage = self.default_storage()
        values: dict[str, Any] = {"storage": storage}
        if "email" in table:
            email = self.string(table["email"], "acme.email", "an email address")
            if not _EMAIL_RE.fullmatch(email):
                self.fail("acme.email", f"expected an email address such as \"admin@example.com\", got {show(email)}")
            values["email"] = email
        if "directory" in table:
            url = self.string(table["directory"], "acme.directory", "an https:// URL")
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                self.fail("acme.directory", f"expected the CA's directory URL such as {show(LETSENCRYPT_DIRECTORY)}, "
                          f"got {show(url)}")
            values["directory"] = url
        if "ca_bundle" in table:
            text = self.string(table["ca_bundle"], "acme.ca_bundle", "a PEM file path")
            bundle = os.path.normpath(os.path.join(self.base_dir, text))
            if not os.path.isfile(bundle):
                self.fail("acme.ca_bundle", f"file {show(bundle)} does not exist")
            values["ca_bundle"] = bundle
        if "challenge" in table:
            values["challenge"] = self.choice(table["challenge"], "acme.challenge", ACME_CHALLENGES)
        return AcmeConfig(**values)

    def default_storage(self) -> str:
        """`[acme] storage` when not set: beside run_dir, "frontd-certs" where run_dir is
        "frontd-sockets" (next to the pid file), else run_dir's name with "-certs"."""
        run_dir = self.run_dir_path
        if run_dir.endswith("-sockets"):
            return run_dir[: -len("-sockets")] + "-certs"
        return run_dir.rstrip("/") + "-certs"

    def check_tls(self, listeners: tuple[Listener, ...], vhosts: tuple[VHost, ...]) -> None:
        """What the TLS keys need from each other, once listeners and vhosts are known."""
        tls_listener = next((i for i, listener in enumerate(listeners) if listener.tls), None)
        if tls_listener is not None and not any(v.has_tls for v in vhosts):
            self.fail(f"listen[{tls_listener}]", "a TLS listener needs a vhost with a certificate "
                      '(set tls_certificate and tls_key, or tls = "acme" or "internal", on a [[vhost]])')
        for i, vhost in enumerate(vhosts):
            if vhost.redirect_https and tls_listener is None:
                self.fail(f"vhost[{i}].redirect_https", "there is no TLS listener to redirect to "
                          '(add { address = "...", tls = true } to listen)')
            if vhost.redirect_https and not vhost.has_tls:
                self.fail(f"vhost[{i}].redirect_https", "the vhost has no certificate to serve HTTPS with "
                          '(set tls_certificate and tls_key, or tls = "acme" or "internal")')

    def check_listener_socket(self, path: str, key: str) -> None:
        """Bind would fail later on a missing directory or a path that is some other file."""
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            self.fail(key, f"directory {show(parent)} for the Unix socket does not exist")
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            self.creatable(path, key, "socket")
            return
        except OSError as exc:
            self.fail(key, f"cannot use {show(path)}: {exc.strerror}")
        if not stat.S_ISSOCK(mode):
            self.fail(key, f"{show(path)} exists and is not a socket")

    def workers(self, value: object) -> int:
        if value == "auto":
            return os.cpu_count() or 1
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail("workers", f'expected an integer >= 1 or "auto", got {show(value)}')
        if value < 1:
            self.fail("workers", f'must be at least 1 (or "auto"), got {value}')
        return value

    def log_file(self, value: object, key: str, special: tuple[str, ...]) -> str:
        if isinstance(value, str) and value in special:
            return value
        if value == "off":  # nginx's trap: "error_log off" writes a file named "off"
            self.fail(key, 'cannot be "off"; use "-" for stderr or a file')
        return self.file_path(value, key)

    def log_level(self, value: object) -> str:
        level = self.string(value, "log_level").lower()
        if level not in LOG_LEVELS:
            close = difflib.get_close_matches(level, LOG_LEVELS, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.fail(
                "log_level", f"expected one of {', '.join(LOG_LEVELS)}, got {show(value)}{hint}"
            )
        return level

    def account(self, value: object, key: str) -> str:
        """A user or group name that exists here, checked now rather than after binding."""
        name = self.string(value, key, f"a {key} name")
        try:
            if key == "user":
                pwd.getpwnam(name)
            else:
                grp.getgrnam(name)
        except KeyError:
            self.fail(key, f"no such {key} {show(name)}")
        return name

    def limits(self, value: object) -> Limits:
        table = self.table(value, "limits")
        self.check_keys(table, LIMIT_KEYS, "limits")
        values: dict[str, Any] = {}
        for name, item in table.items():
            key = f"limits.{name}"
            if name == "max_connections":
                values[name] = self.integer(item, key, 1)
            elif name == "max_body_size":
                values[name] = self.size(item, key, positive=False)
            elif name.startswith("max_"):
                values[name] = self.size(item, key, positive=True)
            else:  # keepalive_timeout = 0 turns keep-alive off, as in nginx
                values[name] = self.duration(item, key, positive=name != "keepalive_timeout")
        return Limits(**values)

    # -- virtual hosts -------------------------------------------------------------------------

    def vhosts(self, value: object) -> tuple[VHost, ...]:
        if value is None:
            self.fail("vhost", "no virtual host; add at least one [[vhost]] section")
        tables = self.tables(value, "vhost", "vhost")
        if not tables:
            self.fail("vhost", "no virtual host; add at least one [[vhost]] section")
        owners: dict[str, str] = {}
        default_key: str | None = None
        vhosts: list[VHost] = []
        for i, table in enumerate(tables):
            vhost = self.vhost(table, f"vhost[{i}]", owners)
            if vhost.default:
                if default_key is not None:
                    self.fail(f"vhost[{i}].default", f"{default_key} is already the default")
                default_key = f"vhost[{i}]"
            vhosts.append(vhost)
        for i, vhost in enumerate(vhosts):
            # Unmatched requests go to the default vhost, else to the first.
            fallback = vhost.default or (i == 0 and default_key is None)
            if not vhost.names and not fallback:
                self.fail(
                    f"vhost[{i}]",
                    "no names and not the default, so no request can reach it "
                    "(add names or set default = true)",
                )
        return tuple(vhosts)

    def vhost(self, table: dict[str, object], path: str, owners: dict[str, str]) -> VHost:
        self.check_keys(table, VHOST_KEYS, path)
        names = self.names(table.get("names", []), f"{path}.names", path, owners)
        self.vhost_label = names[0] if names else path.replace("[", "").replace("]", "")
        default = self.boolean(table["default"], f"{path}.default") if "default" in table else False
        root = self.directory(table["root"], f"{path}.root") if "root" in table else None
        index = (
            self.file_names(table["index"], f"{path}.index")
            if "index" in table
            else _VHOST_DEFAULTS.index
        )
        autoindex = (
            self.boolean(table["autoindex"], f"{path}.autoindex") if "autoindex" in table else False
        )
        status = self.status_path(table["status"], f"{path}.status") if "status" in table else None
        status_allow = (self.networks(table["status_allow"], f"{path}.status_allow")
                        if "status_allow" in table else _VHOST_DEFAULTS.status_allow)
        access = self.access(table, path)
        rules = self.vhost_rules(table, path, root)
        route_tables = self.tables(table.get("route", []), f"{path}.route", "vhost.route")
        routes: list[Route] = []
        prefixes: dict[str, str] = {}
        for j, route_table in enumerate(route_tables):
            route_path = f"{path}.route[{j}]"
            route = self.route(route_table, route_path, index, autoindex, rules.get("error_pages", ()))
            route = self.route_access(route, route_table, route_path, access)
            if route.prefix in prefixes:
                self.fail(
                    f"{route_path}.prefix",
                    f"{show(route.prefix)} is already the prefix of {prefixes[route.prefix]}",
                )
            prefixes[route.prefix] = route_path
            routes.append(route)
        if root is None and not routes and status is None:
            self.fail(path, "serves nothing: set root or add a [[vhost.route]]")
        tls_values = self.vhost_tls(table, path, names)
        return VHost(
            names=names,
            default=default,
            root=root,
            index=index,
            autoindex=autoindex,
            routes=tuple(routes),
            status=status,
            status_allow=status_allow,
            **tls_values,
            **access,
            **rules,
        )

    def vhost_rules(self, table: dict[str, object], path: str, root: str | None) -> dict[str, Any]:
        """A vhost's `rewrite` rules, `try_files` (for its root) and `error_pages`."""
        values: dict[str, Any] = {}
        if "rewrite" in table:
            values["rewrites"] = tuple(
                self.rewrite_rule(item, f"{path}.rewrite[{i}]")
                for i, item in enumerate(self.tables(table["rewrite"], f"{path}.rewrite", "vhost.rewrite")))
        if "try_files" in table:
            if root is None:
                self.fail(f"{path}.try_files", "only applies with root (the files it tries are under it); "
                          "set it on a static or script-mode route instead")
            values["try_files"] = self.try_files(table["try_files"], f"{path}.try_files")
        if "error_pages" in table:
            values["error_pages"] = self.error_pages(table["error_pages"], f"{path}.error_pages")
        return values

    def rewrite_rule(self, table: dict[str, object], key: str) -> RewriteRule:
        """One `[[vhost.rewrite]]`: its regex compiled and its replacement checked now."""
        self.check_keys(table, REWRITE_KEYS, key)
        for name in ("match", "to"):
            if name not in table:
                self.fail(key, f'missing key "{name}"')
        match = self.string(table["match"], f"{key}.match", "a regular expression")
        to = self.string(table["to"], f"{key}.to", 'a path such as "/index.php?p=$1"')
        if not to.isascii():
            self.fail(f"{key}.to", f"write it percent-encoded (ASCII only), got {show(to)}")
        status = self.redirect_status(table["status"], f"{key}.status") if "status" in table else None
        rule = RewriteRule(match=match, to=to, status=status, key=key)
        try:
            check_rule(rule.match, rule.to, external=rule.status is not None)
        except RuleError as exc:
            self.fail(key, str(exc))
        return rule

    def redirect_status(self, value: object, key: str) -> int:
        if value not in REDIRECT_STATUSES or isinstance(value, bool):
            self.fail(key, f"expected one of {', '.join(map(str, REDIRECT_STATUSES))}, got {show(value)}")
        return int(value)  # type: ignore[call-overload]

    def redirect_url(self, value: object, key: str) -> str:
        """A redirect route's target: a path or an http(s) URL, written out (only `$host` varies)."""
        url = self.string(value, key, 'a URL such as "https://example.com/new/" or a path such as "/new/"')
        if not url.isascii() or any(c.isspace() or ord(c) < 0x20 or c in "\x7f#?\\" for c in url):
            self.fail(key, f"a URL without spaces, control characters, backslashes, query or fragment "
                      f"(the client's query is appended), got {show(url)}")
        if "$" in url.replace("$host", ""):
            self.fail(key, f"the only variable is $host, got {show(url)}")
        if url.startswith("/"):
            if url.startswith("//"):
                self.fail(key, f'a path starts with one "/" (//host is another site), got {show(url)}')
        elif not re.match(r"https?://[^/]+", url):
            self.fail(key, f'expected a path ("/new/") or an http:// or https:// URL, got {show(url)}')
        return url

    def try_files(self, value: object, key: str) -> tuple[str, ...]:
        """["$uri", "$uri/", "/index.php?$query"]: paths tried in turn, then a URI or "=404"."""
        if not isinstance(value, list) or len(value) < 2:
            self.fail(key, 'expected an array of two or more entries such as ["$uri", "$uri/", "/index.php?$query"], '
                      f"got {show(value)}")
        entries = [self.string(item, f"{key}[{i}]", "a path") for i, item in enumerate(value)]
        for i, entry in enumerate(entries):
            item_key = f"{key}[{i}]"
            if not entry.isascii() or any(c.isspace() or ord(c) < 0x20 or c in "\x7f#\\" for c in entry):
                self.fail(item_key, f"no spaces, control characters, backslashes or fragment, got {show(entry)}")
            last = i == len(entries) - 1
            if last and entry.startswith("="):
                if not re.fullmatch(r"=[45][0-9][0-9]", entry):
                    self.fail(item_key, f'expected "=" and an error status such as "=404", got {show(entry)}')
                continue
            variables = ("$uri", "$query") if last else ("$uri",)
            rest = entry
            for variable in variables:
                rest = rest.replace(variable, "")
            if "$" in rest:
                self.fail(item_key, f"the variables are {' and '.join(variables)}, got {show(entry)}")
            if not last and "?" in entry:
                self.fail(item_key, f"a file to try has no query (only the last entry is a URI), got {show(entry)}")
            if not entry.startswith(("/", "$uri")):
                self.fail(item_key, f'must start with "/" or "$uri", got {show(entry)}')
            if any(s in (".", "..") for s in entry.partition("?")[0].split("/")):
                self.fail(item_key, f'must not contain "." or ".." segments, got {show(entry)}')
        return tuple(entries)

    def error_pages(self, value: object, key: str) -> ErrorPages:
        """{ 404 = "/errors/404.html" }: error status to a page's path (routed internally)."""
        table = self.table(value, key)
        pages: dict[int, str] = {}
        for name, page in table.items():
            if not re.fullmatch(r"[45][0-9][0-9]", name):
                self.fail(f"{key}.{name}", "expected an error status (400 to 599) as the key")
            pages[int(name)] = self.status_path(page, f"{key}.{name}")
        return tuple(sorted(pages.items()))

    def vhost_tls(self, table: dict[str, object], path: str, names: tuple[str, ...]) -> dict[str, Any]:
        """A vhost's certificate: tls_certificate with tls_key, or tls = "acme" | "internal"."""
        values: dict[str, Any] = {}
        has_files = "tls_certificate" in table or "tls_key" in table
        if "tls" in table:
            source = self.choice(table["tls"], f"{path}.tls", VHOST_TLS_SOURCES)
            if has_files:
                which = "tls_certificate" if "tls_certificate" in table else "tls_key"
                self.fail(f"{path}.{which}", f'set either {which} or tls = "{source}", not both')
            if source == "acme":
                wildcards = [n for n in names if n.startswith("*.")]
                if wildcards:
                    self.fail(f"{path}.tls", f"{show(wildcards[0])}: a wildcard certificate needs the DNS-01 "
                              "challenge, which frontd does not answer; list the names, or use tls_certificate")
                if not names:
                    self.fail(f"{path}.tls", 'tls = "acme" needs names to ask the CA for')
            if source == "internal" and not names:
                self.fail(f"{path}.tls", 'tls = "internal" needs names to issue the certificate for')
            values["tls"] = source
        elif has_files:
            for name, other in (("tls_certificate", "tls_key"), ("tls_key", "tls_certificate")):
                if name not in table:
                    self.fail(f"{path}.{other}", f"needs {name} too")
            values["tls_certificate"] = self.readable_file(table["tls_certificate"], f"{path}.tls_certificate")
            values["tls_key"] = self.readable_file(table["tls_key"], f"{path}.tls_key")
        if "redirect_https" in table:
            values["redirect_https"] = self.boolean(table["redirect_https"], f"{path}.redirect_https")
        return values

    def access(self, table: dict[str, object], path: str) -> dict[str, Any]:
        """The access keys set in a vhost or route table: allow, deny (networks) and auth (a
        BasicAuth, or None for `auth = false`)."""
        values: dict[str, Any] = {}
        for name in ("allow", "deny"):
            if name in table:
                values[name] = self.networks(table[name], f"{path}.{name}")
        if "auth" in table:
            values["auth"] = self.basic_auth(table["auth"], f"{path}.auth")
        return values

    def route_access(self, route: Route, table: dict[str, object], path: str, vhost: dict[str, Any]) -> Route:
        """A route with its effective access rules: each key the route sets replaces the vhost's,
        list by list (`allow = []` refuses everyone). Behind auth, a gateway does not see the
        credentials (HTTP_AUTHORIZATION) unless the route sets pass_authorization = true."""
        values = {**vhost, **self.access(table, path)}
        if values.get("auth") is not None and "pass_authorization" not in table:
            values["pass_authorization"] = False
        if "authorizer" in table:
            values["authorizer"] = self.authorizer(table["authorizer"], f"{path}.authorizer", route)
        return replace(route, **values) if values else route

    def authorizer(self, value: object, key: str, route: Route) -> tuple[Address, ...]:
        """`authorizer = ADDRESS | [ADDRESS, ...]`: FastCGI applications in the AUTHORIZER role;
        `authorizer = true` on a fastcgi route with spawn: the spawned application answers both
        roles (flup's `roles=(FCGI_RESPONDER, FCGI_AUTHORIZER)`)."""
        if value is True:
            if route.kind != "fastcgi" or not route.spawn:
                self.fail(key, "authorizer = true needs a fastcgi route with spawn (the spawned application "
                          'is then the authorizer too); otherwise give its address, such as "unix:/run/auth.sock"')
            return route.backends
        return self.backends(value, key)

    def basic_auth(self, value: object, key: str) -> BasicAuth | None:
        """`auth = { realm = "...", htpasswd = "path" }`, or false (none: lifts the vhost's). The
        file is read now: a missing file or an unsupported hash is an error of `frontd -t`."""
        if value is False:
            return None
        if not isinstance(value, dict):
            self.fail(key, f'expected {{ realm = "...", htpasswd = "path" }} or false, got {show(value)}')
        self.check_keys(value, AUTH_KEYS, key)
        for name in AUTH_KEYS:
            if name not in value:
                self.fail(key, f'missing key "{name}"')
        realm = self.string(value["realm"], f"{key}.realm", "a realm name")
        if any(ord(c) < 0x20 or c in '\x7f"\\' for c in realm):
            self.fail(f"{key}.realm", f"must not contain quotes, backslashes or control characters, got {show(realm)}")
        htpasswd = self.readable_file(value["htpasswd"], f"{key}.htpasswd")
        try:
            read_htpasswd(htpasswd)
        except HtpasswdError as exc:
            self.fail(f"{key}.htpasswd", str(exc))
        return BasicAuth(realm=realm, htpasswd=htpasswd)

    def readable_file(self, value: object, key: str) -> str:
        """A file frontd reads (certificate, key): absolute, existing and readable now."""
        text = self.string(value, key, "a file path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if not os.path.isfile(path):
            self.fail(key, f"file {show(path)} does not exist")
        if not os.access(path, os.R_OK):
            self.fail(key, f"cannot read {show(path)}: permission denied")
        return path

    def status_path(self, value: object, key: str) -> str:
        """The status page's path: matched exactly against the decoded, normalised request path."""
        path = self.string(value, key, 'a path such as "/frontd-status"')
        if not path.startswith("/"):
            self.fail(key, f'must start with "/", got {show(path)}')
        if any(ord(c) < 0x20 or c in "\x7f?#%" for c in path):
            self.fail(key, "must be a plain decoded path, without query, fragment or control characters, "
                      f"got {show(path)}")
        segments = path[1:].split("/")
        if segments[-1] == "":
            segments.pop()  # "/status/" is matched as written
        if any(s in ("", ".", "..") for s in segments):
            self.fail(key, f'must not contain empty, "." or ".." segments, got {show(path)}')
        return path

    def networks(self, value: object, key: str) -> tuple[str, ...]:
        """Client addresses or networks ("10.0.0.0/8", "::1"), normalised; [] allows nobody."""
        if not isinstance(value, list):
            self.fail(key, 'expected an array of addresses or networks such as ["127.0.0.1", "10.0.0.0/8"], '
                      f"got {show(value)}")
        networks: list[str] = []
        for i, item in enumerate(value):
            text = self.string(item, f"{key}[{i}]", 'an address or network such as "10.0.0.0/8"')
            try:
                network = ipaddress.ip_network(text)
            except ValueError as exc:
                if "host bits set" in str(exc):
                    hint = ipaddress.ip_network(text, strict=False)
                    self.fail(f"{key}[{i}]", f'{show(text)} has host bits set (did you mean "{hint}"?)')
                self.fail(f"{key}[{i}]", f"expected an IP address or network, got {show(text)}")
            networks.append(str(network))
        return tuple(networks)

    def names(
        self, value: object, key: str, vhost: str, owners: dict[str, str]
    ) -> tuple[str, ...]:
        items = [] if value == [] else self.one_or_more(value, key, "a host name", "host names")
        names: list[str] = []
        for item, item_key in items:
            text = self.string(item, item_key, "a host name")
            if ":" in text and not text.startswith("["):
                self.fail(item_key, f"a name has no port (the port is ignored), got {show(text)}")
            name = parse_hostname(text, self.where(item_key), wildcard=True)
            if name in owners:
                self.fail(item_key, f"{show(name)} is already a name of {owners[name]}")
            owners[name] = vhost
            names.append(name)
        return tuple(names)

    # -- routes --------------------------------------------------------------------------------

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
            self.fail(path, f"route has {_words(kinds)}; {exactly}")
        kind = kinds[0]
        for option, applies in ROUTE_OPTIONS.items():
            if option in table and kind not in applies:
                routes = [k for k in KIND_ORDER if k in applies]
                self.fail(
                    f"{path}.{option}",
                    f"not an option of {kind} routes (only of {_words(routes)} routes)",
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
        if "intercept_errors" in table:
            values["intercept_errors"] = self.boolean(table["intercept_errors"], key("intercept_errors"))
            if values["intercept_errors"] and not values.get("error_pages"):
                self.fail(key("intercept_errors"), "no error_pages on the route or its vhost to serve instead")
        return Route(**values)

    def run_dir(self, value: object, pid_file: str | None) -> str:
        """Where default sockets of spawned backends go: `run_dir`, else beside the pid file, else
        a directory of this user's under the temporary directory. The master creates it (mode 0700,
        or 0711 when workers run as another user) and refuses one that others could write to."""
        if value is not None:
            text = self.string(value, "run_dir", "a directory path")
            path = os.path.normpath(os.path.join(self.base_dir, text))
            if os.path.exists(path) and not os.path.isdir(path):
                self.fail("run_dir", f"{show(path)} is not a directory")
            if not os.path.isdir(os.path.dirname(path)):
                self.fail("run_dir", f"directory {show(os.path.dirname(path))} does not exist")
            return path
        if pid_file is not None:
            return os.path.splitext(pid_file)[0] + "-sockets"
        # One directory per configuration file and user, so that two frontds never share one.
        digest = hashlib.sha1(self.path.encode()).hexdigest()[:10]
        return os.path.join(tempfile.gettempdir(), f"frontd-{os.geteuid()}-{digest}")

    def spawn(self, table: dict[str, object], path: str, kind: str, values: dict[str, Any]) -> bool:
        """The spawn options of a route, into `values`; False when the route has no `spawn`.

        With spawn the kind's key is `true`: the backend is the socket frontd creates (`socket`,
        or a Unix socket in run_dir named after the vhost and prefix), in `backends` or `proxy`.
        """

        def key(name: str) -> str:
            return f"{path}.{name}"

        if "spawn" not in table:
            for name in SPAWN_ONLY:
                if name in table:
                    self.fail(key(name), "only applies with spawn")
            if kind == "proxy" and "env" in table:
                self.fail(key("env"), "on a proxy route only applies with spawn "
                          "(it is the environment of the spawned processes)")
            if table[kind] is True:
                self.fail(key(kind), f"{kind} = true needs spawn (the command frontd runs)")
            return False
        if table[kind] is not True:
            self.fail(key(kind), f"with spawn, write {kind} = true: frontd creates the socket "
                      '(set socket = "..." to choose its address)')
        env = dict(self.env(table["env"], key("env"))) if "env" in table else {}
        values["spawn"] = self.command(table["spawn"], key("spawn"), env.get("PATH"))
        if "processes" in table:
            values["processes"] = self.integer(table["processes"], key("processes"), 1)
        values["cwd"] = self.directory(table["cwd"], key("cwd")) if "cwd" in table else self.base_dir
        user: str | None = None
        if "user" in table:
            user = self.string(table["user"], key("user"), "a user name")
            try:
                pwd.getpwnam(user)
            except KeyError:
                self.fail(key("user"), f"no such user {show(user)}")
        values["user"] = user
        if os.geteuid() == 0 and user is None and self.top_user is None:
            self.fail(key("spawn"), "frontd runs as root and would run this command as root: set user "
                      '(on the route, or at the top level), or user = "root" to really mean it')
        self.runnable(values["spawn"], values["cwd"], user, key)
        if "socket" in table:
            item = self.string(table["socket"], key("socket"), 'an address ("host:port" or "unix:/path")')
            address = parse_address(item, self.where(key("socket")), listener=False, base_dir=self.base_dir)
            if address.kind == "unix":
                self.check_listener_socket(address.path, key("socket"))
            if address in self.listen_addresses:
                self.fail(key("socket"), f'"{address}" is also a listen address')
        else:
            address = self.default_socket(values["prefix"], key("spawn"))
        if address in self.spawn_sockets:
            self.fail(key("socket"), f'"{address}" is already the socket of {self.spawn_sockets[address]}')
        self.spawn_sockets[address] = path
        values["socket"] = address
        if kind == "proxy":
            values["proxy"] = (ProxyTarget(address),)
        else:
            values["backends"] = (address,)
        return True

    def command(self, value: object, key: str, search_path: str | None) -> tuple[str, ...]:
        """A non-empty argv; a bare program name is looked up in PATH now, a path is made absolute."""
        if not isinstance(value, list) or not value:
            self.fail(key, f'expected a non-empty array of strings such as ["python3", "app.py"], got {show(value)}')
        argv: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"expected a string, got {show(item)}")
            if "\0" in item:
                self.fail(f"{key}[{i}]", "contains a NUL character")
            argv.append(item)
        program = self.string(argv[0], f"{key}[0]", "a program")
        if "/" in program:
            found = os.path.normpath(os.path.join(self.base_dir, program))
        else:
            search = search_path if search_path is not None else os.environ.get("PATH", os.defpath)
            which = shutil.which(program, path=search)
            if which is None:
                self.fail(f"{key}[0]", f"{show(program)} is not found in PATH {show(search)}")
            found = os.path.abspath(which)
        if not os.path.isfile(found) or not os.access(found, os.X_OK):
            self.fail(f"{key}[0]", f"{show(found)} is not an executable file")
        return (found, *argv[1:])

    def runnable(self, argv: tuple[str, ...], cwd: str, user: str | None, key: Callable[[str], str]) -> None:
        """The spawned processes' user can enter `cwd` and execute the program and, for a script,
        the interpreter of its `#!` line: else every start fails in execve or chdir, for ever."""
        if os.geteuid() != 0:
            who = Identity.current()
        elif user is not None:
            who = Identity.of(user)
        else:
            assert self.top_user is not None
            who = Identity.of(self.top_user, self.top_group)
        if not may(argv[0], EXECUTE, who):
            self.fail(key("spawn[0]"), f"{show(argv[0])} is not executable by user {show(who.name)}"
                      f"{self.blocked_by(argv[0], who)}")
        program = interpreter(argv[0])
        if program is not None:
            if not os.path.exists(program):
                self.fail(key("spawn[0]"), f"the interpreter {show(program)} of {show(argv[0])} does not exist")
            if not may(program, EXECUTE, who):
                self.fail(key("spawn[0]"), f"the interpreter {show(program)} of {show(argv[0])} is not "
                          f"executable by user {show(who.name)}{self.blocked_by(program, who)}")
            if not may(argv[0], READ, who):
                self.fail(key("spawn[0]"), f"{show(argv[0])} is a script that user {show(who.name)} cannot read")
        if not may(cwd, EXECUTE, who):
            self.fail(key("cwd"), f"user {show(who.name)} cannot enter {show(cwd)}{self.blocked_by(cwd, who)}")

    @staticmethod
    def blocked_by(path: str, who: Identity) -> str:
        blocked = unreachable(path, who)
        return f" (no search permission on {show(blocked)})" if blocked is not None else ""

    def default_socket(self, prefix: str, key: str) -> Address:
        """unix:RUN_DIR/VHOST_PREFIX.sock, e.g. run/frontd-sockets/example.test_app.sock."""
        slug = _SOCKET_NAME_RE.sub("_", f"{self.vhost_label}{prefix}").strip("_") or "root"
        taken = {a.path for a in self.spawn_sockets}
        name = f"{slug}.sock"
        room = MAX_UNIX_PATH - len(self.run_dir_path) - 1
        if len(name) > room or os.path.join(self.run_dir_path, name) in taken:
            # Too long or already taken (two prefixes that differ only in punctuation): a digest.
            digest = hashlib.sha1(f"{self.vhost_label}{prefix}".encode()).hexdigest()[:10]
            name = f"{slug[:max(room - 16, 0)]}-{digest}.sock"
        if len(name) > room:
            self.fail(key, f"the socket path in run_dir {show(self.run_dir_path)} would be longer than "
                      f"{MAX_UNIX_PATH} bytes: set a shorter run_dir, or socket")
        return Address(kind="unix", path=os.path.join(self.run_dir_path, name))

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

    def backends(self, value: object, key: str) -> tuple[Address, ...]:
        backends: list[Address] = []
        for item, item_key in self.one_or_more(value, key, "a backend address", "backend addresses"):
            if not isinstance(item, str):
                self.fail(
                    item_key,
                    f'expected a backend address ("host:port", "[v6]:port" or "unix:/path"), '
                    f"got {show(item)}",
                )
            address = parse_address(item, self.where(item_key), listener=False, base_dir=self.base_dir)
            if address in backends:
                self.fail(item_key, f'"{address}" is listed twice')
            backends.append(address)
        return tuple(backends)

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

    def env(self, value: object, key: str) -> tuple[tuple[str, str], ...]:
        table = self.table(value, key)
        pairs: list[tuple[str, str]] = []
        for name, item in table.items():
            if not _ENV_NAME_RE.fullmatch(name):
                self.fail(key, f"bad variable name {show(name)} (letters, digits and _)")
            if not isinstance(item, str):
                self.fail(f"{key}.{name}", f"expected a string, got {show(item)}")
            if "\0" in item:
                self.fail(f"{key}.{name}", "contains a NUL character")
            pairs.append((name, item))
        return tuple(pairs)

    def interpreters(self, value: object, key: str, search_path: str) -> tuple[tuple[str, str], ...]:
        """Extension -> interpreter; a bare program name is looked up in the route's PATH now."""
        table = self.table(value, key)
        pairs: list[tuple[str, str]] = []
        for ext, item in table.items():
            item_key = f"{key}.{show(ext)}"  # TOML quotes a key such as ".py"
            if not _EXTENSION_RE.fullmatch(ext):
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


# -- frontd -t -------------------------------------------------------------------------------------


def summary(config: Config) -> str:
    """The effective configuration, as `frontd -t` prints it: every default filled in, every path
    absolute, and each vhost's routes in match order (longest prefix first)."""
    limits = config.limits
    lines = [
        f"# effective configuration of {config.path}",
        f"listen {', '.join(_describe_listener(listener) for listener in config.listener_options())}",
        f"workers {config.workers}",
        f"pid_file {config.pid_file or '(none)'}",
        f"error_log {config.error_log}",
        f"access_log {config.access_log}",
        f"log_level {config.log_level}",
    ]
    if config.user is not None:
        lines.append(f"user {config.user}")
    if config.group is not None:
        lines.append(f"group {config.group}")
    lines.append(f"shutdown_timeout {format_duration(config.shutdown_timeout)}")
    if config.tls_listeners():
        lines.append(f"tls min_version={config.tls.min_version} alpn=http/1.1 "
                     f"session_tickets={'on' if config.tls.session_tickets else 'off'}")
    if config.acme is not None:
        acme = config.acme
        line = f"acme storage={acme.storage}"
        if any(vhost.tls == "acme" for vhost in config.vhosts):  # the CA matters only then
            line += (f" directory={acme.directory} challenge={acme.challenge}"
                     + (f" email={acme.email}" if acme.email else "")
                     + (f" ca_bundle={acme.ca_bundle}" if acme.ca_bundle else ""))
        lines.append(line)
    if any(route.spawn for vhost in config.vhosts for route in vhost.routes):
        lines.append(f"run_dir {config.run_dir}")
    lines.append(
        "limits "
        + " ".join(
            f"{f.name}={_format_limit(f.name, getattr(limits, f.name))}" for f in fields(Limits)
        )
    )
    if config.script_extensions:
        lines.append(f"script_extensions {' '.join(config.script_extensions)}  (never served as static files)")
    has_default = any(v.default for v in config.vhosts)
    for i, vhost in enumerate(config.vhosts):
        lines.append("")
        names = " ".join(vhost.names) if vhost.names else "(no names)"
        if vhost.default:
            names += "  (default)"
        elif i == 0 and not has_default:
            names += "  (default: first vhost)"
        lines.append(f"vhost[{i}] {names}")
        index = " ".join(vhost.index) or "(none)"
        autoindex = "on" if vhost.autoindex else "off"
        lines.append(f"  root {vhost.root or '(none)'}  index {index}  autoindex {autoindex}")
        if vhost.tls_certificate is not None:
            lines.append(f"  tls_certificate {vhost.tls_certificate}  tls_key {vhost.tls_key}")
        elif vhost.tls is not None:
            lines.append(f"  tls {vhost.tls}")
        if vhost.redirect_https:
            lines.append("  redirect_https on")
        if vhost.status is not None:
            lines.append(f"  status {vhost.status}  allow {' '.join(vhost.status_allow) or '(nobody)'}")
        if _describe_access(vhost):
            lines.append(f"  access {_describe_access(vhost)}")
        routes = sorted(vhost.routes, key=lambda r: len(r.prefix), reverse=True)
        width = max([len(r.prefix) for r in routes] + [1])
        for rule in vhost.rewrites:
            what = f"redirect {rule.status}" if rule.status is not None else "internal"
            lines.append(f"  rewrite {show(rule.match)} -> {show(rule.to)} ({what})")
        if vhost.try_files:
            lines.append(f"  try_files {' '.join(vhost.try_files)}  (vhost root)")
        if vhost.error_pages:
            lines.append(f"  error_pages {' '.join(f'{s}={p}' for s, p in vhost.error_pages)}")
        for route in routes:
            lines.append(f"  {route.prefix:<{width}}  {_describe_route(route)}")
            if route.try_files:
                lines.append(f"  {'':<{width}}    try_files {' '.join(route.try_files)}")
            if route.error_pages and route.error_pages != vhost.error_pages:
                lines.append(f"  {'':<{width}}    error_pages {' '.join(f'{s}={p}' for s, p in route.error_pages)}")
            if route.intercept_errors:
                lines.append(f"  {'':<{width}}    intercept_errors on (the backend's own errors use the pages)")
        if vhost.root is not None and all(r.prefix != "/" for r in vhost.routes):
            lines.append(f"  {'/':<{width}}  static {vhost.root}  (vhost root)")
        elif not any(r.prefix == "/" for r in vhost.routes):
            lines.append(f"  {'/':<{width}}  404  (no route, no root)")
    return "\n".join(lines)


def _describe_listener(listener: Listener) -> str:
    return f"{listener.address} (tls)" if listener.tls else str(listener.address)


def _format_limit(name: str, value: int | float) -> str:
    if name == "max_connections":
        return str(value)
    if name.startswith("max_"):
        return format_size(int(value))
    return format_duration(float(value))


def _describe_route(route: Route) -> str:
    if route.kind == "redirect":
        return f"redirect {route.redirect} (status {route.redirect_status}; rest of the path and query appended)"
    parts: list[str] = [route.kind]
    if route.program is not None:
        script_name = route.prefix[:-1] or '""'
        parts.append(f"{route.program} (one program: SCRIPT_NAME={script_name}, PATH_INFO=the rest)")
    elif route.kind in ("static", "cgi"):
        parts.append(str(route.directory))
    elif route.kind == "proxy":
        parts.append(", ".join(_proxy_url(t) for t in route.proxy))
    else:
        parts.append(", ".join(str(a) for a in route.backends))
    options: list[str] = []
    if route.kind in GATEWAY_KINDS:
        if route.root is not None:
            options.append(f"root={route.root} (script mode)")
        else:
            script_name = route.prefix[:-1] or '""'
            options.append(f"SCRIPT_NAME={script_name} (application mount)")
    if route.index:
        options.append(f"index={','.join(route.index)}")
    if route.root is not None:
        options.append(f"extensions={','.join(route.extensions) or '(any)'}")
    if route.kind == "static":
        options.append(f"autoindex={'on' if route.autoindex else 'off'}")
    if route.kind != "static":
        options.append(f"timeout={format_duration(route.timeout)}")
    if route.kind != "static" and route.kind != "cgi":
        options.append(f"connect_timeout={format_duration(route.connect_timeout)}")
    if route.kind in ROUTE_OPTIONS["request_buffering"]:
        options.append(f"request_buffering={'on' if route.request_buffering else 'off'}")
    if route.kind in ROUTE_OPTIONS["response_buffering"]:
        options.append(f"response_buffering={'on' if route.response_buffering else 'off'}")
    if route.kind in ("fastcgi", "proxy"):
        options.append(f"keepalive={route.keepalive}")
        options.append(f"keepalive_timeout={format_duration(route.keepalive_timeout)}")
    if route.kind == "cgi":
        options.append(f"max_processes={route.max_processes}")
        options.append(f"path={route.path_env}")
        options.extend(f"interpreter{ext}={program}" for ext, program in route.interpreters)
    if route.kind == "cgi" or route.kind in GATEWAY_KINDS:
        options.append(f"pass_authorization={'on' if route.pass_authorization else 'off'}")
        options.extend(f"env.{name}={show(value)}" for name, value in route.env)
    if route.kind == "proxy":
        options.append(f"host={route.host}" if route.host else "host=(client's)")
    if _describe_access(route):
        options.append(_describe_access(route))
    if route.spawn:
        options.append(f"spawn={show(shlex.join(route.spawn))} processes={route.processes} cwd={route.cwd}")
        if route.user is not None:
            options.append(f"user={route.user}")
    return "  ".join([" ".join(parts), " ".join(options)])


def _describe_access(owner: VHost | Route) -> str:
    """The effective access rules: "allow=... deny=... auth=realm:file", "" when there are none."""
    parts: list[str] = []
    if owner.allow is not None:
        parts.append(f"allow={','.join(owner.allow) or '(nobody)'}")
    if owner.deny:
        parts.append(f"deny={','.join(owner.deny)}")
    if owner.auth is not None:
        parts.append(f"auth={show(owner.auth.realm)}:{owner.auth.htpasswd}")
    if isinstance(owner, Route) and owner.authorizer:
        parts.append(f"authorizer={','.join(str(a) for a in owner.authorizer)}")
    return " ".join(parts)


def _proxy_url(target: ProxyTarget) -> str:
    address = target.address
    if address.kind == "unix":
        return f"http://unix:{address.path}" + (f":{target.path}" if target.path else "")
    return f"http://{address}{target.path or ''}"
