"""What every process the master forks does the same way: change identity, and end without returning."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger("frontd")


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
