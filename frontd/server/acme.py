"""The ACME process: the one process that talks to the CA, forked and owned by the master.

It exists while some vhost has tls = "acme". Like a spawned backend it is stopped with the master
(SIGTERM; it also gets SIGTERM if the master dies) and restarted when it dies, after a back-off
when it died young. A reload replaces it with one running the new configuration. It runs as the
master's user: keys stay readable by that user only, while the workers (another user when frontd
starts as root) can read the challenge answers and state files they serve.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from frontd.certs import acme
from frontd.certs.store import ensure_dir
from frontd.config.model import Config
from frontd.server.child import restart_delay, run_child, set_parent_death_signal
from frontd.server.logs import fork, reopen_error_log

log = logging.getLogger("frontd")

Account = tuple[int, int, str]
STABLE_UPTIME = 30.0  # an ACME process that lived this long died of something else than its start
MIN_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 300.0


class AcmeRunner:
    """The master's handle on the ACME process: start, reap, restart with back-off, stop."""

    def __init__(self) -> None:
        self.pid = 0
        self.started = 0.0
        self.quick_deaths = 0
        self.restart_at: float | None = None
        self.retiring: set[int] = set()
        self.stopping = False
        self.config: Config | None = None
        self.account: Account | None = None
        self.close_inherited: Callable[[], None] = lambda: None

    def start(self, config: Config, account: Account | None, close_inherited: Callable[[], None]) -> None:
        """Run the ACME process for `config` (none when no vhost has tls = "acme").

        `close_inherited` runs in the child: it closes the master's listeners and backend sockets,
        so that a stopped master's ports do not stay open in a process that serves nothing."""
        self.config, self.account, self.close_inherited = config, account, close_inherited
        self.quick_deaths, self.restart_at = 0, None
        if config.acme is not None and acme.jobs(config):
            self._spawn()

    def reload(self, config: Config, account: Account | None, close_inherited: Callable[[], None]) -> None:
        """The new configuration's ACME process replaces the running one."""
        self._retire()
        self.start(config, account, close_inherited)

    def stop(self) -> None:
        self.stopping = True
        self.restart_at = None
        self._retire()

    def signal(self, signum: int) -> None:
        """Pass a signal on to the running ACME process (USR1: reopen the error log)."""
        if self.pid:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def idle(self) -> bool:
        return self.pid == 0 and not self.retiring

    def next_due(self) -> float | None:
        return self.restart_at

    def tick(self) -> None:
        if self.restart_at is not None and time.monotonic() >= self.restart_at and not self.stopping:
            self._spawn()

    def reaped(self, pid: int, how: str) -> bool:
        """Whether `pid` was an ACME process; a current one that died is restarted after a back-off."""
        if pid in self.retiring:
            self.retiring.discard(pid)
            log.info("acme process %d %s", pid, how)
            return True
        if pid != self.pid or pid == 0:
            return False
        self.pid = 0
        if self.stopping:
            log.info("acme process %d %s", pid, how)
            return True
        now = time.monotonic()
        if now - self.started >= STABLE_UPTIME:
            self.quick_deaths = 0
        delay = restart_delay(self.quick_deaths, MIN_RESTART_DELAY, MAX_RESTART_DELAY)
        self.quick_deaths += 1
        self.restart_at = now + delay
        log.error("acme process %d %s; starting a new one in %gs", pid, how, delay)
        return True

    def _retire(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.retiring.add(self.pid)
            self.pid = 0

    def _spawn(self) -> None:
        assert self.config is not None and self.config.acme is not None
        for handler in log.handlers:
            handler.flush()
        sys.stdout.flush()
        master = os.getpid()
        pid = fork()  # with the log handlers quiet: the master has a logging thread
        if pid == 0:
            self._child(master)
        self.pid, self.started, self.restart_at = pid, time.monotonic(), None
        log.info("acme process %d started", pid)

    def _child(self, master: int) -> None:
        """In the forked ACME process: never returns."""
        run_child("acme process", lambda: self._run(master))

    def _run(self, master: int) -> None:
        assert self.config is not None and self.config.acme is not None
        self.close_inherited()
        for signum in range(1, signal.NSIG):
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda signum, frame: reopen_error_log())
        storage = self.config.acme.storage
        ensure_dir(storage)
        workers_gid: int | None = None
        if self.account is not None:
            # Workers run as another user. Like the master, this process keeps root, so that the
            # keys it writes (0600) stay out of reach of workers and their CGI scripts; workers reach
            # only what they serve: directories they may traverse but not list, challenge answers,
            # state files and certificate chains (public; the status page shows them).
            for sub in ("", "certificates", "challenges", "challenges/http-01", "challenges/tls-alpn-01", "state"):
                path = os.path.join(storage, sub)
                ensure_dir(path)
                os.chmod(path, 0o711)
            workers_gid = self.account[1]
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != master:
            return  # the master is already gone
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        acme.Manager(self.config.acme, acme.jobs(self.config), acme.notify_master(master),
                     workers_gid=workers_gid).run()
