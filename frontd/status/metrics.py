"""Counters shared by the master and its workers, and the snapshot the status page is made from.

The master creates one anonymous shared mapping (`mmap(-1, n)`, MAP_SHARED) before it forks the
first worker, so every worker of every generation sees the same pages. The area is a flat array of
signed 64-bit cells ('q'), in five parts, each with exactly one writer, so nothing is locked:

    header          magic, capacities, master pid, start and config-load times, generation,
                    backends registered                                          master
    slot table      per counter slot: state, worker number, pid, generation, start time   master
    backend table   per backend: kind and address as NUL-padded bytes, last generation in the
                    configuration, spawned processes, restarts, stopped (no spawned
                    process can accept)                                          master
    slot counters   per slot: the worker's cells, then the cells of each backend (plus one scratch
                    backend for addresses nobody registered)                     the worker owning the slot

A slot belongs to one live worker process at a time. The master picks it at fork time (`claim`),
preferring a free slot that served the same worker number before, so that "worker 1" keeps its
history across reloads and restarts while an old generation and a new one run side by side (each
process has a slot of its own: two processes never add to the same cell). When a worker exits,
the master zeroes the slot's gauges (active connections, backends marked down) and frees it;
its counters stay and go on growing under the next process of that worker number. Readers sum
every slot ever used, so the totals never go back when a worker exits.

A reader may see a counter one request behind; an aligned 8-byte store is never torn on the
platforms frontd runs on (x86-64, arm64), so no value is ever half-written.

Workers record through `STATS` (protocol/http1.py, gateway/backends.py); the spawn supervisor in the
master reports through `backend_processes`, `backend_stopped` and `backend_restarted`.
"""

from __future__ import annotations

import bisect
import contextvars
import logging
import mmap
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from frontd.config.model import Address, Config

log = logging.getLogger("frontd")

MAGIC = 0x66726F6E74640001  # "frontd", layout 1
MAX_BACKENDS = 128
MIN_SLOTS = 32
NAME_SIZE = 256  # bytes per backend name: kind (KIND_SIZE) then address
KIND_SIZE = 16

# Latency buckets, upper bounds in seconds (the Prometheus `le` of each bucket); one more bucket
# holds everything slower than the last bound.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
_BOUNDS_US: tuple[int, ...] = tuple(round(b * 1_000_000) for b in LATENCY_BOUNDS)
BUCKETS = len(LATENCY_BOUNDS) + 1
CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")

# Header cells.
H_MAGIC, H_SLOTS, H_BACKENDS_MAX, H_PID, H_STARTED, H_LOADED, H_GENERATION, H_BACKENDS = range(8)
HEADER_CELLS = 8
# Slot table cells (per slot).
S_STATE, S_WORKER, S_PID, S_GENERATION, S_STARTED = range(5)
SLOT_CELLS = 5
UNUSED, LIVE, EXITED = 0, 1, 2
# Backend table cells (per backend), after the name bytes.
T_SEEN, T_PROCESSES, T_RESTARTS, T_STOPPED = range(4)
TABLE_CELLS = NAME_SIZE // 8 + 4
# A worker's own cells. Responses by class are cells 1..5, the class digit being the cell; their
# sum is the number of requests. Cell 0 counts failed Basic-auth attempts (wrong credentials).
W_AUTH_FAILED = 0
W_CLASSES, W_ACTIVE, W_CONNECTIONS, W_BYTES, W_LATENCY_SUM, W_BUCKETS = 1, 6, 7, 8, 9, 10
# HTTP/2's share of the connections (open now, accepted) and its streams, after the buckets.
W_H2_ACTIVE, W_H2_CONNECTIONS, W_H2_STREAMS = W_BUCKETS + BUCKETS, W_BUCKETS + BUCKETS + 1, W_BUCKETS + BUCKETS + 2
WORKER_CELLS = W_BUCKETS + BUCKETS + 3
# A worker's cells for one backend, responses by class again in cells 1..5.
B_CLASSES, B_BYTES, B_FAILURES, B_DOWN_UNTIL, B_LAST_FAILURE, B_LATENCY_SUM, B_BUCKETS = 1, 6, 7, 8, 9, 10, 11
BACKEND_CELLS = B_BUCKETS + BUCKETS
# Cell of a status code's class, by its first digit: anything outside 1xx-5xx counts as 5xx.
_CLASS_CELL: tuple[int, ...] = (5, 1, 2, 3, 4, 5, 5, 5, 5, 5)


def _now_us() -> int:
    return time.time_ns() // 1000


def backend_key(address: Address | str) -> str:
    """How a backend is named in the shared table: its address as the configuration writes it."""
    return str(address)


class Area:
    """The shared mapping and its layout; the master's bookkeeping methods live here too."""

    def __init__(self, slots: int, backends: int = MAX_BACKENDS) -> None:
        self.slots = slots
        self.backends = backends
        self.slot_size = WORKER_CELLS + (backends + 1) * BACKEND_CELLS
        self.slot_table = HEADER_CELLS
        self.backend_table = self.slot_table + (slots + 1) * SLOT_CELLS
        self.counters = self.backend_table + backends * TABLE_CELLS
        cells = self.counters + (slots + 1) * self.slot_size  # the last slot is the scratch slot
        # Anonymous mappings are MAP_SHARED by default: forked workers write to the same pages.
        # Pages are only allocated when first written, so unused slots and backends cost nothing.
        self.map = mmap.mmap(-1, cells * 8)
        self.cells = memoryview(self.map).cast("q")
        c = self.cells
        c[H_MAGIC], c[H_SLOTS], c[H_BACKENDS_MAX] = MAGIC, slots, backends
        c[H_PID], c[H_STARTED] = os.getpid(), _now_us()
        # Master-side state, never read by workers.
        self._keys: dict[str, int] = {}
        self._pids: dict[int, int] = {}  # pid -> slot
        self._full_warned = False

    # -- layout ---------------------------------------------------------------------------------

    def slot_cell(self, slot: int) -> int:
        return self.slot_table + slot * SLOT_CELLS

    def table_cell(self, backend: int) -> int:
        return self.backend_table + backend * TABLE_CELLS

    def counter_cell(self, slot: int) -> int:
        return self.counters + slot * self.slot_size

    @property
    def scratch_slot(self) -> int:
        return self.slots

    def backend_name(self, backend: int) -> tuple[str, str]:
        """(kind, address) of a registered backend."""
        start = self.table_cell(backend) * 8
        raw = bytes(self.map[start:start + NAME_SIZE])
        kind = raw[:KIND_SIZE].rstrip(b"\0").decode("utf-8", "replace")
        address = raw[KIND_SIZE:].rstrip(b"\0").decode("utf-8", "replace")
        return kind, address

    def lookup(self, address: Address | str) -> int:
        """The id of a registered backend, or `self.backends` (the scratch backend) if unknown.

        Workers call this once per BackendSet, reading the table the master wrote; the master may
        register an address after the fork (a spawned backend's socket) and workers still see it.
        """
        key = backend_key(address).encode("utf-8", "replace")
        for backend in range(min(self.cells[H_BACKENDS], self.backends)):
            start = self.table_cell(backend) * 8 + KIND_SIZE
            if bytes(self.map[start:start + NAME_SIZE - KIND_SIZE]).rstrip(b"\0") == key:
                return backend
        return self.backends

    # -- master side ----------------------------------------------------------------------------

    def register(self, kind: str, address: Address | str) -> int:
        """The id of a backend, registering it if new (master only); the scratch id when full."""
        key = backend_key(address)
        found = self._keys.get(key)
        if found is not None:
            if kind and not self.backend_name(found)[0]:
                # Reported by the supervisor before a configuration named its kind.
                start = self.table_cell(found) * 8
                self.map[start:start + KIND_SIZE] = kind.encode("utf-8", "replace")[:KIND_SIZE].ljust(KIND_SIZE, b"\0")
            return found
        n = self.cells[H_BACKENDS]
        if n >= self.backends:
            if not self._full_warned:
                log.warning("status: more than %d backends; %s and later ones are not counted",
                            self.backends, key)
                self._full_warned = True
            return self.backends
        start = self.table_cell(n) * 8
        name = kind.encode("utf-8", "replace")[:KIND_SIZE].ljust(KIND_SIZE, b"\0")
        name += key.encode("utf-8", "replace")[:NAME_SIZE - KIND_SIZE].ljust(NAME_SIZE - KIND_SIZE, b"\0")
        self.map[start:start + NAME_SIZE] = name
        self.cells[self.table_cell(n) + NAME_SIZE // 8 + T_SEEN] = self.cells[H_GENERATION]
        # Published last: a reader never sees a count that covers a half-written name.
        self.cells[H_BACKENDS] = n + 1
        self._keys[key] = n
        return n

    def configured(self, config: Config) -> None:
        """A configuration was (re)loaded: next generation, load time, and its backends registered."""
        c = self.cells
        c[H_GENERATION] += 1
        c[H_LOADED] = _now_us()
        for kind, address in config_backends(config):
            backend = self.register(kind, address)
            if backend < self.backends:
                c[self.table_cell(backend) + NAME_SIZE // 8 + T_SEEN] = c[H_GENERATION]

    def claim(self, worker: int) -> int:
        """A free slot for a new process of worker number `worker` (master, before the fork).

        A slot that served this worker number before comes first (its counters go on), then a
        slot never used, then any free slot (its history then shows under the new number).
        """
        c = self.cells
        fresh = other = -1
        for slot in range(self.slots):
            base = self.slot_cell(slot)
            state = c[base + S_STATE]
            if state == EXITED and c[base + S_WORKER] == worker:
                return self._take(slot, worker)
            if state == UNUSED and fresh < 0:
                fresh = slot
            elif state == EXITED and other < 0:
                other = slot
        if fresh >= 0:
            return self._take(fresh, worker)
        if other >= 0:
            return self._take(other, worker)
        log.warning("status: all %d counter slots are in use; worker %d is not counted", self.slots, worker)
        return self.scratch_slot

    def _take(self, slot: int, worker: int) -> int:
        c = self.cells
        base = self.slot_cell(slot)
        c[base + S_WORKER] = worker
        c[base + S_PID] = 0
        c[base + S_GENERATION] = c[H_GENERATION]
        c[base + S_STARTED] = _now_us()
        c[base + S_STATE] = LIVE
        return slot

    def started(self, slot: int, pid: int) -> None:
        """The process forked for `slot` is `pid` (master, after the fork)."""
        if slot < self.slots:
            self.cells[self.slot_cell(slot) + S_PID] = pid
            self._pids[pid] = slot

    def exited(self, pid: int) -> None:
        """Worker `pid` is gone (master, after waitpid): reset its gauges and free its slot."""
        slot = self._pids.pop(pid, None)
        if slot is None:
            return
        c = self.cells
        counters = self.counter_cell(slot)
        # Gauges describe a live process; a worker killed mid-request left them non-zero.
        c[counters + W_ACTIVE] = 0
        c[counters + W_H2_ACTIVE] = 0
        for backend in range(min(c[H_BACKENDS], self.backends)):
            c[counters + WORKER_CELLS + backend * BACKEND_CELLS + B_DOWN_UNTIL] = 0
        base = self.slot_cell(slot)
        c[base + S_PID] = 0
        c[base + S_STATE] = EXITED

    def set_processes(self, backend: int, running: int) -> None:
        if backend < self.backends:
            table = self.table_cell(backend) + NAME_SIZE // 8
            self.cells[table + T_PROCESSES] = running
            # A backend frontd runs belongs to the running configuration even if no route names it.
            self.cells[table + T_SEEN] = self.cells[H_GENERATION]

    def set_stopped(self, backend: int, stopped: bool) -> None:
        if backend < self.backends:
            self.cells[self.table_cell(backend) + NAME_SIZE // 8 + T_STOPPED] = int(stopped)

    def add_restart(self, backend: int) -> None:
        if backend < self.backends:
            self.cells[self.table_cell(backend) + NAME_SIZE // 8 + T_RESTARTS] += 1

    # -- readers --------------------------------------------------------------------------------

    def snapshot(self, worker: int = -1) -> Snapshot:
        """Every counter, summed per worker number, per backend and in total (any process)."""
        c = self.cells
        now_us = _now_us()
        n_backends = min(c[H_BACKENDS], self.backends)
        generation = c[H_GENERATION]
        workers: dict[int, WorkerView] = {}
        backends = []
        http2 = [0, 0, 0]  # active connections, connections, streams
        for backend in range(n_backends):
            kind, address = self.backend_name(backend)
            table = self.table_cell(backend) + NAME_SIZE // 8
            backends.append(BackendView(
                id=backend, kind=kind, address=address,
                configured=c[table + T_SEEN] == generation,
                processes=c[table + T_PROCESSES], restarts=c[table + T_RESTARTS]))
        for slot in range(self.slots):
            base = self.slot_cell(slot)
            state = c[base + S_STATE]
            if state == UNUSED:
                continue
            number = c[base + S_WORKER]
            view = workers.get(number)
            if view is None:
                view = workers[number] = WorkerView(number=number)
            counters = self.counter_cell(slot)
            cells = c[counters:counters + WORKER_CELLS].tolist()
            view.counts.add(cells, W_CLASSES, W_BYTES, W_LATENCY_SUM, W_BUCKETS)
            view.active += cells[W_ACTIVE]
            view.connections += cells[W_CONNECTIONS]
            view.auth_failures += cells[W_AUTH_FAILED]
            http2[0] += cells[W_H2_ACTIVE]
            http2[1] += cells[W_H2_CONNECTIONS]
            http2[2] += cells[W_H2_STREAMS]
            if state == LIVE:
                view.pids.append(c[base + S_PID])
                view.generation = max(view.generation, c[base + S_GENERATION])
            for b in backends:
                start = counters + WORKER_CELLS + b.id * BACKEND_CELLS
                cells = c[start:start + BACKEND_CELLS].tolist()
                if not any(cells):
                    continue
                per = b.workers.get(number)
                if per is None:
                    per = b.workers[number] = BackendWorkerView(number=number)
                per.counts.add(cells, B_CLASSES, B_BYTES, B_LATENCY_SUM, B_BUCKETS)
                per.failures += cells[B_FAILURES]
                per.last_failure = max(per.last_failure, cells[B_LAST_FAILURE])
                if state == LIVE and cells[B_DOWN_UNTIL] > now_us:
                    per.down = True
        totals = Counts()
        active = connections = auth_failures = 0
        for view in workers.values():
            totals.merge(view.counts)
            active += view.active
            connections += view.connections
            auth_failures += view.auth_failures
        for b in backends:
            for per in b.workers.values():
                b.counts.merge(per.counts)
                b.failures += per.failures
                b.last_failure = max(b.last_failure, per.last_failure)
                b.down_workers += per.down
        return Snapshot(
            now=now_us / 1e6, master_pid=c[H_PID], started=c[H_STARTED] / 1e6,
            config_loaded=c[H_LOADED] / 1e6, generation=generation, answered_by=worker,
            totals=totals, active=active, connections=connections,
            workers=[workers[n] for n in sorted(workers)], backends=backends,
            auth_failures=auth_failures,
            http2_active=http2[0], http2_connections=http2[1], http2_streams=http2[2],
        )


# -- snapshot: plain values, what render.py formats ------------------------------------------------


@dataclass(slots=True)
class Counts:
    """Requests, responses by class, bytes sent and the latency histogram, summed over slots."""

    requests: int = 0
    responses: list[int] = field(default_factory=lambda: [0] * 5)  # 1xx..5xx
    bytes_sent: int = 0
    latency_sum_us: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)  # not cumulative

    def add(self, cells: list[int], classes: int, sent: int, latency: int, buckets: int) -> None:
        """Add a slot's cells: 5 class cells from `classes` (1xx first), bytes, latency sum, buckets."""
        for i in range(5):
            self.requests += cells[classes + i]
            self.responses[i] += cells[classes + i]
        self.bytes_sent += cells[sent]
        self.latency_sum_us += cells[latency]
        for i in range(BUCKETS):
            self.buckets[i] += cells[buckets + i]

    def merge(self, other: Counts) -> None:
        self.requests += other.requests
        self.responses = [a + b for a, b in zip(self.responses, other.responses)]
        self.bytes_sent += other.bytes_sent
        self.latency_sum_us += other.latency_sum_us
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]

    @property
    def observed(self) -> int:
        """Requests in the latency histogram: all but WebSocket tunnels (101)."""
        return sum(self.buckets)

    def percentile(self, q: float) -> float | None:
        return percentile(self.buckets, q)


def percentile(buckets: list[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) in seconds, from per-bucket counts; None with no observation.

    Within its bucket the value is interpolated linearly, as Prometheus' histogram_quantile does;
    a quantile that falls in the last, unbounded bucket is reported as the last bound.
    """
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            if i == len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[i - 1] if i > 0 else 0.0
            upper = LATENCY_BOUNDS[i]
            return lower + (upper - lower) * max(rank - seen, 0.0) / count
        seen += count
    return LATENCY_BOUNDS[-1]


@dataclass(slots=True)
class WorkerView:
    number: int
    pids: list[int] = field(default_factory=list)  # live processes with this number (two during a reload)
    generation: int = 0  # of the newest live process; 0 when none is running
    active: int = 0
    connections: int = 0
    counts: Counts = field(default_factory=Counts)
    auth_failures: int = 0


@dataclass(slots=True)
class BackendWorkerView:
    number: int
    down: bool = False
    failures: int = 0
    last_failure: int = 0  # µs since the epoch, 0 = never
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class BackendView:
    id: int
    kind: str
    address: str
    configured: bool  # named by the running configuration (not only by an earlier one)
    processes: int  # spawned processes running, as the supervisor reported
    restarts: int
    failures: int = 0
    last_failure: int = 0
    down_workers: int = 0  # live workers that currently skip this backend (passive health)
    counts: Counts = field(default_factory=Counts)
    workers: dict[int, BackendWorkerView] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.down_workers == 0


@dataclass(slots=True)
class Snapshot:
    now: float  # seconds since the epoch, like every time below
    master_pid: int
    started: float
    config_loaded: float
    generation: int
    answered_by: int  # worker number of the process that took the snapshot, -1 outside a worker
    totals: Counts
    active: int
    connections: int
    workers: list[WorkerView]
    backends: list[BackendView]
    auth_failures: int = 0  # failed Basic-auth attempts (wrong, unknown or malformed credentials)
    # HTTP/2's share of `active` and `connections`, and the streams (requests) it carried.
    http2_active: int = 0
    http2_connections: int = 0
    http2_streams: int = 0

    @property
    def uptime(self) -> float:
        return max(self.now - self.started, 0.0)


def config_backends(config: Config) -> list[tuple[str, Address]]:
    """(kind, address) of every backend the configuration names, in order, without repeats."""
    seen: dict[str, tuple[str, Address]] = {}
    for vhost in config.vhosts:
        for route in vhost.routes:
            addresses: Iterable[Address] = (
                [t.address for t in route.proxy] if route.kind == "proxy" else route.backends)
            for address in addresses:
                seen.setdefault(backend_key(address), (route.kind, address))
    return list(seen.values())


# -- the worker's side: where protocol/http1.py and backends.py record -------------------------------

# The backend the current request went to (set when a connection to it is handed out, read when
# the request is logged): a context variable, because each connection is served by its own task.
_current_backend: contextvars.ContextVar[int] = contextvars.ContextVar("frontd_backend", default=-1)
_bisect = bisect.bisect_left
_monotonic = time.monotonic


class WorkerStats:
    """The cells of this process's slot. Until `attach`, a private scratch area: counting then
    goes nowhere (unit tests, a worker run without a master)."""

    def __init__(self) -> None:
        self.area: Area | None = None
        self.worker = -1
        self.slot = -1
        self._w = memoryview(bytearray(WORKER_CELLS * 8)).cast("q")
        self._b = memoryview(bytearray((MAX_BACKENDS + 1) * BACKEND_CELLS * 8)).cast("q")
        self._scratch_backend = MAX_BACKENDS

    def attach(self, area: Area, slot: int, worker: int) -> None:
        """Write into `slot` of the shared area from now on (in the worker, right after the fork)."""
        self.area, self.slot, self.worker = area, slot, worker
        start = area.counter_cell(slot)
        self._w = area.cells[start:start + WORKER_CELLS]
        start += WORKER_CELLS
        self._b = area.cells[start:start + (area.backends + 1) * BACKEND_CELLS]
        self._scratch_backend = area.backends

    def backend_id(self, address: Address | str) -> int:
        """The id under which a BackendSet records `address` (the scratch id when unregistered)."""
        if self.area is None:
            return self._scratch_backend
        return self.area.lookup(address)

    # Hot path: a few integer adds into the shared memoryview; no lock, no system call.

    def connection_opened(self) -> None:
        w = self._w
        w[W_ACTIVE] += 1
        w[W_CONNECTIONS] += 1

    def connection_closed(self) -> None:
        self._w[W_ACTIVE] -= 1

    def http2_connection(self, opened: bool) -> None:
        """An HTTP/2 connection opened or closed (besides connection_opened/_closed)."""
        w = self._w
        w[W_H2_ACTIVE] += 1 if opened else -1
        if opened:
            w[W_H2_CONNECTIONS] += 1

    def http2_stream(self) -> None:
        self._w[W_H2_STREAMS] += 1

    def auth_failed(self) -> None:
        """A request came with Basic credentials that did not let it in."""
        self._w[W_AUTH_FAILED] += 1

    def request(self, status: int, size: int, started: float) -> None:
        """One finished request (as the access log records it): status, body bytes, start time.

        The request count is not a cell of its own: it is the sum of the class cells. A 101 (a
        WebSocket tunnel, logged when it closes) stays out of the latency histogram: its duration
        is the tunnel's life, not the time to answer.
        """
        us = int((_monotonic() - started) * 1_000_000) if status != 101 else -1
        cls = _CLASS_CELL[(status // 100) % 10]
        w = self._w
        w[cls] += 1
        w[W_BYTES] += size
        if us >= 0:
            bucket = _bisect(_BOUNDS_US, us)
            w[W_LATENCY_SUM] += us
            w[W_BUCKETS + bucket] += 1
        backend = _current_backend.get()
        if backend >= 0:
            _current_backend.set(-1)
            b = self._b
            k = backend * BACKEND_CELLS
            b[k + cls] += 1
            b[k + B_BYTES] += size
            if us >= 0:
                b[k + B_LATENCY_SUM] += us
                b[k + B_BUCKETS + bucket] += 1

    def backend_stopped(self, backend: int) -> bool:
        """Whether the supervisor says no process of this spawned backend runs (it is waiting to
        restart one that failed): nobody would accept a connection to its socket."""
        area = self.area
        if area is None or backend >= area.backends:
            return False
        return bool(area.cells[area.table_cell(backend) + NAME_SIZE // 8 + T_STOPPED])

    def backend_used(self, backend: int) -> None:
        """A connection to `backend` was handed out: the current request is counted as its."""
        _current_backend.set(backend)

    def backend_failed(self, backend: int, down_for: float) -> None:
        """A connection to `backend` failed; this worker skips it for `down_for` seconds.

        The request is counted as the backend's unless another one serves it (its 502 or 503
        shows in the backend's 5xx).
        """
        _current_backend.set(backend)
        now = _now_us()
        k = backend * BACKEND_CELLS
        b = self._b
        b[k + B_FAILURES] += 1
        b[k + B_LAST_FAILURE] = now
        b[k + B_DOWN_UNTIL] = now + int(down_for * 1_000_000)


STATS = WorkerStats()
AREA: Area | None = None


# -- the master's side ------------------------------------------------------------------------------


def create(config: Config) -> Area:
    """Create the shared area (master, before the first fork) and record the first configuration."""
    global AREA
    AREA = Area(max(MIN_SLOTS, 4 * config.workers))
    AREA.configured(config)
    return AREA


def backend_processes(address: Address | str, running: int, *, kind: str = "") -> None:
    """Spawn supervisor (in the master): `running` processes now serve the backend at `address`.

    Call it whenever the number changes (started, exited, stopped). The backend is registered if
    the configuration did not name it (a socket the supervisor created). No-op without an area.
    """
    if AREA is not None:
        AREA.set_processes(AREA.register(kind, address), running)


def backend_stopped(address: Address | str, stopped: bool, *, kind: str = "") -> None:
    """Spawn supervisor (in the master): whether the backend at `address` has no process that
    could accept (all dead and waiting to be restarted); workers then answer 503 at once."""
    if AREA is not None:
        AREA.set_stopped(AREA.register(kind, address), stopped)


def backend_restarted(address: Address | str, *, kind: str = "") -> None:
    """Spawn supervisor (in the master): a process of the backend at `address` died and was restarted."""
    if AREA is not None:
        AREA.add_restart(AREA.register(kind, address))
