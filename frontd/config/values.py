"""The loader's core: where a key is, how a mistake is reported, and the typed values every
section reads (strings, numbers, sizes, durations, tables, paths, networks, backend
addresses, environment tables).

Each section of `frontd.conf` is a class over `ValueReader` that inherits the sections it reads
with (vhosts.py reads routes, access and tls; routes.py reads rules and spawn; spawn.py reads
listeners); `load.py` combines them into the one loader that reads a file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from typing import NoReturn

from frontd.config.address import parse_address
from frontd.config.model import Address, ConfigError
from frontd.config.permissions import EXECUTE, WRITE, Identity, may, unreachable
from frontd.config.units import parse_duration, parse_size, show

EXTENSION_RE = re.compile(r"\.[^/\0]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def words(items: tuple[str, ...] | list[str]) -> str:
    """("a", "b", "c") -> "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class ValueReader:
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

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, exactly as written there."""
        text = self.string(value, key, " or ".join(f'"{c}"' for c in choices))
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.fail(key, f"expected {' or '.join(show(c) for c in choices)}, got {show(text)}{hint}")
        return text

    def directory(self, value: object, key: str) -> str:
        """An existing directory, absolute and with symlinks resolved."""
        text = self.string(value, key, "a directory path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if not os.path.exists(path):
            self.fail(key, f"directory {show(path)} does not exist")
        if not os.path.isdir(path):
            self.fail(key, f"{show(path)} is not a directory")
        return os.path.realpath(path)

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

    def readable_file(self, value: object, key: str) -> str:
        """A file frontd reads (certificate, key): absolute, existing and readable now."""
        text = self.string(value, key, "a file path")
        path = os.path.normpath(os.path.join(self.base_dir, text))
        if not os.path.isfile(path):
            self.fail(key, f"file {show(path)} does not exist")
        if not os.access(path, os.R_OK):
            self.fail(key, f"cannot read {show(path)}: permission denied")
        return path

    def log_file(self, value: object, key: str, special: tuple[str, ...]) -> str:
        if isinstance(value, str) and value in special:
            return value
        if value == "off":  # nginx's trap: "error_log off" writes a file named "off"
            self.fail(key, 'cannot be "off"; use "-" for stderr or a file')
        return self.file_path(value, key)

    def extensions(self, value: object, key: str) -> tuple[str, ...]:
        """Script-mode extensions: ".php"-like strings; [] allows any file."""
        if not isinstance(value, list):
            self.fail(key, f'expected an array of extensions such as [".php"], got {show(value)}')
        found: list[str] = []
        for i, item in enumerate(value):
            ext = self.string(item, f"{key}[{i}]", "an extension")
            if not EXTENSION_RE.fullmatch(ext):
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
