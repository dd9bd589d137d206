"""Spawned backends (docs/spawn.md): a route's spawn options, its command, and run_dir."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from frontd.config.address import MAX_UNIX_PATH, parse_address
from frontd.config.listeners import ListenersSection
from frontd.config.model import Address, ProxyTarget
from frontd.config.permissions import EXECUTE, READ, Identity, interpreter, may, unreachable
from frontd.config.units import show

SPAWN_ONLY: tuple[str, ...] = ("processes", "cwd", "user", "socket")
_SOCKET_NAME_RE = re.compile(r"[^A-Za-z0-9.-]+")


class SpawnSection(ListenersSection):
    """`spawn` on a route, the socket frontd creates for it, and `run_dir`."""

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
