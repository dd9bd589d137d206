"""The pid file: written atomically by the master, read by `frontd -s` to find the master.

A pid file is "live" when the process it names exists and is a frontd; anything else (no file,
garbage, a dead process, a pid reused by another program) is stale and may be replaced.
"""

from __future__ import annotations

import os
import signal
import sys

from frontd.config.model import Config

# `frontd -s NAME` sends these, with nginx's meanings.
SIGNALS: dict[str, signal.Signals] = {
    "reload": signal.SIGHUP,
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reopen": signal.SIGUSR1,
}


class PidFileError(Exception):
    """The pid file cannot be taken (a live frontd holds it) or written; the message says which."""


def read_pid(path: str) -> int | None:
    """The pid in the file, or None when the file is missing or holds no pid."""
    try:
        with open(path, "rb") as file:
            text = file.read(64)
    except FileNotFoundError:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10:
        return None
    pid = int(text)
    return pid if pid > 0 else None


def is_frontd(pid: int) -> bool:
    """Whether `pid` is a running frontd (not a dead process, nor another program that reused the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: a live process is taken to be ours
    return b"frontd" in cmdline


def create(path: str) -> None:
    """Write our pid to `path` atomically (a temporary file renamed over it).

    Raises PidFileError when a live frontd other than us already holds the file.
    """
    pid = os.getpid()
    held = read_pid(path)
    if held is not None and held != pid and is_frontd(held):
        raise PidFileError(f"pid file {path} is held by frontd process {held}, which is running")
    tmp = f"{path}.{pid}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as file:
            file.write(f"{pid}\n")
        os.chmod(tmp, 0o644)
        # rename(2) is atomic: a reader sees the old file or the complete new one, never a partial pid.
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PidFileError(f"cannot write pid file {path}: {exc.strerror or exc}") from None


def remove(path: str) -> None:
    """Delete the pid file, but only while it still names us (a newer master may have taken it)."""
    if read_pid(path) != os.getpid():
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def send_signal(config: Config, name: str) -> int:
    """`frontd -s NAME`: signal the master named in the pid file; 0 when sent, 1 with a message otherwise."""
    path = config.pid_file
    if path is None:
        print(f"frontd: {config.path}: no pid_file is set, so the running master cannot be found",
              file=sys.stderr)
        return 1
    if not os.path.exists(path):
        print(f"frontd: pid file {path} does not exist (is frontd running?)", file=sys.stderr)
        return 1
    pid = read_pid(path)
    if pid is None:
        print(f"frontd: pid file {path} holds no pid", file=sys.stderr)
        return 1
    if not is_frontd(pid):
        print(f"frontd: pid file {path} is stale: process {pid} is not a running frontd", file=sys.stderr)
        return 1
    try:
        os.kill(pid, SIGNALS[name])
    except ProcessLookupError:
        print(f"frontd: process {pid} from {path} exited before it could be signalled", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"frontd: not allowed to signal process {pid} from {path} (run as its user or root)",
              file=sys.stderr)
        return 1
    return 0
