"""Backend selection for gateway and proxy routes: round-robin, passive health, a keep-alive pool.

One `BackendSet` per route and worker process holds the route's addresses (TCP or Unix sockets).
Each new request goes to the next address in turn; an address whose connect fails is marked down
for `fail_timeout` seconds and skipped while another is up (when every address is down they are
all tried anyway, so a lone backend that comes back is used at once). A connect failure moves on
to the next address: nothing has been sent yet, so that is always safe. Idle connections are
kept per address, at most `keepalive` of them, and handed out again after a check that the
backend has not closed them meanwhile.

Usage (the protocol engine decides whether a connection can carry another request):

    backends = BackendSet(route.backends, route.connect_timeout, route.keepalive, name="fastcgi")
    async with backends.connection() as conn:      # BadGateway / ServiceUnavailable if none
        conn.writer.write(...); data = await conn.reader.read(65536)
        conn.keep = True                          # clean end: back to the pool (else closed)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from frontd.config.model import Address
from frontd.errors import BadGateway, HTTPError, ServiceUnavailable
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

STREAM_LIMIT = 1 << 16
# How long an address that refused a connection is skipped (nginx's fail_timeout default).
FAIL_TIMEOUT = 10.0
# Pooled connections idle longer than this are closed rather than reused: most backends close
# idle keep-alive connections on their own after a few seconds to a minute.
IDLE_TIMEOUT = 60.0


class BackendConnection:
    """One connection to one backend address.

    `reused` is true when it came from the pool, i.e. a request has already been served on it and
    the backend may have closed it in the meantime (a failure before any response byte then
    says "stale", not "broken backend"). Set `keep = True` once an exchange ended cleanly and the
    connection may serve another request; `connection()` and `release()` pool it only then.
    """

    __slots__ = ("address", "reader", "writer", "reused", "keep", "idle_since")

    def __init__(self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 reused: bool) -> None:
        self.address = address
        self.reader = reader
        self.writer = writer
        self.reused = reused
        self.keep = False
        self.idle_since = 0.0

    def alive(self) -> bool:
        """False once the backend closed its side (or the transport is gone)."""
        return not (self.reader.at_eof() or self.writer.is_closing() or self.reader.exception())

    def close(self) -> None:
        """Close at once, dropping unsent data: used on failures and on connections not reused."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    def __repr__(self) -> str:
        return f"<BackendConnection {self.address} reused={self.reused}>"


class BackendSet:
    """The backends of one route: round-robin choice, passive health and a keep-alive pool."""

    def __init__(self, addresses: Sequence[Address], connect_timeout: float, keepalive: int, *,
                 name: str = "backend", fail_timeout: float = FAIL_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not addresses:
            raise ValueError("a BackendSet needs at least one address")
        self.addresses: tuple[Address, ...] = tuple(addresses)
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.name = name  # "proxy", "fastcgi": the first word of error details
        self.fail_timeout = fail_timeout
        self.idle_timeout = idle_timeout
        self._next = 0
        self.closed = False  # the worker is stopping: no connection is pooled any more
        self._down_until: dict[Address, float] = {}
        self._stat_ids = {address: STATS.backend_id(address) for address in self.addresses}  # status page
        self._idle: dict[Address, collections.deque[BackendConnection]] = {
            address: collections.deque() for address in self.addresses
        }

    # -- health ------------------------------------------------------------------------------

    def mark_down(self, address: Address) -> None:
        """Skip `address` for fail_timeout seconds (passive health check), and drop its pool."""
        self._down_until[address] = time.monotonic() + self.fail_timeout
        STATS.backend_failed(self._stat_ids[address], self.fail_timeout)
        for conn in self._idle[address]:
            conn.close()
        self._idle[address].clear()

    def is_down(self, address: Address) -> bool:
        until = self._down_until.get(address)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._down_until[address]
            return False
        return True

    def order(self) -> list[Address]:
        """The addresses to try for the next request: round-robin, healthy ones first."""
        n = len(self.addresses)
        start = self._next
        self._next = (start + 1) % n
        turn = [self.addresses[(start + i) % n] for i in range(n)]
        up = [a for a in turn if not self.is_down(a)]
        return up + [a for a in turn if a not in up]

    # -- connections -------------------------------------------------------------------------

    async def acquire(self, *, fresh: bool = False) -> BackendConnection:
        """A connection to the next backend: a pooled one when available, else a new one.

        `fresh` skips the pool (to retry a request after a pooled connection turned out closed).
        Raises BadGateway when every address refused or failed, ServiceUnavailable when the last
        attempt ran into connect_timeout.
        """
        failure: HTTPError | None = None
        for address in self.order():
            if failure is not None:  # the last failure is the caller's to report
                log.warning("%s; trying the next backend", failure.detail)
            if not fresh:
                pooled = await self._pooled(address)
                if pooled is not None:
                    return pooled
            try:
                return await self._connect(address)
            except HTTPError as exc:
                failure = exc
                self.mark_down(address)
        assert failure is not None
        raise failure

    def release(self, conn: BackendConnection, *, reusable: bool | None = None) -> None:
        """Give a connection back: pooled when `reusable` (default `conn.keep`) and there is room."""
        keep = conn.keep if reusable is None else reusable
        pool = self._idle.get(conn.address)
        if not keep or pool is None or self.keepalive <= 0 or self.closed or not conn.alive():
            conn.close()
            return
        self._prune(pool)
        if len(pool) >= self.keepalive:
            conn.close()
            return
        conn.keep = False
        conn.idle_since = time.monotonic()
        pool.append(conn)

    @asynccontextmanager
    async def connection(self, *, fresh: bool = False) -> AsyncIterator[BackendConnection]:
        """`acquire` and, on leaving, `release`: pooled if `conn.keep` was set, else closed."""
        conn = await self.acquire(fresh=fresh)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self.release(conn)

    def idle_count(self, address: Address | None = None) -> int:
        """Idle pooled connections, for one address or in all."""
        pools = [self._idle[address]] if address is not None else list(self._idle.values())
        return sum(len(pool) for pool in pools)

    def close_idle(self) -> None:
        """Close every pooled connection (worker shutdown, reload)."""
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
            pool.clear()

    def close(self) -> None:
        """The worker is stopping: close the pooled connections now, and those of requests still
        running when they end. An idle connection held through a graceful stop would keep a
        backend worker waiting on it (php-fpm with FCGI_KEEP_CONN) while other frontd workers,
        the next generation after a reload, need it."""
        self.closed = True
        self.close_idle()

    def _prune(self, pool: collections.deque[BackendConnection]) -> None:
        """Drop pooled connections the backend closed, and those idle over idle_timeout."""
        now = time.monotonic()
        for conn in list(pool):
            if not conn.alive() or now - conn.idle_since > self.idle_timeout:
                pool.remove(conn)
                conn.close()

    async def _pooled(self, address: Address) -> BackendConnection | None:
        pool = self._idle[address]
        if not pool:
            return None
        # One turn of the event loop lets a FIN that has already arrived reach the reader, so a
        # connection the backend closed while idle is caught here rather than by the request.
        await asyncio.sleep(0)
        self._prune(pool)
        if not pool:
            return None
        conn = pool.pop()  # the most recently used: the least likely to have timed out
        conn.reused = True
        STATS.backend_used(self._stat_ids[address])
        return conn

    async def _connect(self, address: Address) -> BackendConnection:
        if STATS.backend_stopped(self._stat_ids[address]):
            # A spawned application waiting to be restarted: its socket would take the connection
            # into a backlog nobody accepts from, and the request would wait for `timeout`.
            raise ServiceUnavailable(f"{self.name} {address}: the spawned application is not running "
                                     "(it failed and waits to be restarted; see the error log)")
        timeout = self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                if address.kind == "unix":
                    reader, writer = await asyncio.open_unix_connection(address.path, limit=STREAM_LIMIT)
                else:
                    reader, writer = await asyncio.open_connection(address.host, address.port,
                                                                   limit=STREAM_LIMIT)
        except TimeoutError:
            raise ServiceUnavailable(
                f"{self.name} {address}: no connection within connect_timeout ({timeout:g}s)"
            ) from None
        except OSError as exc:
            # asyncio's strerror for TCP is "Connect call failed (addr)": say what errno means.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise BadGateway(f"{self.name} {address}: connect failed: {reason}") from None
        STATS.backend_used(self._stat_ids[address])
        return BackendConnection(address, reader, writer, reused=False)
