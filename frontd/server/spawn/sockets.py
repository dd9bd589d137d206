"""The sockets of spawned backends and the run directory they live in (master side)."""

from __future__ import annotations

import hashlib
import os
import socket
import stat

from frontd.config.address import MAX_UNIX_PATH
from frontd.config.model import Address
from frontd.server.listeners import ListenError, bind
from frontd.server.spawn.spec import Account, SpawnError


def make_run_dir(path: str, worker_account: Account | None) -> None:
    """Create `path` (mode 0700; 0711 when workers run as another user, who must reach the sockets
    in it) or check the existing one: a directory of frontd's user that nobody else can write to,
    since whoever can replace a socket there receives the requests."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SpawnError(f"run_dir {path}: cannot create it: {exc.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise SpawnError(f"run_dir {path}: not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SpawnError(f"run_dir {path}: must belong to uid {os.geteuid()} and be writable by no one "
                         f"else (it belongs to uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")
    other = worker_account is not None and worker_account[0] != os.geteuid()
    os.chmod(path, 0o711 if other else 0o700)


def listen(address: Address, worker_account: Account | None) -> socket.socket:
    """The listening socket of a group: blocking, as the applications expect of what they inherit
    (O_NONBLOCK is shared by every copy of the descriptor); the master itself never accepts."""
    try:
        sock = bind(address)
    except ListenError as exc:
        raise SpawnError(f"cannot create the socket {exc}") from None
    sock.setblocking(True)
    if address.kind == "unix":
        # Only the workers connect: they run as the worker account when frontd is root.
        if worker_account is not None:
            os.chown(address.path, worker_account[0], worker_account[1])
        os.chmod(address.path, 0o660)
    return sock


def close_socket(sock: socket.socket, path: str) -> None:
    """Close a group's socket and remove its file ("" for a TCP socket: nothing to remove)."""
    sock.close()
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def poke(target: str | Address, count: int) -> None:
    """Open and at once close `count` connections to a listening socket (a Unix socket path, or a
    TCP address): each wakes one process blocked in accept(2), which then sees it was told to stop."""
    for _ in range(count):
        try:
            if isinstance(target, str):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.setblocking(False)  # a full backlog: nobody is blocked in accept anyway
                    sock.connect(target)
            else:
                socket.create_connection((target.host, target.port), timeout=0.2).close()
        except OSError:
            return


def successor_path(path: str, avoid: str | None) -> str | None:
    """Where a reload binds the new socket before renaming it over `path` (not `avoid`, the path
    of a successor still being built); None if no name fits in a sockaddr_un."""
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    directory = os.path.dirname(path)
    for candidate in (f"{path}.new", f"{path}.nxt", os.path.join(directory, f".{digest}n"),
                      os.path.join(directory, f".{digest}x")):
        if len(candidate) <= MAX_UNIX_PATH and candidate != avoid:
            return candidate
    return None
