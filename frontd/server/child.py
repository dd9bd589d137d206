"""What every process the master forks does the same way: change identity, die with the master,
end without returning, and come back after a crash with the same back-off."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger("frontd")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def drop_privileges(uid: int, gid: int, name: str) -> None:
    """Become uid/gid, with the user's supplementary groups: group first, while still root."""
    os.initgroups(name, gid)
    os.setgid(gid)
    os.setuid(uid)


def run_child(what: str, body: Callable[[], None]) -> NoReturn:
    """In a forked child: run `body`, log what escapes it as "`what` failed", flush the log and
    `_exit` (never return into the master's code, never run its atexit handlers)."""
    code = 0
    try:
        body()
    except BaseException:
        log.exception("%s failed", what)
        code = 1
    finally:
        for handler in log.handlers:
            handler.flush()
        os._exit(code)


def restart_delay(quick_deaths: int, shortest: float, longest: float) -> float:
    """The wait before a restart after `quick_deaths` earlier deaths soon after start: `shortest`,
    doubling each time, never more than `longest`."""
    return min(shortest * 2 ** quick_deaths, longest)


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` when the parent dies (prctl PR_SET_PDEATHSIG); False elsewhere.

    Must run after any setuid/setgid: the kernel clears the setting when credentials change.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
