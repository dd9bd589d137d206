"""Per-client limits (`[limits] client_connections`, `client_rate`, `client_burst`), counted per
client address across every worker of the master.

The master creates one table in shared memory (a memfd mapped MAP_SHARED) before it forks the
first worker, as the status counters are; it lives as long as the master, so limits hold across
reloads too. Unlike the status counters every worker writes every entry, so each update is made
under a POSIX record lock on the memfd (`lockf`): two system calls, held for a few dozen
bytecodes, never across an await, and released by the kernel if a worker dies holding it.

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

import fcntl
import math
import mmap
import os
import time

from frontd.config.model import Limits
from frontd.errors import TooManyRequests

SETS = 2048
WAYS = 8
E_KEY, E_TOKENS, E_STAMP, E_CONNS = range(4)
ENTRY_CELLS = 4
ONE = 1_000_000  # one request, in the bucket's unit
_clock = time.monotonic_ns


class ClientTable:
    """The shared table: `SETS * WAYS` entries (512 KiB), pages allocated as first written."""

    def __init__(self, sets: int = SETS) -> None:
        self.sets = sets
        size = sets * WAYS * ENTRY_CELLS * 8
        self.fd = os.memfd_create("frontd-clients", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.cells = memoryview(self.map).cast("q")

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
        fd = self.fd
        c = self.cells
        fcntl.lockf(fd, fcntl.LOCK_EX)
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
            fcntl.lockf(fd, fcntl.LOCK_UN)
        return (ONE - tokens) / ONE / rate

    def open(self, key: int, most: int, burst: int) -> bool:
        """Count a connection of `key`, unless it already has `most` open."""
        fd = self.fd
        c = self.cells
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            i = self._entry(key, _clock() // 1000, burst * ONE)
            if c[i + E_CONNS] >= most:
                return False
            c[i + E_CONNS] += 1
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def close(self, key: int) -> None:
        """A counted connection of `key` ended (its entry may have been evicted meanwhile)."""
        fd = self.fd
        c = self.cells
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            i = self._entry(key, 0, 0, insert=False)
            if i >= 0 and c[i + E_CONNS] > 0:
                c[i + E_CONNS] -= 1
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)


    def forget_connections(self) -> None:
        """Zero every connection count (the master, after a worker was killed: the connections
        it counted never said goodbye). Counts of live workers' connections are lost too, so for
        a while a client may open more than the limit: failing open, never locking anyone out."""
        fd = self.fd
        c = self.cells
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            for i in range(E_CONNS, len(c), ENTRY_CELLS):
                if c[i]:
                    c[i] = 0
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)


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
