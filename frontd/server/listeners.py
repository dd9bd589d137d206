"""Listening sockets: TCP on IPv4/IPv6 and Unix sockets, bound before any worker starts."""

from __future__ import annotations

import errno
import os
import socket
import stat

from frontd.config.model import Address

BACKLOG = 1024


class ListenError(Exception):
    """A listener could not be bound; the message names the address and the reason."""


def _remove_stale_unix_socket(path: str) -> None:
    """Unlink a socket file nobody listens on any more (left by a crash); never another file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"unix:{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    except OSError as exc:
        raise ListenError(f"unix:{path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise ListenError(f"unix:{path}: another process is listening on it")


def bind(address: Address) -> socket.socket:
    """A non-blocking listening socket for the address."""
    try:
        if address.kind == "unix":
            _remove_stale_unix_socket(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
            os.chmod(address.path, 0o666)
        else:
            host = address.host or None
            family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
            if host is None:
                # ":port" means every address: one IPv6 socket that also takes IPv4, where there is IPv6.
                family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host is None else 1)
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), address.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return sock
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise ListenError(f"{address}: {reason}") from None


def describe(sock: socket.socket) -> str:
    """The address a socket really listens on (the port the kernel chose for port 0)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"
