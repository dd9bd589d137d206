"""Loading `frontd.conf`: TOML to the frozen `Config`, every mistake caught before anything is bound.

Every error is a `ConfigError` of one line, `FILE: key.path: what is wrong (did you mean "x"?)`, so
that `frontd -t` and a refused reload can say exactly where to look. Relative paths resolve against
the directory of the config file, never the working directory.

The file's sections are read by the mixins combined into `_Loader` (see frontd/config/values.py);
`summary` (frontd -t) is in frontd/config/summary.py.
"""

from __future__ import annotations

import difflib
import grp
import importlib.util
import os
import pwd
import re
import tomllib
from typing import Any

from frontd.config.limits import LimitsSection
from frontd.config.listeners import ListenersSection
from frontd.config.model import ACCESS_LOG_FORMATS, Config, ConfigError, Limits, TLSSettings
from frontd.config.routes import script_extensions
from frontd.config.summary import summary
from frontd.config.tls import TLSSection
from frontd.config.units import show
from frontd.config.vhosts import VHostsSection

__all__ = ["ConfigError", "load_config", "parse_config", "summary"]

DEFAULT_LISTEN = "127.0.0.1:8080"
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
TOP_KEYS: tuple[str, ...] = (
    "listen", "workers", "pid_file", "error_log", "access_log", "log_level", "user", "group",
    "shutdown_timeout", "limits", "vhost", "run_dir", "tls", "acme", "access_log_format", "trusted_proxies",
    "event_loop",
)
EVENT_LOOPS: tuple[str, ...] = ("asyncio", "uvloop")
_CONFIG_DEFAULTS = Config(path="", listen=(), vhosts=())
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


class _Loader(VHostsSection, ListenersSection, LimitsSection, TLSSection):
    """One pass over one file's data: every section of the file (VHostsSection brings with it
    routes, access, rules, spawn and the core, ValueReader)."""

    def config(self, data: dict[str, object]) -> Config:
        self.check_keys(data, TOP_KEYS, "")
        listeners = self.listen(data.get("listen", DEFAULT_LISTEN))
        listen = tuple(listener.address for listener in listeners)
        workers = self.workers(data.get("workers", 1))
        pid_file = self.file_path(data["pid_file"], "pid_file") if "pid_file" in data else None
        error_log = self.log_file(data.get("error_log", "-"), "error_log", ("-",))
        access_log = self.log_file(data.get("access_log", "-"), "access_log", ("-", "off"))
        access_log_format = self.choice(data.get("access_log_format", "combined"), "access_log_format",
                                        ACCESS_LOG_FORMATS)
        log_level = self.log_level(data.get("log_level", "info"))
        user = self.account(data["user"], "user") if "user" in data else None
        group = self.account(data["group"], "group") if "group" in data else None
        shutdown_timeout = self.duration(
            data.get("shutdown_timeout", _CONFIG_DEFAULTS.shutdown_timeout),
            "shutdown_timeout",
            positive=False,
        )
        limits = self.limits(data["limits"]) if "limits" in data else Limits()
        event_loop = self.event_loop(data.get("event_loop", "asyncio"))
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
        self.check_acme_challenge(listeners, vhosts, acme)
        trusted_proxies = self.trusted_proxies(data["trusted_proxies"]) if "trusted_proxies" in data else ()
        return Config(
            path=self.path,
            listen=listen,
            vhosts=vhosts,
            workers=workers,
            pid_file=pid_file,
            error_log=error_log,
            access_log=access_log,
            access_log_format=access_log_format,
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
            trusted_proxies=trusted_proxies,
            event_loop=event_loop,
        )

    def workers(self, value: object) -> int:
        if value == "auto":
            return os.cpu_count() or 1
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail("workers", f'expected an integer >= 1 or "auto", got {show(value)}')
        if value < 1:
            self.fail("workers", f'must be at least 1 (or "auto"), got {value}')
        return value

    def event_loop(self, value: object) -> str:
        choice = self.choice(value, "event_loop", EVENT_LOOPS)
        if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
            self.fail("event_loop", "\"uvloop\" is not installed (pip install 'frontd[speed]')")
        return choice

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
