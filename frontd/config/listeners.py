"""`listen` (addresses and listener tables) and `trusted_proxies`."""

from __future__ import annotations

import os
import stat
from typing import Any

from frontd.config.address import parse_address
from frontd.config.model import Address, Listener
from frontd.config.units import show
from frontd.config.values import ValueReader

LISTENER_KEYS: tuple[str, ...] = ("address", "tls", "http2", "proxy_protocol")


class ListenersSection(ValueReader):
    """`listen`: TCP and Unix-socket listeners with their options; `trusted_proxies`."""

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
        if "address" not in table:
            self.fail(key, 'missing key "address"')
        options: dict[str, Any] = {}
        for name in ("tls", "http2", "proxy_protocol"):
            if name in table:
                options[name] = self.boolean(table[name], f"{key}.{name}")
        return table["address"], f"{key}.address", options

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

    def trusted_proxies(self, value: object) -> tuple[str, ...]:
        """Addresses and networks, and "unix:" for every client of a Unix-socket listener."""
        if isinstance(value, list) and "unix:" in value:
            rest = [item for item in value if item != "unix:"]
            return self.networks(rest, "trusted_proxies") + ("unix:",)
        return self.networks(value, "trusted_proxies")
