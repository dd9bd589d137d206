"""Per-client limits (`[limits] client_connections`, `client_rate`, `client_burst`), counted per
client address across every worker of the master.

The master creates one table in shared memory (a memfd mapped MAP_SHARED) before it forks the
first worker, as the status counters are; it lives as long as the master, so limits hold across
reloads too. Unlike the status counters every worker writes every entry, so each update is made
under a lock (`SharedLock`), held for a few dozen bytecodes and never across an await.

The table is a set-associative cache of `SETS` sets of `WAYS` entries, signed 64-bit cells:

    key        the client address's hash (0: free); the hash is Python's keyed SipHash, the same
               in every worker (forked from one master), unknown to clients, so no address can be
               chosen to collide with another's set
    tokens     the bucket, in millionths of a request
    stamp      when the bucket was last refilled (monotonic microseconds): also its age
    conns      open connections

A new client takes a free way of its set, else the oldest entry without open connections, else the
oldest: memory is fixed whatever the number of addresses, and a flood of distinct addresses only
evicts entries (which then start again with a full bucket), never fails or grows anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import math
import mmap
import os
import time
from collections.abc import Callable

from frontd.config.model import Limits
from frontd.errors import TooManyRequests

SETS = 2048
WAYS = 8
E_KEY, E_TOKENS, E_STAMP, E_CONNS = range(4)
ENTRY_CELLS = 4
ONE = 1_000_000  # one request, in the bucket's unit
HEADER = 64  # bytes before the entries: the mutex (40 bytes on x86-64 glibc, 48 on arm64)
PTHREAD_PROCESS_SHARED = 1
PTHREAD_MUTEX_ROBUST = 1
_clock = time.monotonic_ns


class SharedLock:
    """A lock for processes forked after it was made.

    A process-shared robust pthread mutex in the first bytes of the shared mapping: taking it
    free costs no system call (a quarter of a microsecond through ctypes, against a microsecond
    and more for `lockf`'s two). When a holder dies, the next taker gets EOWNERDEAD and marks it
    consistent: a killed worker never blocks the others. Where libc has no robust mutexes, a
    POSIX record lock (`lockf`) on the memfd, which the kernel releases at a holder's death.
    """

    def __init__(self, shared: mmap.mmap, fd: int, *, mutex: bool = True) -> None:
        self.fd = fd
        self.acquire: Callable[[], None] = self._lockf
        self.release: Callable[[], None] = self._unlockf
        self.kind = "lockf"
        if mutex:
            self._mutex(shared)

    def _mutex(self, shared: mmap.mmap) -> None:
        try:
            # PyDLL keeps the GIL over the call: nothing to hand over in a one-thread worker, and
            # the mutex is held by another process for microseconds at most.
            libc = ctypes.PyDLL(ctypes.util.find_library("c"), use_errno=True)
            lock, unlock, consistent = libc.pthread_mutex_lock, libc.pthread_mutex_unlock, libc.pthread_mutex_consistent
            address = ctypes.addressof(ctypes.c_char.from_buffer(shared))
            attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes; room to spare
            if (libc.pthread_mutexattr_init(attr) or libc.pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED)
                    or libc.pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST)
                    or libc.pthread_mutex_init(ctypes.c_void_p(address), attr)):
                return
        except (OSError, AttributeError):
            return
        for function in (lock, unlock, consistent):
            function.argtypes = [ctypes.c_void_p]
        self.address = address
        self._lock, self._unlock, self._consistent = lock, unlock, consistent
        self.acquire, self.release = self._mutex_lock, self._mutex_unlock
        self.kind = "mutex"

    def _mutex_lock(self) -> None:
        if self._lock(self.address) == errno.EOWNERDEAD:
            # The holder died inside its few cell writes: at worst one entry is a request off.
            self._consistent(self.address)

    def _mutex_unlock(self) -> None:
        self._unlock(self.address)

    def _lockf(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def _unlockf(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


class ClientTable:
    """The shared table: `SETS * WAYS` entries (512 KiB), pages allocated as first written."""

    def __init__(self, sets: int = SETS, *, mutex: bool = True) -> None:
        self.sets = sets
        size = HEADER + sets * WAYS * ENTRY_CELLS * 8
        self.fd = os.memfd_create("frontd-clients", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.lock = SharedLock(self.map, self.fd, mutex=mutex)
        self.cells = memoryview(self.map)[HEADER:].cast("q")

    def entries(self) -> int:
        """How many entries are in use (tests, and the bound they check)."""
        c = self.cells
        return sum(1 for i in range(0, len(c), ENTRY_CELLS) if c[i + E_KEY])

    def capacity(self) -> int:
        return self.sets * WAYS

    def _entry(self, key: int, now: int, burst: int, insert: bool = True) -> int:
        """The first cell of `key`'s entry, made (full bucket) if missing; -1 when missing and not
        `insert`. Called under the lock."""
        c = self.cells
        base = (key % self.sets) * WAYS * ENTRY_CELLS
        end = base + WAYS * ENTRY_CELLS
        for i in range(base, end, ENTRY_CELLS):
            if c[i] == key:  # c[i + E_KEY], E_KEY being 0
                return i
        if not insert:
            return -1
        # Free first, then the oldest idle entry, then the oldest.
        victim, victim_rank = -1, (2, 0)
        for i in range(base, end, ENTRY_CELLS):
            rank = (-1, 0) if c[i + E_KEY] == 0 else (0 if c[i + E_CONNS] == 0 else 1, c[i + E_STAMP])
            if rank < victim_rank:
                victim, victim_rank = i, rank
        c[victim + E_KEY], c[victim + E_TOKENS], c[victim + E_STAMP], c[victim + E_CONNS] = key, burst, now, 0
        return victim

    def take(self, key: int, rate: float, burst: int) -> float:
        """Take one request from `key`'s bucket (`rate` per second, `burst` requests deep): 0.0,
        or the seconds until one will be there."""
        now = _clock() // 1000
        lock = self.lock
        c = self.cells
        lock.acquire()
        try:
            i = self._entry(key, now, burst * ONE)
            # Refill: `rate` requests a second is `rate` millionths a microsecond.
            tokens = min(burst * ONE, c[i + E_TOKENS] + int((now - c[i + E_STAMP]) * rate))
            c[i + E_STAMP] = now
            if tokens >= ONE:
                c[i + E_TOKENS] = tokens - ONE
                return 0.0
            c[i + E_TOKENS] = tokens
        finally:
            lock.release()
        return (ONE - tokens) / ONE / rate

    def open(self, key: int, most: int, burst: int) -> bool:
        """Count a connection of `key`, unless it already has `most` open."""
        lock = self.lock
        c = self.cells
        lock.acquire()
        try:
            i = self._entry(key, _clock() // 1000, burst * ONE)
            if c[i + E_CONNS] >= most:
                return False
            c[i + E_CONNS] += 1
            return True
        finally:
            lock.release()

    def close(self, key: int) -> None:
        """A counted connection of `key` ended (its entry may have been evicted meanwhile)."""
        lock = self.lock
        c = self.cells
        lock.acquire()
        try:
            i = self._entry(key, 0, 0, insert=False)
            if i >= 0 and c[i + E_CONNS] > 0:
                c[i + E_CONNS] -= 1
        finally:
            lock.release()


    def forget_connections(self) -> None:
        """Zero every connection count (the master, after a worker was killed: the connections
        it counted never said goodbye). Counts of live workers' connections are lost too, so for
        a while a client may open more than the limit: failing open, never locking anyone out."""
        lock = self.lock
        c = self.cells
        lock.acquire()
        try:
            for i in range(E_CONNS, len(c), ENTRY_CELLS):
                if c[i]:
                    c[i] = 0
        finally:
            lock.release()


TABLE: ClientTable | None = None


def create() -> ClientTable:
    """The master's table, made before the first fork (always: a reload may turn limits on)."""
    global TABLE
    TABLE = ClientTable()
    return TABLE


def worker_killed() -> None:
    """The master reaped a worker killed by a signal: see `ClientTable.forget_connections`."""
    if TABLE is not None:
        TABLE.forget_connections()


def client_key(address: str) -> int:
    """The table key of a client address; IPv4-mapped IPv6 counts as the IPv4 address."""
    if address.startswith("::ffff:") and "." in address:
        address = address[7:]
    return hash(address) or 1


class ClientLimits:
    """A configuration's client limits, over the master's table (a table of its own when there is
    no master: one process, and its own counts)."""

    def __init__(self, limits: Limits, table: ClientTable | None = None) -> None:
        self.connections = limits.client_connections
        self.rate = limits.client_rate
        self.burst = limits.client_burst or max(1, math.ceil(self.rate))
        self.table = table or TABLE or create()

    @classmethod
    def build(cls, limits: Limits) -> ClientLimits | None:
        """None when no client limit is set: requests then pay nothing."""
        if not limits.client_connections and not limits.client_rate:
            return None
        return cls(limits)

    def check_rate(self, client: str) -> None:
        """Raise 429 with Retry-After (whole seconds, at least 1) when `client` is over its rate."""
        wait = self.table.take(client_key(client), self.rate, self.burst)
        if wait:
            retry = max(1, math.ceil(wait))
            raise TooManyRequests(f"client {client} over client_rate ({self.rate:g}/s, burst {self.burst})",
                                  headers=((b"retry-after", str(retry).encode()),))

    def open(self, client: str) -> bool:
        """Count a new connection of `client`; False when it already has client_connections."""
        return self.table.open(client_key(client), self.connections, self.burst)

    def close(self, client: str) -> None:
        self.table.close(client_key(client))

    def refusal(self, client: str) -> TooManyRequests:
        """The answer to the first request of a connection over client_connections."""
        return TooManyRequests(f"client {client} over client_connections ({self.connections})",
                               headers=((b"retry-after", b"1"),))
