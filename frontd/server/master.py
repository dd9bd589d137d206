"""The master process: binds the listeners, forks the workers, and runs them with nginx's signals.

The master never serves a request. It waits for signals with every one of them blocked
(`sigtimedwait`), so a handler never runs in the middle of its work, and acts on them here:

- TERM, INT: fast stop (TERM to the workers; KILL whoever is left after FAST_STOP_TIMEOUT).
- QUIT: graceful stop (QUIT to the workers, which finish in-flight requests within
  shutdown_timeout; KILL whoever is left after that and a margin).
- HUP: reload. The file is read and validated again; if it is bad, the error is logged and the
  running configuration stays. Otherwise listeners are kept (by address) or added, a new
  generation of workers starts, and only when every new worker has reported ready (a byte on a
  pipe, once its log files are open and it accepts) are dropped listeners closed and the old
  workers told to QUIT: the listening sockets never close, so a client sees no refused
  connection and no failed request. A new generation that does not get ready is stopped and the
  old one, never told anything, carries on. The first generation at start is waited for the same
  way: if it cannot serve, frontd exits with status 1.
- USR1: reopen the log files (after logrotate renamed them), then the same in every worker.
- USR2: re-read the certificate files (the ACME client wrote a new one), then the same in every
  worker; a certificate that fails to load keeps the previous one serving. When workers run as
  another user they cannot read the keys (nor can their CGI scripts): a new generation of workers
  is started with the master's contexts instead, as a reload does.
- CHLD: reap; a worker of the current generation that died is restarted, after a back-off
  when it died young, so that a worker failing at start does not spin. Processes of spawned
  backends are the supervisor's (spawn.py): it is asked about each pid first.

When started as root with `user` set, the master stays root (to bind new listeners on reload
and reopen log files) and each worker drops to that user right after the fork, before it
accepts anything: CGI scripts and other children of workers never run as root.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import select
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from frontd.certs.files import CertificateProblem, check_certificates
from frontd.certs.internal import ensure_internal_certificates
from frontd.config.load import ConfigError, load_config
from frontd.config.model import Address, Config, Listener
from frontd.protocol.tls import Certificates
from frontd.rules import limits
from frontd.server import pidfile
from frontd.server.acme import AcmeRunner
from frontd.server.child import drop_privileges, restart_delay
from frontd.server.listeners import ListenError, bind, describe
from frontd.server.logs import fork, log_files, reopen_error_log, setup_error_log
from frontd.server.spawn import SpawnError, Supervisor
from frontd.server.worker import READY, run_worker
from frontd.status import metrics

log = logging.getLogger("frontd")

MASTER_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                            signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD})
FAST_STOP_TIMEOUT = 5.0  # workers get this long to exit after TERM before they are KILLed
QUIT_MARGIN = 5.0  # beyond shutdown_timeout, before a gracefully stopping worker is KILLed
STABLE_UPTIME = 5.0  # a worker that lived this long died of something other than its start
MIN_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
READY_TIMEOUT = 10.0  # a new generation's workers must all report ready within this, or it is given up


@dataclass(frozen=True)
class _Launch:
    """What a generation of workers is forked with: the running configuration's, or a reload's
    before it is committed (its listeners, TLS listeners among them, certificates)."""

    config: Config
    sockets: list[socket.socket]
    tls_sockets: frozenset[int]
    certificates: Certificates | None
    proxy_sockets: frozenset[int] = frozenset()  # listeners whose connections start with a PROXY header
    h2_sockets: frozenset[int] = frozenset()  # listeners that take HTTP/2 (ALPN h2, or h2c)


@dataclass
class _Slot:
    """One of the `workers` places of the current generation, and its restart history."""

    index: int
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0  # consecutive deaths soon after start: the back-off exponent
    restart_at: float | None = None


def exit_description(status: int) -> str:
    """"exited with status N" or "killed by signal SIGNAME", from a waitpid status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"killed by signal {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    return f"exited with status {os.WEXITSTATUS(status)}"


def _account(config: Config) -> tuple[int, int, str] | None:
    """(uid, gid, user name) the workers run as, or None to keep the master's identity."""
    if config.user is None:
        return None
    entry = pwd.getpwnam(config.user)
    gid = grp.getgrnam(config.group).gr_gid if config.group is not None else entry.pw_gid
    return entry.pw_uid, gid, entry.pw_name


class Master:
    """The master's state: its configuration, listeners and workers, and what each signal does to them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.listeners: dict[str, list[socket.socket]] = {}  # by address as written in the config
        self.slots: list[_Slot] = []
        self.workers: dict[int, _Slot] = {}  # pid -> slot, current generation
        self.retiring: set[int] = set()  # earlier generations, told to QUIT
        self.stopping: str | None = None  # "fast" or "graceful"
        self.stop_deadline = 0.0
        self.killed = False
        self.pid = os.getpid()
        self.supervisor = Supervisor()  # spawned backends (spawn.py)
        self.acme = AcmeRunner()  # the process that talks to the ACME CA (server/acme.py)
        # Shared with every worker forked from now on: the status page's counters.
        self.stats = metrics.create(config)
        limits.create()  # per-client counts, shared by the workers of every generation
        self.certificates: Certificates | None = None  # TLS contexts, loaded before workers fork

    # -- listeners ----------------------------------------------------------------------------

    def bind_listeners(self, config: Config) -> dict[str, list[socket.socket]]:
        """The sockets for `config.listen`: the ones already open are reused, the others bound.

        Nothing is closed here: the caller closes what the old set has and the new one lacks.
        On failure, the sockets bound by this call are closed and ListenError propagates.
        """
        available = {key: list(socks) for key, socks in self.listeners.items()}
        result: dict[str, list[socket.socket]] = {}
        fresh: list[socket.socket] = []
        try:
            for address in config.listen:
                key = str(address)
                reused = available.get(key)
                if reused:
                    sock = reused.pop(0)
                else:
                    sock = bind(address)
                    fresh.append(sock)
                result.setdefault(key, []).append(sock)
        except ListenError:
            for sock in fresh:
                sock.close()
            raise
        for sock in fresh:
            log.info("listening on %s", describe(sock))
        return result

    def replace_listeners(self, new: dict[str, list[socket.socket]], old: Config) -> None:
        """Switch to the `new` listeners; close those of `old` that are not among them."""
        kept = {id(sock) for socks in new.values() for sock in socks}
        addresses = {str(a): a for a in old.listen}
        for key, socks in self.listeners.items():
            for sock in socks:
                if id(sock) not in kept:
                    log.info("no longer listening on %s", describe(sock))
                    self._close_listener(sock, addresses.get(key))
        self.listeners = new

    def sockets(self) -> list[socket.socket]:
        return [sock for socks in self.listeners.values() for sock in socks]

    def tls_sockets(self, config: Config | None = None,
                    listeners: dict[str, list[socket.socket]] | None = None) -> frozenset[int]:
        """The file descriptors of TLS listeners."""
        return self.sockets_of(lambda listener: listener.tls, config, listeners)

    def proxy_sockets(self, config: Config | None = None,
                      listeners: dict[str, list[socket.socket]] | None = None) -> frozenset[int]:
        """The file descriptors of listeners whose connections start with a PROXY header."""
        return self.sockets_of(lambda listener: listener.proxy_protocol, config, listeners)

    def sockets_of(self, wanted: Callable[[Listener], bool], config: Config | None = None,
                   listeners: dict[str, list[socket.socket]] | None = None) -> frozenset[int]:
        """The file descriptors of the `wanted` listeners: `listen` entries matched to sockets in
        the order `bind_listeners` gave them out (the running ones, or a reload's before it is
        committed)."""
        config = config if config is not None else self.config
        available = {key: list(socks) for key, socks in (listeners if listeners is not None else self.listeners).items()}
        found: set[int] = set()
        for listener in config.listener_options():
            socks = available.get(str(listener.address))
            if socks:
                sock = socks.pop(0)
                if wanted(listener):
                    found.add(sock.fileno())
        return frozenset(found)

    # -- certificates -------------------------------------------------------------------------

    def prepare_certificates(self, config: Config) -> Certificates | None:
        """Issue local-CA certificates, check and load every certificate of `config`, before any
        worker of it forks. Raises CertificateProblem with the first error (a start fails, a reload
        keeps the running configuration)."""
        try:
            ca_path = ensure_internal_certificates(config)
        except (CertificateProblem, OSError) as exc:
            raise CertificateProblem(f"local CA: {exc}") from None
        if ca_path is not None:
            log.info("local CA for tls = \"internal\": %s", ca_path)
        problems = check_certificates(config)
        for level, message in problems:
            if level == "warning":
                log.warning("%s", message)
        errors = [message for level, message in problems if level == "error"]
        if not config.tls_listeners():
            if errors:
                raise CertificateProblem(errors[0])
            return None
        certificates = Certificates(config)
        for source, message in certificates.load():
            if source.source == "acme":
                log.error("%s", message)  # served once the ACME client writes a good one
            else:
                errors.append(message)
        if errors:
            raise CertificateProblem(errors[0])
        return certificates

    def reload_certificates(self) -> None:
        """USR2: the master's contexts (for workers it forks later), then every worker's."""
        if self.certificates is not None:
            for _, error in self.certificates.load():
                log.error("certificate reload: %s", error)
        if self.worker_account() is not None and self.certificates is not None:
            if self.replace_workers() is not None:
                log.info("certificates re-read; new workers started with them")
        else:
            self.signal_workers(signal.SIGUSR2, set(self.workers))

    def replace_workers(self) -> int | None:
        """A new generation of the running configuration replaces the workers, once it is ready;
        the number retired, or None (logged) when the new one could not start."""
        slots, workers, failure = self.start_generation()
        if failure is not None:
            log.error("cannot start new workers: %s; the running ones carry on", failure)
            return None
        return self.take_over(slots, workers)

    def take_over(self, slots: list[_Slot], workers: dict[int, _Slot]) -> int:
        """Make a generation that reported ready the current one, and tell the old to QUIT. New
        workers first, then retire the old: the listeners are never without an acceptor, and
        connections that arrive in between wait in the listen backlog. The number retired."""
        retiring = set(self.workers)
        self.slots, self.workers = slots, workers
        self.retiring |= retiring
        self.signal_workers(signal.SIGQUIT, retiring)
        return len(retiring)

    def close_listeners(self) -> None:
        addresses = {str(a): a for a in self.config.listen}
        for key, socks in self.listeners.items():
            for sock in socks:
                self._close_listener(sock, addresses.get(key))
        self.listeners = {}

    @staticmethod
    def _close_listener(sock: socket.socket, address: Address | None) -> None:
        sock.close()
        if address is not None and address.kind == "unix":
            try:
                os.unlink(address.path)
            except OSError:
                pass

    # -- accounts and log files ---------------------------------------------------------------

    def check_account(self, config: Config) -> None:
        if os.geteuid() != 0:
            if config.user is not None:
                log.warning('"user" is ignored: frontd was not started as root')
        elif config.user is None:
            log.warning('workers run as root: set "user" in %s to run them (and CGI scripts) '
                        "as an unprivileged user", config.path)

    def worker_account(self, config: Config | None = None) -> tuple[int, int, str] | None:
        if os.geteuid() != 0:
            return None
        return _account(config if config is not None else self.config)

    def prepare_log_files(self, config: Config | None = None) -> None:
        """Create the log files and give them to the workers' user, so that workers can reopen them.

        Only regular files (or missing ones): a FIFO or a device ("/dev/stdout") is the reader's or
        the system's, and opening a FIFO nobody reads would block the master."""
        config = config if config is not None else self.config
        account = self.worker_account(config)
        for target in log_files(config):
            try:
                if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
                    continue
                with open(target, "a", encoding="utf-8"):
                    pass
                if account is not None:
                    os.chown(target, account[0], account[1])
            except OSError as exc:
                log.error("cannot prepare log file %s: %s", target, exc.strerror or exc)

    def close_inherited(self) -> None:
        """In a forked child that serves nothing (the ACME process): let go of the master's sockets."""
        for sock in self.sockets():
            sock.close()
        self.supervisor.close_in_child()

    # -- workers ------------------------------------------------------------------------------

    def launch(self) -> _Launch:
        """What workers of the running configuration are forked with."""
        return _Launch(self.config, self.sockets(), self.tls_sockets(), self.certificates, self.proxy_sockets(),
                       self.sockets_of(self.config.http2))

    def spawn(self, slot: _Slot, launch: _Launch | None = None, workers: dict[int, _Slot] | None = None) -> int | None:
        """Fork a worker for `slot` (of the running configuration, unless `launch` is a reload's).
        With `workers`, the new worker goes there and the read end of its readiness pipe is
        returned: the worker writes READY on it once it can serve."""
        launch = launch if launch is not None else self.launch()
        account = self.worker_account(launch.config)
        ready_r, ready_w = os.pipe() if workers is not None else (None, None)
        for handler in log.handlers:
            handler.flush()
        sys.stdout.flush()
        stat_slot = self.stats.claim(slot.index)
        pid = fork()
        if pid == 0:
            if ready_r is not None:
                os.close(ready_r)
            self._child(launch, account, stat_slot, slot.index, ready_w)
        if ready_w is not None:
            os.close(ready_w)
        self.stats.started(stat_slot, pid)
        slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        (workers if workers is not None else self.workers)[pid] = slot
        log.info("worker %d started", pid)
        return ready_r

    def _child(self, launch: _Launch, account: tuple[int, int, str] | None, stat_slot: int, number: int,
               ready: int | None) -> None:
        """In the forked worker: never returns."""
        code = 0
        try:
            metrics.STATS.attach(self.stats, stat_slot, number)
            self.supervisor.close_in_child()
            # A reload's workers are forked while the listeners it drops are still open here.
            mine = {id(sock) for sock in launch.sockets}
            for sock in self.sockets():
                if id(sock) not in mine:
                    sock.close()
            # The mask stays blocked until the worker's own handlers are in place (worker.py).
            for signum in MASTER_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # A terminal hangup is the master's business (reload), not a reason to die.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            if account is not None:
                drop_privileges(*account)
            run_worker(launch.config, launch.sockets, self.pid, launch.tls_sockets, launch.certificates, ready,
                       proxy_sockets=launch.proxy_sockets, h2_sockets=launch.h2_sockets)
        except OSError as exc:
            # A file the worker opens at start (the access log): one line says which and why.
            log.error("worker cannot start: %s", exc)
            code = 1
        except BaseException:
            log.exception("worker failed")
            code = 1
        finally:
            for handler in log.handlers:
                handler.flush()
            os._exit(code)

    def start_generation(self, launch: _Launch | None = None) -> tuple[list[_Slot], dict[int, _Slot], str | None]:
        """Fork a full generation of workers (of the running configuration, unless `launch` is a
        reload's) and wait until each reported ready: (its slots, its workers, None), or with the
        reason why one did not (it died, or stayed silent for READY_TIMEOUT). The caller makes
        them the current generation (`take_over`); a failed one is already being stopped."""
        launch = launch if launch is not None else self.launch()
        slots = [_Slot(i) for i in range(launch.config.workers)]
        workers: dict[int, _Slot] = {}
        pipes: dict[int, int] = {}  # read end -> pid
        failure: str | None = None
        ready: set[int] = set()
        for slot in slots:
            try:
                fd = self.spawn(slot, launch, workers)
            except OSError as exc:
                failure = f"cannot fork a worker: {exc.strerror or exc}"
                break
            assert fd is not None
            pipes[fd] = slot.pid
        try:
            if failure is None:
                failure = self._await_ready(pipes, ready, workers)
        finally:
            for fd in pipes:
                os.close(fd)
        if failure is not None:
            self._abandon(workers, ready)
        return slots, workers, failure

    def _await_ready(self, pipes: dict[int, int], ready: set[int], workers: dict[int, _Slot]) -> str | None:
        """Wait for READY on every pipe (read end -> worker pid), adding each pid that sent it to
        `ready`; the first failure, or None. A worker that died is reaped here (and dropped
        from `workers`), so that its exit status is in the reason.

        The master's signals stay blocked meanwhile and are acted on afterwards: a worker that
        starts at all is ready in milliseconds, and one that is not gets at most READY_TIMEOUT.
        """
        waiting = dict(pipes)
        poller = select.poll()  # not select(): descriptor numbers may pass FD_SETSIZE
        for fd in waiting:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                pids = ", ".join(str(pid) for pid in sorted(waiting.values()))
                return f"worker {pids} did not report ready within {READY_TIMEOUT:g}s"
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                pid = waiting.pop(fd)
                if os.read(fd, 1) == READY:
                    ready.add(pid)
                    continue
                # The pipe's only writer is gone: the worker is exiting (it logged why).
                _, status = os.waitpid(pid, 0)
                self.stats.exited(pid)
                del workers[pid]
                return f"worker {pid} {exit_description(status)} before it was ready to serve"
        return None

    def _abandon(self, workers: dict[int, _Slot], ready: set[int]) -> None:
        """Stop a generation that failed to start. A worker that reported ready may have accepted
        connections already: QUIT lets it finish them. One that did not has accepted nothing and
        may be stuck with its signals blocked: KILL."""
        for pid in workers:
            try:
                os.kill(pid, signal.SIGQUIT if pid in ready else signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.retiring.add(pid)

    def signal_workers(self, signum: int, pids: set[int] | None = None) -> None:
        for pid in (pids if pids is not None else set(self.workers) | self.retiring):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.stats.exited(pid)
            how = exit_description(status)
            if self.supervisor.reaped(pid, how) or self.acme.reaped(pid, how):
                continue  # a spawned backend's process or the ACME process, not a worker
            if os.WIFSIGNALED(status):
                limits.worker_killed()  # its client_connections counts were never released
            if pid in self.retiring:
                self.retiring.discard(pid)
                log.info("worker %d %s", pid, how)
                continue
            slot = self.workers.pop(pid, None)
            if slot is None:
                continue
            if self.stopping:
                log.info("worker %d %s", pid, how)
                continue
            # A worker of the current generation is not meant to exit: replace it.
            now = time.monotonic()
            if now - slot.started >= STABLE_UPTIME:
                slot.quick_deaths = 0
            # The first quick death restarts at once; the next ones back off.
            delay = 0.0 if slot.quick_deaths == 0 else restart_delay(slot.quick_deaths - 1, MIN_RESTART_DELAY,
                                                                      MAX_RESTART_DELAY)
            slot.quick_deaths += 1
            slot.restart_at = now + delay
            log.error("worker %d %s; starting a new one%s", pid, how,
                      f" in {delay:g}s" if delay else "")

    def restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self.spawn(slot)

    # -- signals ------------------------------------------------------------------------------

    def stop(self, how: str) -> None:
        if self.stopping == "fast" or self.stopping == how:
            return
        self.stopping = how
        # New clients are refused from now on instead of waiting in a backlog nobody accepts from.
        self.close_listeners()
        self.acme.stop()  # no request needs it
        if how == "fast":
            log.info("fast shutdown: stopping the workers")
            self.signal_workers(signal.SIGTERM)
            self.stop_deadline = time.monotonic() + FAST_STOP_TIMEOUT
        else:
            log.info("graceful shutdown: waiting for in-flight requests (up to %gs)", self.config.shutdown_timeout)
            self.signal_workers(signal.SIGQUIT)
            self.stop_deadline = time.monotonic() + self.config.shutdown_timeout + QUIT_MARGIN

    def reload(self) -> None:
        log.info("reloading configuration from %s", self.config.path)
        try:
            config = load_config(self.config.path)
        except ConfigError as exc:
            log.error("configuration reload failed: %s; still running the previous configuration", exc)
            return
        try:
            plan = self.supervisor.prepare(config, _account(config) if os.geteuid() == 0 else None)
        except SpawnError as exc:
            log.error("configuration reload failed: %s; still running the previous configuration", exc)
            return
        try:
            certificates = self.prepare_certificates(config)
        except CertificateProblem as exc:
            self.supervisor.discard(plan)
            log.error("configuration reload failed: %s; still running the previous configuration", exc)
            return
        try:
            listeners = self.bind_listeners(config)
        except ListenError as exc:
            self.supervisor.discard(plan)
            log.error("configuration reload failed: cannot listen on %s; still running the previous configuration",
                      exc)
            return
        if config.pid_file != self.config.pid_file:
            log.warning("pid_file changed; it takes effect at the next start (still %s)", self.config.pid_file)
            config = replace(config, pid_file=self.config.pid_file)
        old = self.config
        new_log = (config.error_log, config.log_level) != (old.error_log, old.log_level)
        if new_log:
            # Before the fork: the new workers inherit the master's error log.
            try:
                setup_error_log(config.error_log, config.log_level)
            except OSError as exc:
                self._close_new_listeners(listeners, config)
                self.supervisor.discard(plan)
                log.error("configuration reload failed: error_log %s: %s; still running the previous "
                          "configuration", config.error_log, exc.strerror or exc)
                return
        self.check_account(config)
        self.stats.configured(config)
        self.prepare_log_files(config)
        # The new generation proves it can serve before anything of the old one is let go.
        launch = _Launch(config, [s for socks in listeners.values() for s in socks],
                         self.tls_sockets(config, listeners), certificates, self.proxy_sockets(config, listeners),
                         self.sockets_of(config.http2, config, listeners))
        slots, workers, failure = self.start_generation(launch)
        if failure is not None:
            self._close_new_listeners(listeners, config)
            self.supervisor.discard(plan)
            if new_log:
                setup_error_log(old.error_log, old.log_level)
            self.stats.configured(old)
            log.error("configuration reload failed: %s; still running the previous configuration "
                      "with %d worker(s)", failure, len(self.workers))
            return
        self.replace_listeners(listeners, old)
        self.config = config
        self.certificates = certificates
        # Spawned backends: new ones start, kept ones are renewed (their sockets were bound by prepare).
        self.supervisor.apply(plan)
        retiring = self.take_over(slots, workers)
        self.acme.reload(config, self.worker_account(), self.close_inherited)
        log.info("configuration reloaded; %d old worker(s) finishing their requests", retiring)

    def _close_new_listeners(self, listeners: dict[str, list[socket.socket]], config: Config) -> None:
        """A failed reload: close the sockets `bind_listeners` opened for it (not the running ones)."""
        running = {id(sock) for sock in self.sockets()}
        addresses = {str(a): a for a in config.listen}
        for key, socks in listeners.items():
            for sock in socks:
                if id(sock) not in running:
                    log.info("no longer listening on %s", describe(sock))
                    self._close_listener(sock, addresses.get(key))

    def reopen(self) -> None:
        log.info("reopening log files")
        reopen_error_log()
        self.prepare_log_files()
        self.signal_workers(signal.SIGUSR1, set(self.workers))
        self.acme.signal(signal.SIGUSR1)

    def on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop("fast")
        elif signum == signal.SIGQUIT:
            self.stop("graceful")
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGUSR1:
            self.reopen()
        elif signum == signal.SIGUSR2:
            self.reload_certificates()  # from the ACME process: a certificate changed

    # -- the loop -----------------------------------------------------------------------------

    def timeout(self) -> float | None:
        """Seconds until the loop has something to do without a signal, or None for never."""
        if self.stopping:
            due = [] if self.killed or not (self.workers or self.retiring) else [self.stop_deadline]
        else:
            due = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        for pending in (self.supervisor.next_due(), self.acme.next_due()):
            if pending is not None:
                due.append(pending)
        if not due:
            return None
        return max(min(due) - time.monotonic(), 0.001)

    def serve(self) -> None:
        while not (self.stopping and not self.workers and not self.retiring and self.supervisor.idle()
                   and self.acme.idle()):
            timeout = self.timeout()
            if timeout is None:
                info = signal.sigwaitinfo(MASTER_SIGNALS)
                signum: int | None = info.si_signo
            else:
                found = signal.sigtimedwait(MASTER_SIGNALS, timeout)
                signum = found.si_signo if found is not None else None
            if signum is not None and signum != signal.SIGCHLD:
                self.on_signal(signum)
            self.reap()
            if self.stopping:
                left = set(self.workers) | self.retiring
                if left and not self.killed and time.monotonic() >= self.stop_deadline:
                    log.warning("killing %d worker(s) still running after the stop deadline", len(left))
                    self.signal_workers(signal.SIGKILL)
                    self.killed = True
                if not left:
                    # Only now: until the workers are gone, their requests may need the applications.
                    self.supervisor.stop(FAST_STOP_TIMEOUT)
            else:
                self.restart_due()
                self.acme.tick()
            self.supervisor.tick(old_workers=bool(self.retiring))


def run(config: Config) -> int:
    """Run frontd from `config` until stopped; the exit status of the `frontd` command."""
    try:
        setup_error_log(config.error_log, config.log_level)
    except OSError as exc:  # the check at load passed, and then the file system changed
        print(f"frontd: error_log {config.error_log}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    # Blocked from the start: a signal that arrives while starting waits for the loop instead of
    # killing the master half-way. SIGCHLD gets a handler so that it is never discarded as ignored.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
    master = Master(config)
    if config.pid_file is not None:
        try:
            pidfile.create(config.pid_file)
        except pidfile.PidFileError as exc:
            log.error("%s", exc)
            print(f"frontd: {exc}", file=sys.stderr)
            return 1
    try:
        try:
            master.listeners = master.bind_listeners(config)
        except ListenError as exc:
            log.error("cannot listen on %s", exc)
            raise
        master.check_account(config)
        master.prepare_log_files()
        try:
            master.certificates = master.prepare_certificates(config)
        except CertificateProblem as exc:
            log.error("%s", exc)
            print(f"frontd: {exc}", file=sys.stderr)
            return 1
        try:
            # After binding, before the workers: they find the applications' sockets ready.
            master.supervisor.start(config, master.worker_account())
        except SpawnError as exc:
            log.error("%s", exc)
            print(f"frontd: {exc}", file=sys.stderr)
            return 1
        master.slots, master.workers, failure = master.start_generation()
        if failure is not None:
            log.error("cannot start: %s", failure)
            print(f"frontd: cannot start: {failure} (see the error log)", file=sys.stderr)
            master.signal_workers(signal.SIGKILL)
            for pid in master.retiring:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            return 1
        master.acme.start(config, master.worker_account(), master.close_inherited)
        log.info("frontd %d started with %d worker(s)", master.pid, config.workers)
        master.serve()
    finally:
        master.acme.stop()
        master.supervisor.close()
        master.close_listeners()
        if master.config.pid_file is not None:
            pidfile.remove(master.config.pid_file)
    log.info("exiting")
    return 0
