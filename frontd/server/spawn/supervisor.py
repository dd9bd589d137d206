"""The supervisor: the master's book of spawned processes, their restarts, reloads and stops."""

from __future__ import annotations

import collections
import grp
import logging
import os
import pwd
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from frontd.config.address import MAX_UNIX_PATH
from frontd.config.model import Address, Config
from frontd.server.child import restart_delay
from frontd.server.logs import fork
from frontd.server.spawn.child import NOT_INHERITED, exec_child, load_prctl
from frontd.server.spawn.output import OutputRelay
from frontd.server.spawn.sockets import close_socket, listen, make_run_dir, poke, successor_path
from frontd.server.spawn.spec import SD_LISTEN_FDS_START, Account, AppSpec, SpawnError, app_specs, substitute
from frontd.status import metrics

log = logging.getLogger("frontd")

STABLE_UPTIME = 5.0  # a process that lived this long died of something other than its start
MIN_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
READY_DELAY = 1.0  # on reload, how long a new process must stay alive before the next step
DRAIN_DELAY = 1.0  # after the switch, how long the old processes accept what is queued for them
POKE_INTERVAL = 0.2  # while a told process lives, how often its socket gets wake-up connections
STOP_GRACE = 5.0  # SIGTERM to SIGKILL, for processes that served nothing (abandoned successors)


@dataclass(slots=True, eq=False)
class _Process:
    """A live child: in a slot of its group, or retired (told to stop, or about to be)."""

    pid: int
    group: _Group
    started: float
    slot: _Slot | None = None  # None once retired
    stop_at: float | None = None  # replaced by a reload: SIGTERM at this time (its _Draining's)
    grace: float = 0.0  # from SIGTERM to SIGKILL
    deadline: float | None = None  # SIGTERM sent: SIGKILL at this time
    killed: bool = False
    execed: bool = True  # False: it failed before exec (and is about to exit 127)

    @property
    def retired(self) -> bool:
        return self.stop_at is not None or self.deadline is not None


@dataclass(slots=True, eq=False)
class _Slot:
    """One of a group's `processes` places and its restart history."""

    index: int
    process: _Process | None = None
    quick_deaths: int = 0  # consecutive deaths soon after start: the back-off exponent
    restart_at: float | None = None


@dataclass(slots=True, eq=False)
class _Successor:
    """A reload's new processes for a group on a Unix socket, started one at a time on a socket
    of their own (bound at `path`) while the running ones carry on; renamed over the group's
    path once all of them are up."""

    sock: socket.socket
    path: str
    slots: list[_Slot] = field(default_factory=list)
    ready_at: float = 0.0  # the latest one has proven itself (stayed alive) at this time


@dataclass(slots=True, eq=False)
class _Draining:
    """The old processes after a switch, and their old socket: kept by the master, and reachable
    at `link` (a hard link made before the rename), until they are told to stop at `term_at`."""

    sock: socket.socket
    link: str | None
    processes: list[_Process]
    term_at: float


@dataclass(slots=True, eq=False)
class _Told:
    """Processes told to stop that may be blocked in accept(2) on `target`: a signal does not
    wake one (its runtime retries the call, as Python does, PEP 475), a connection does. Each
    process may take any of the connections, or several (one that drains its backlog before it
    exits), so one round of them is no proof: `target` gets a round for those left every
    POKE_INTERVAL until all have exited. `sock`, the master's copy of a drained socket, is closed
    (and `link` removed) then."""

    target: str | Address
    sock: socket.socket | None
    link: str | None
    processes: list[_Process]
    poke_at: float


@dataclass(slots=True, eq=False)
class _Probation:
    """A reload's replacement on a shared TCP socket: `new` took the slot, `old` stops at `ready_at`."""

    new: _Process
    old: _Process | None
    ready_at: float


@dataclass(slots=True, eq=False)
class _Group:
    """The processes of one spawn route, the socket they share and the account they run as."""

    spec: AppSpec
    sock: socket.socket
    account: Account | None
    slots: list[_Slot] = field(default_factory=list)
    successor: _Successor | None = None
    draining: list[_Draining] = field(default_factory=list)
    replace: collections.deque[int] = field(default_factory=collections.deque)  # TCP: slots to renew
    probation: _Probation | None = None
    restarts: int = 0  # processes started again after one died


@dataclass(slots=True)
class Plan:
    """A reload's groups, prepared (sockets bound) before the new configuration is committed."""

    config: Config
    specs: dict[str, AppSpec]
    accounts: dict[str, Account | None]
    fresh: dict[str, socket.socket] = field(default_factory=dict)  # groups that are new
    successors: dict[str, tuple[socket.socket, str]] = field(default_factory=dict)  # kept, Unix


class Supervisor:
    """The spawned processes of every spawn route; driven by the master's loop."""

    def __init__(self) -> None:
        self.config: Config | None = None
        self.groups: dict[str, _Group] = {}
        self.leaving: list[_Group] = []  # dropped by a reload; stopped when old workers are gone
        self.processes: dict[int, _Process] = {}  # every live child of ours, by pid
        self.told: list[_Told] = []  # stopping processes, and where to wake them
        self.stopping = False
        self.master_pid = os.getpid()
        self._warned_users: set[str] = set()
        self._links = 0
        self._prctl = load_prctl()
        self.output = OutputRelay()  # the processes' stdout and stderr, into the error log

    # -- setting up and reloading --------------------------------------------------------------

    def start(self, config: Config, worker_account: Account | None) -> None:
        """Create the sockets and start every process; SpawnError when a socket cannot be made."""
        self.apply(self.prepare(config, worker_account))

    def prepare(self, config: Config, worker_account: Account | None) -> Plan:
        """Bind the sockets `config` needs (new groups; the successors of kept Unix groups);
        nothing else changes until `apply`. SpawnError, with nothing left bound, on failure."""
        specs = app_specs(config)
        try:
            accounts = {key: self._account(spec, config) for key, spec in specs.items()}
        except KeyError as exc:  # the user existed when the file was loaded
            raise SpawnError(f"no such user or group: {exc}") from None
        plan = Plan(config, specs, accounts)
        try:
            for key, spec in specs.items():
                if key not in self.groups:
                    if spec.socket.kind == "unix" and os.path.dirname(spec.socket.path) == config.run_dir:
                        make_run_dir(config.run_dir, worker_account)
                    plan.fresh[key] = listen(spec.socket, worker_account)
                elif spec.socket.kind == "unix":
                    # A reload during a reload: the successor being built still holds its path.
                    busy = self.groups[key].successor
                    path = successor_path(spec.socket.path, busy.path if busy is not None else None)
                    if path is not None:
                        address = Address(kind="unix", path=path)
                        plan.successors[key] = (listen(address, worker_account), path)
        except SpawnError:
            self.discard(plan)
            raise
        return plan

    def discard(self, plan: Plan) -> None:
        """Close what `prepare` bound, for a reload that failed after it."""
        for key, sock in plan.fresh.items():
            close_socket(sock, plan.specs[key].socket.path)
        for sock, path in plan.successors.values():
            close_socket(sock, path)

    def apply(self, plan: Plan) -> None:
        """Switch to the groups of `plan`: start the new, renew the kept, retire the dropped."""
        self.config = plan.config
        for key in list(self.groups):
            if key not in plan.specs:
                dropped = self.groups.pop(key)
                self._abandon(dropped)
                self.leaving.append(dropped)
        for key, spec in plan.specs.items():
            group = self.groups.get(key)
            if group is None:
                group = _Group(spec, plan.fresh[key], plan.accounts[key])
                self.groups[key] = group
                log.info("%s: %d process(es) on %s: %s", spec.label, spec.processes, spec.socket,
                         " ".join(spec.argv))
                for index in range(spec.processes):
                    group.slots.append(_Slot(index))
                    self._start(group, group.slots[-1])
                continue
            self._abandon(group)
            group.spec, group.account = spec, plan.accounts[key]
            if key in plan.successors:
                sock, path = plan.successors[key]
                group.successor = _Successor(sock, path)
                log.info("%s: starting %d new process(es) beside the running ones", spec.label, spec.processes)
                continue
            # A TCP socket cannot be switched: replace the processes on it one at a time.
            kept = min(len(group.slots), spec.processes)
            for slot in group.slots[spec.processes:]:
                if slot.process is not None:
                    self._retire(slot.process, grace=plan.config.shutdown_timeout)
            del group.slots[spec.processes:]
            for index in range(kept, spec.processes):
                group.slots.append(_Slot(index))
                self._start(group, group.slots[-1])
            group.replace = collections.deque(range(kept))
            log.info("%s: replacing %d process(es) one at a time", spec.label, kept)
        self.tick(old_workers=True)

    def _account(self, spec: AppSpec, config: Config) -> Account | None:
        """Who the processes run as: None keeps frontd's own identity (frontd is not root)."""
        if os.geteuid() != 0:
            if spec.user is not None and spec.user != pwd.getpwuid(os.geteuid()).pw_name:
                if spec.user not in self._warned_users:
                    self._warned_users.add(spec.user)
                    log.warning('%s: "user = %s" is ignored: frontd was not started as root', spec.label, spec.user)
            return None
        name = spec.user if spec.user is not None else config.user
        if name is None:  # the loader refuses this; never fall back to root silently
            raise SpawnError(f"{spec.label}: no user to run the processes as")
        entry = pwd.getpwnam(name)
        gid = entry.pw_gid
        if spec.user is None and config.group is not None:
            gid = grp.getgrnam(config.group).gr_gid
        return entry.pw_uid, gid, entry.pw_name

    # -- the master's loop ---------------------------------------------------------------------

    def reaped(self, pid: int, how: str) -> bool:
        """The master reaped `pid`, which ended as `how`; False when it is not one of ours."""
        process = self.processes.pop(pid, None)
        if process is None:
            return False
        self._settle(process, how)
        self._report(process.group)
        return True

    def _settle(self, process: _Process, how: str) -> None:
        """What the end of `process` means: nothing (it was told to stop), an abandoned reload,
        or a restart of its slot, at once or after a back-off."""
        pid, group, label = process.pid, process.group, process.group.spec.label
        slot = process.slot
        successor, probation = group.successor, group.probation
        if probation is not None and process is probation.old:
            probation.old = None  # never to be signalled: its pid may be reused from now on
        if process.retired or self.stopping or slot is None or group in self.leaving:
            log.info("%s: process %d %s", label, pid, how)
            self._kill_group(pid)  # whatever it left behind in its process group
            return
        slot.process = None
        if successor is not None and slot in successor.slots:
            # The new code does not run: keep the processes that do.
            log.error("%s: new process %d %s before it took over; the running processes carry on "
                      "(reload abandoned for this application)", label, pid, how)
            self._abandon(group)
            return
        now = time.monotonic()
        if probation is not None and process is probation.new:
            group.probation = None
            if probation.old is not None:
                log.error("%s: new process %d %s within %gs of its start; keeping process %d, "
                          "not replacing the others", label, pid, how, READY_DELAY, probation.old.pid)
                probation.old.slot, slot.process = slot, probation.old
                group.replace.clear()
                return
        if now - process.started >= STABLE_UPTIME:
            slot.quick_deaths = 0
        # The first quick death restarts at once; the next ones back off.
        delay = 0.0 if slot.quick_deaths == 0 else restart_delay(slot.quick_deaths - 1, MIN_RESTART_DELAY,
                                                                  MAX_RESTART_DELAY)
        slot.quick_deaths += 1
        slot.restart_at = now + delay
        log.error("%s: process %d %s; starting a new one%s", label, pid, how,
                  f" in {delay:g}s" if delay else "")

    def tick(self, *, old_workers: bool) -> None:
        """Do what is due: restarts, the next step of a reload, SIGTERM and SIGKILL of retired
        processes; with no `old_workers` left, stop the groups a reload dropped."""
        now = time.monotonic()
        if not old_workers and self.leaving and self.config is not None:
            for group in self.leaving:
                log.info("%s: no longer in the configuration; stopping its processes", group.spec.label)
                metrics.backend_stopped(group.spec.socket, False, kind=group.spec.kind)
                for draining in list(group.draining):
                    self._end_drain(group, draining, now)
                for slot in group.slots:
                    if slot.process is not None:
                        self._retire(slot.process, grace=self.config.shutdown_timeout)
                close_socket(group.sock, group.spec.socket.path)
            self.leaving = []
        for group in [*self.groups.values(), *self.leaving]:
            for draining in [d for d in group.draining if now >= d.term_at]:
                self._end_drain(group, draining, now)
        self._wake_told(now)
        for process in list(self.processes.values()):
            if process.deadline is not None and not process.killed and now >= process.deadline:
                log.warning("%s: process %d did not exit after SIGTERM; killing it",
                            process.group.spec.label, process.pid)
                self._kill_group(process.pid)
                process.killed = True
        if self.stopping:
            return
        for group in self.groups.values():
            for slot in group.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    group.restarts += 1
                    metrics.backend_restarted(group.spec.socket, kind=group.spec.kind)
                    self._start(group, slot)
            if group.successor is not None:
                self._step_successor(group, now)
            else:
                self._step_replacement(group, now)

    def _wake_told(self, now: float) -> None:
        """A round of wake-up connections where told processes are left; let go of the socket of
        those all gone."""
        for told in list(self.told):
            left = [p for p in told.processes if p.pid in self.processes and not p.killed]
            if not left:
                if told.sock is not None:
                    close_socket(told.sock, told.link or "")
                self.told.remove(told)
            elif now >= told.poke_at:
                poke(told.target, len(left))
                told.poke_at = now + POKE_INTERVAL

    def next_due(self) -> float | None:
        """The monotonic time of the next thing `tick` has to do, or None."""
        due: list[float] = [told.poke_at for told in self.told]
        for process in self.processes.values():
            if process.stop_at is not None:
                due.append(process.stop_at)
            elif process.deadline is not None and not process.killed:
                due.append(process.deadline)
        if not self.stopping:
            for group in self.groups.values():
                due.extend(s.restart_at for s in group.slots if s.restart_at is not None)
                if group.successor is not None:
                    due.append(group.successor.ready_at)
                if group.probation is not None:
                    due.append(group.probation.ready_at)
        return min(due) if due else None

    def stop(self, grace: float) -> None:
        """SIGTERM to every process (once), SIGKILL to those left after `grace`."""
        if self.stopping:
            return
        self.stopping = True
        now = time.monotonic()
        for process in self.processes.values():
            process.grace = grace
            if process.deadline is not None:  # already told: no longer than `grace` from now
                process.deadline = min(process.deadline, now + grace)
        for group in [*self.groups.values(), *self.leaving]:
            for draining in list(group.draining):
                self._end_drain(group, draining, now)
        for process in list(self.processes.values()):
            if process.deadline is None:
                self._terminate(process, now)
        for group in [*self.groups.values(), *self.leaving]:
            if group.successor is not None:
                self.told.append(_Told(group.successor.path, None, None,
                                       [s.process for s in group.successor.slots if s.process is not None], now))
            live = [p for p in self.processes.values() if p.group is group and p.slot in group.slots]
            self.told.append(_Told(group.spec.socket.path or group.spec.socket, None, None, live, now))
        self._wake_told(now)

    def idle(self) -> bool:
        """No process of ours is left (the master may exit)."""
        return not self.processes

    def close_in_child(self) -> None:
        """In a forked worker: drop our copies of the sockets (the master keeps them open)."""
        for group in [*self.groups.values(), *self.leaving]:
            group.sock.close()
            if group.successor is not None:
                group.successor.sock.close()
            for draining in group.draining:
                draining.sock.close()
        for told in self.told:
            if told.sock is not None:
                told.sock.close()
        self.output.close_in_child()

    def close(self) -> None:
        """At the master's exit: kill what is left, close the sockets and remove their files."""
        for pid in list(self.processes):
            self._kill_group(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.processes.clear()
        self.output.close()
        for group in [*self.groups.values(), *self.leaving]:
            close_socket(group.sock, group.spec.socket.path)
            if group.successor is not None:
                close_socket(group.successor.sock, group.successor.path)
            for draining in group.draining:
                close_socket(draining.sock, draining.link or "")
        for told in self.told:
            if told.sock is not None:
                close_socket(told.sock, told.link or "")
        self.groups, self.leaving, self.told = {}, [], []
        if self.config is not None:
            try:
                os.rmdir(self.config.run_dir)  # only when empty: it may hold other things
            except OSError:
                pass

    def snapshot(self) -> list[dict[str, object]]:
        """Per group: label, socket, command, the pids running and how many were restarted."""
        return [{"label": g.spec.label, "kind": g.spec.kind, "socket": str(g.spec.socket),
                 "argv": list(g.spec.argv), "processes": g.spec.processes,
                 "pids": [s.process.pid for s in g.slots if s.process is not None],
                 "restarts": g.restarts} for g in self.groups.values()]

    # -- reload --------------------------------------------------------------------------------

    def _step_successor(self, group: _Group, now: float) -> None:
        """Start the next new process once the last one proved itself; when all are up, switch.

        rename(2) replaces the socket file atomically: from then on workers connect to the new
        socket, while the old processes accept what is already queued on theirs. They get
        SIGTERM only DRAIN_DELAY later, when the old socket has no more connections coming, so
        that an application that drops what it just accepted when told to stop (flup does)
        drops nothing.
        """
        successor = group.successor
        assert successor is not None and self.config is not None
        if now < successor.ready_at:
            return
        if len(successor.slots) < group.spec.processes:
            slot = _Slot(len(successor.slots))
            successor.slots.append(slot)
            successor.ready_at = now + READY_DELAY
            if not self._start(group, slot, successor.sock):
                log.error("%s: the running processes carry on (reload abandoned for this application)",
                          group.spec.label)
                self._abandon(group)
            return
        label, path = group.spec.label, group.spec.socket.path
        # The old socket stays reachable under another name, for `_end_drain` to wake its acceptors.
        self._links += 1  # unique: the drain of an earlier switch may still use its link
        name = f"{path}.old{self._links}"
        link = name if len(name) <= MAX_UNIX_PATH else None
        if link is not None:
            try:
                try:
                    os.unlink(link)  # left by a crash
                except FileNotFoundError:
                    pass
                os.link(path, link)
            except OSError:
                link = None
        try:
            os.rename(successor.path, path)
        except OSError as exc:
            log.error("%s: cannot switch to the new processes: rename %s: %s; the running processes "
                      "carry on", label, successor.path, exc.strerror)
            if link is not None:
                os.unlink(link)
            self._abandon(group)
            return
        term_at = now + DRAIN_DELAY
        old: list[_Process] = []
        for slot in group.slots:
            process, slot.process = slot.process, None
            if process is not None:
                process.slot, process.stop_at, process.grace = None, term_at, self.config.shutdown_timeout
                old.append(process)
        group.draining.append(_Draining(group.sock, link, old, term_at))
        group.sock, group.slots, group.successor = successor.sock, successor.slots, None
        log.info("%s: the new processes took over; the old ones get SIGTERM in %gs", label, DRAIN_DELAY)

    def _end_drain(self, group: _Group, draining: _Draining, now: float) -> None:
        """SIGTERM to every old process of a switch at once, and wake-up connections to their old
        socket until each has exited (`_Told`): no real connection comes there any more. The
        master keeps that socket until then; without a link to reach it, it is let go now."""
        live = [p for p in draining.processes if p.pid in self.processes and p.deadline is None]
        for process in live:
            self._terminate(process, now)
        group.draining.remove(draining)
        if draining.link is None:
            draining.sock.close()
            return
        self.told.append(_Told(draining.link, draining.sock, draining.link, live, now))
        self._wake_told(now)

    def _step_replacement(self, group: _Group, now: float) -> None:
        """TCP: replace the next process on the shared socket; its predecessor stops READY_DELAY later."""
        probation = group.probation
        if probation is not None:
            if now < probation.ready_at:
                return
            self._conclude_probation(group)
        while group.replace:
            slot = group.slots[group.replace.popleft()]
            old = slot.process
            if old is None:  # dead and waiting for its restart, which uses the new spec anyway
                continue
            old.slot = None
            slot.process = None
            slot.quick_deaths, slot.restart_at = 0, None
            if self._start(group, slot) and slot.process is not None:
                group.probation = _Probation(slot.process, old, now + READY_DELAY)
            else:  # keep the old one in its place, and stop replacing
                slot.restart_at, slot.process, old.slot = None, old, slot
                group.replace.clear()
            return

    def _conclude_probation(self, group: _Group) -> None:
        probation, group.probation = group.probation, None
        if probation is not None and probation.old is not None and self.config is not None:
            self._retire(probation.old, grace=self.config.shutdown_timeout)
            # On the shared socket a wake-up connection may reach any process, so the first
            # round waits a little: most processes exit on the signal alone.
            self.told.append(_Told(group.spec.socket, None, None, [probation.old],
                                   time.monotonic() + POKE_INTERVAL))

    def _abandon(self, group: _Group) -> None:
        """Give up a reload in progress: stop the successors (they never got a connection), or
        finish the TCP replacement under way."""
        successor, group.successor = group.successor, None
        if successor is not None:
            for slot in successor.slots:
                if slot.process is not None:
                    self._retire(slot.process, grace=STOP_GRACE)
            close_socket(successor.sock, successor.path)
        self._conclude_probation(group)
        group.replace.clear()

    # -- processes -----------------------------------------------------------------------------

    def _retire(self, process: _Process, *, grace: float) -> None:
        """Take the process out of its slot: SIGTERM now, SIGKILL `grace` later."""
        if process.slot is not None:
            process.slot.process = None
            process.slot = None
        if process.deadline is None:  # not told yet (a stop may have told it already)
            process.grace = grace
            self._terminate(process, time.monotonic())

    def _terminate(self, process: _Process, now: float) -> None:
        process.stop_at = None
        process.deadline = now + process.grace
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    @staticmethod
    def _kill_group(pid: int) -> None:
        """SIGKILL the process group the process leads (its own session: setsid at start)."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _report(self, group: _Group) -> None:
        """Tell the status page how many processes serve the group's socket now, and the workers
        whether any can accept: when none can (each slot waits out a back-off, or holds a
        process that failed before exec), a request gets 503 at once instead of waiting in the
        socket's backlog for the route's timeout."""
        running = sum(1 for p in self.processes.values() if p.group is group)
        metrics.backend_processes(group.spec.socket, running, kind=group.spec.kind)
        now = time.monotonic()
        # A group dropped by a reload no longer answers for its address, which a later
        # configuration may give to a backend frontd does not run.
        current = self.groups.get(str(group.spec.socket)) is group
        stopped = current and bool(group.slots) and not any(
            (s.process is not None and s.process.execed)
            or (s.process is None and s.restart_at is not None and s.restart_at <= now)  # restarting now
            for s in group.slots)
        metrics.backend_stopped(group.spec.socket, stopped, kind=group.spec.kind)

    def _start(self, group: _Group, slot: _Slot, sock: socket.socket | None = None) -> bool:
        """Fork and exec one process for `slot` on `sock` (the group's); a failure before exec is
        logged with its reason and shows up as the process's exit (status 127). False when not
        even the fork worked: the slot is then tried again after the usual back-off."""
        assert self.config is not None
        spec = group.spec
        argv = substitute(spec.argv, spec.socket, spec.fd)
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(spec.env)
        env["FRONTD_SOCKET"] = str(spec.socket)
        env["FRONTD_SOCKET_FD"] = str(spec.fd)
        if spec.fd == SD_LISTEN_FDS_START:
            env["LISTEN_FDS"] = "1"
        if group.account is not None:
            home = pwd.getpwnam(group.account[2]).pw_dir
            env.update(HOME=home, USER=group.account[2], LOGNAME=group.account[2])
        for handler in log.handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        pipes: list[int] = []
        try:
            for _ in range(3):
                pipes.extend(os.pipe())  # close-on-exec; the report pipe's end is a successful exec
            pid = fork()
        except OSError as exc:
            for fd in pipes:
                os.close(fd)
            self._start_failed(group, slot, exc)
            return False
        report_r, report_w, out_r, out_w, err_r, err_w = pipes
        if pid == 0:
            for fd in (report_r, out_r, err_r):
                os.close(fd)
            exec_child(spec, group.account, sock or group.sock, argv, env, out_w, err_w, report_w,
                       self.master_pid, self._prctl)
        for fd in (report_w, out_w, err_w):
            os.close(fd)
        chunks = []
        while True:
            data = os.read(report_r, 4096)
            if not data:
                break
            chunks.append(data)
        os.close(report_r)
        process = _Process(pid, group, time.monotonic(), slot, execed=not chunks)
        self.processes[pid] = process
        slot.process, slot.restart_at = process, None
        if chunks:
            log.error("%s: cannot start %s: %s", spec.label, spec.argv[0],
                      b"".join(chunks).decode(errors="replace"))
        else:
            log.info("%s: process %d started", spec.label, pid)
        source = f"{spec.label}: process {pid}"
        self.output.add(out_r, source, logging.INFO)
        self.output.add(err_r, source, logging.WARNING)
        self._report(group)
        return True

    def _start_failed(self, group: _Group, slot: _Slot, exc: OSError) -> None:
        delay = restart_delay(slot.quick_deaths, MIN_RESTART_DELAY, MAX_RESTART_DELAY)
        slot.quick_deaths += 1
        slot.restart_at = time.monotonic() + delay
        log.error("%s: cannot start a process: %s; trying again in %gs", group.spec.label,
                  exc.strerror or exc, delay)
        self._report(group)
