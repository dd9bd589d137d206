"""In a spawned backend's forked child: descriptors, session, identity, then exec."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import socket
from collections.abc import Callable

from frontd.server.child import PR_SET_PDEATHSIG
from frontd.server.spawn.spec import SD_LISTEN_FDS_START, Account, AppSpec

# Variables of frontd's own environment that would mislead a child: they describe frontd's start.
NOT_INHERITED = frozenset({"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                           "FRONTD_SOCKET", "FRONTD_SOCKET_FD"})
CHILD_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                         signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ)


def exec_child(spec: AppSpec, account: Account | None, listener: socket.socket, argv: list[str],
               env: dict[str, str], stdout: int, stderr: int, report: int, master_pid: int,
               prctl: Callable[..., int] | None) -> None:
    """In the forked child: set up descriptors, session, identity, then exec. Never returns."""
    stage = "setting up"
    try:
        for signum in CHILD_DEFAULT_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.setsid()
        stage = "passing the socket"
        # Everything first goes to 10 and above, so that no dup2 below overwrites a source.
        sock = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD, 10)
        null = fcntl.fcntl(os.open(os.devnull, os.O_RDWR), fcntl.F_DUPFD, 10)
        out = fcntl.fcntl(stdout, fcntl.F_DUPFD, 10)
        err = fcntl.fcntl(stderr, fcntl.F_DUPFD, 10)
        os.dup2(null, 0)
        os.dup2(out, 1)  # pipes to the master, which logs each line (output.py)
        os.dup2(err, 2)
        os.dup2(sock, spec.fd)  # inheritable: it crosses the exec
        close_other_fds({0, 1, 2, spec.fd, report})
        stage = f"changing to directory {spec.cwd}"
        os.chdir(spec.cwd)
        if account is not None:
            uid, gid, name = account
            stage = f"switching to user {name}"
            os.initgroups(name, gid)
            os.setgid(gid)
            os.setuid(uid)
        # After the change of identity, which clears it (prctl(2)); then make sure the master
        # did not die before it took effect.
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != master_pid:
            os._exit(1)
        if spec.fd == SD_LISTEN_FDS_START:
            env["LISTEN_PID"] = str(os.getpid())
        stage = f"executing {spec.argv[0]}"
        os.execve(spec.argv[0], argv, env)
    except BaseException as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            os.write(report, f"{stage}: {reason}".encode())
        except OSError:
            pass
    finally:
        os._exit(127)


def close_other_fds(keep: set[int]) -> None:
    """Close every descriptor but `keep`: frontd's own may lack close-on-exec (inherited ones)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise


def load_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once in the master (not in each child); None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None
