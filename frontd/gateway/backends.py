"""Backend selection for gateway and proxy routes: round-robin, passive health, a keep-alive pool.

One `BackendSet` per route and worker process holds the route's addresses (TCP or Unix sockets).
Each new request goes to the next address in turn; an address whose connect fails is marked down
for `fail_timeout` seconds and skipped while another is up (when every address is down they are
all tried anyway, so a lone backend that comes back is used at once). A connect failure moves on
to the next address: nothing has been sent yet, so that is always safe.

Idle connections live in one `ConnectionPool` per worker, per protocol and backend address: every
route of the worker that names the address shares them (a route's `keepalive` bounds how many it
leaves there). A parked connection is closed

- after `keepalive_timeout` seconds idle, by a timer (not only when its pool is used again);
- at once when the backend sends anything on it, bytes or EOF: bytes on an idle connection
  belong to no request, and handed to the next one they would be its response;
- for backends that give each connection a process of its own (FastCGI: php-fpm's children stay
  with a kept connection), as soon as a new connection to that address waits for its first
  reply byte: the parked one may be holding the very process the new one waits for.

Those backends serve as many connections at once as they have processes, and a connection
beyond that waits in their backlog until one of ours is closed. When that happened (a kept
connection had to be closed for a new one), the pool takes the connections the backend was then
serving (those answered, and the new one) as its capacity, for `PROBE_INTERVAL` seconds: a request that finds none idle and
that many busy waits for the next one to be released and is handed it directly (no connect, no
close), rather than opening another connection only to make a busy one close for it. A hand-off
waits at most `connect_timeout`; once the interval is over, the next request that finds none
idle opens a new connection again, which finds out whether the backend grew (php-fpm's dynamic
pool) and lets a connection of another worker that waits in the backlog in.

Usage (the protocol engine decides whether a connection can carry another request):

    backends = BackendSet(route.backends, route.connect_timeout, route.keepalive, name="fastcgi",
                          pool=worker_pool, idle_timeout=route.keepalive_timeout, yield_idle=True)
    async with backends.connection() as conn:      # BadGateway / ServiceUnavailable if none
        conn.writer.write(...); data = await conn.reader.read(65536)
        backends.answered(conn)                   # the first reply byte came
        conn.keep = True                          # clean end: back to the pool (else closed)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from frontd.config.model import Address
from frontd.errors import BadGateway, HTTPError, ServiceUnavailable
from frontd.gateway.sockets import SocketStream, connect
from frontd.status.metrics import STATS

log = logging.getLogger("frontd")

STREAM_LIMIT = 1 << 16
# How long an address that refused a connection is skipped (nginx's fail_timeout default).
FAIL_TIMEOUT = 10.0
# Pooled connections idle this long are closed (a route's `keepalive_timeout`). Short: a kept
# FastCGI connection holds a php-fpm child, and another worker's new connection may need it;
# and below the 5 s after which Node.js and others close idle connections on their own.
IDLE_TIMEOUT = 4.0
# How long a learnt capacity (see above) holds before a new connection is tried again.
PROBE_INTERVAL = 1.0


class _BackendProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that, while its connection is parked, reports input instead of buffering
    it: `on_idle_input` is called with what came (b"" for EOF or a lost connection)."""

    on_idle_input: Callable[[bytes], None] | None = None

    def data_received(self, data: bytes) -> None:
        callback = self.on_idle_input
        if callback is not None:
            callback(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        callback = self.on_idle_input
        if callback is not None:
            callback(b"")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        callback = self.on_idle_input
        if callback is not None:
            callback(b"")
        super().connection_lost(exc)


class BackendConnection:
    """One connection to one backend address.

    `reused` is true when it came from the pool, i.e. a request has already been served on it and
    the backend may have closed it in the meantime (a failure before any response byte then
    says "stale", not "broken backend"). Set `keep = True` once an exchange ended cleanly and the
    connection may serve another request; `connection()` and `release()` pool it only then.
    `requests` is the number of the last request started on it (FastCGI's request id).
    """

    __slots__ = ("address", "reader", "writer", "reused", "keep", "requests", "protocol",
                 "expiry", "on_close")

    def __init__(self, address: Address, reader: asyncio.StreamReader | SocketStream,
                 writer: asyncio.StreamWriter | SocketStream, reused: bool,
                 protocol: _BackendProtocol | None = None) -> None:
        self.address = address
        self.reader = reader
        self.writer = writer
        self.reused = reused
        self.keep = False
        self.requests = 0
        self.protocol = protocol
        self.expiry: asyncio.TimerHandle | None = None  # closes it when parked too long
        self.on_close: Callable[[BackendConnection], None] | None = None  # the pool counts it busy

    def alive(self) -> bool:
        """False once the backend closed its side (or the transport is gone)."""
        return not (self.reader.at_eof() or self.writer.is_closing() or self.reader.exception())

    def unread(self) -> int:
        """Bytes received and not read yet: on a connection about to be parked, bytes that
        belong to no request."""
        # StreamReader has no public way to ask; `_buffer` holds exactly these bytes.
        return len(getattr(self.reader, "_buffer", b""))

    def close(self) -> None:
        """Close at once, dropping unsent data: used on failures and on connections not reused."""
        self.unwatch_idle()
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()
        on_close = self.on_close
        if on_close is not None:
            self.on_close = None
            on_close(self)

    def watch_idle(self, on_input: Callable[[bytes], None], on_expiry: Callable[[], None], timeout: float) -> None:
        """While parked: `on_input` gets whatever the backend sends (b"" for a close) instead of
        the reader, and `on_expiry` runs after `timeout` seconds."""
        if self.protocol is not None:
            self.protocol.on_idle_input = on_input
        elif isinstance(self.reader, SocketStream):
            self.reader.watch_idle(on_input)
        self.expiry = asyncio.get_running_loop().call_later(timeout, on_expiry)

    def unwatch_idle(self) -> None:
        """Taken from the pool (or closed): input goes to the reader again, no timer."""
        if self.protocol is not None:
            self.protocol.on_idle_input = None
        elif isinstance(self.reader, SocketStream):
            self.reader.watch_idle(None)
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def __repr__(self) -> str:
        return f"<BackendConnection {self.address} reused={self.reused}>"


def _give_up(waiter: asyncio.Future[BackendConnection | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


PoolKey = tuple[str, Address]  # ("fastcgi", address): connections of one protocol to one address


class ConnectionPool:
    """The idle (parked) connections of one worker, per protocol and backend address, shared by
    all the routes that name the address; and the new connections still waiting for their
    first reply byte, for the backends whose parked connections must yield to them."""

    def __init__(self) -> None:
        self.closed = False  # the worker is stopping: no connection is pooled any more
        self._idle: dict[PoolKey, collections.deque[BackendConnection]] = {}
        self._waiting: dict[PoolKey, set[BackendConnection]] = {}
        # Backends with a process per connection: the connections in use, the capacity learnt
        # (connections, when) and the requests waiting for one of them to be handed over.
        self._busy: dict[PoolKey, set[BackendConnection]] = {}
        self._capacity: dict[PoolKey, tuple[int, float]] = {}
        self._queue: dict[PoolKey, collections.deque[asyncio.Future[BackendConnection | None]]] = {}

    def idle(self, key: PoolKey) -> collections.deque[BackendConnection]:
        pool = self._idle.get(key)
        if pool is None:
            pool = self._idle[key] = collections.deque()
        return pool

    def idle_count(self, keys: Sequence[PoolKey] | None = None) -> int:
        pools = [self._idle.get(key, ()) for key in keys] if keys is not None else list(self._idle.values())
        return sum(len(pool) for pool in pools)

    def park(self, key: PoolKey, conn: BackendConnection, timeout: float) -> None:
        """Keep `conn` idle until taken, until `timeout` seconds pass, or until the backend
        sends anything on it (then it is closed at once)."""
        conn.keep = False
        conn.watch_idle(lambda data: self._idle_input(key, conn, data), lambda: self.discard(key, conn), timeout)
        self.idle(key).append(conn)

    def take(self, key: PoolKey) -> BackendConnection | None:
        """The most recently parked connection that is still usable (the least likely to have
        timed out on the backend's side), or None."""
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            conn.unwatch_idle()
            if conn.alive() and not conn.unread():
                pending = conn.reader.peek() if isinstance(conn.reader, SocketStream) else None
                if not pending:
                    return conn
                # Bytes or EOF already there, which the idle watch has not seen yet.
                self._idle_input(key, conn, pending if pending is not True else b"")
                continue
            conn.close()
        return None

    def discard(self, key: PoolKey, conn: BackendConnection) -> None:
        """Close a parked connection and forget it."""
        pool = self._idle.get(key)
        if pool is not None and conn in pool:
            pool.remove(conn)
        conn.close()

    def close_idle(self, key: PoolKey | None = None) -> int:
        """Close the parked connections to one address, or all; how many there were."""
        pools = [self._idle.get(key, collections.deque())] if key is not None else list(self._idle.values())
        count = 0
        for pool in pools:
            while pool:
                pool.pop().close()
                count += 1
        return count

    def close(self) -> None:
        """The worker is stopping: close the parked connections now, and pool none from now on."""
        self.closed = True
        self.close_idle()
        for key in list(self._queue):
            while self._wake(key, None):
                pass

    # -- connections in use, and requests waiting for one (process-per-connection backends) ---

    def lend(self, key: PoolKey, conn: BackendConnection) -> None:
        """`conn` serves a request: counted busy until released or closed."""
        busy = self._busy.get(key)
        if busy is None:
            busy = self._busy[key] = set()
        busy.add(conn)
        conn.on_close = lambda closed: self._busy_closed(key, closed)

    def returned(self, key: PoolKey, conn: BackendConnection) -> None:
        """`conn` is no longer busy (it is about to be parked)."""
        conn.on_close = None
        busy = self._busy.get(key)
        if busy is not None:
            busy.discard(conn)

    def learn_capacity(self, key: PoolKey) -> None:
        """A kept connection was just closed for a new one that waits in the backend's backlog:
        the backend serves as many connections at once as are busy and answered, plus the one
        that now takes the process the closed connection held."""
        waiting = self._waiting.get(key, ())
        serving = sum(1 for conn in self._busy.get(key, ()) if conn not in waiting)
        self._capacity[key] = (serving + 1, time.monotonic())

    def at_capacity(self, key: PoolKey) -> bool:
        """True while the learnt capacity holds and that many connections are busy."""
        learnt = self._capacity.get(key)
        if learnt is None:
            return False
        if time.monotonic() - learnt[1] >= PROBE_INTERVAL:
            del self._capacity[key]  # time to try a new connection again
            return False
        return len(self._busy.get(key, ())) >= learnt[0]

    def hand_off(self, key: PoolKey, conn: BackendConnection) -> bool:
        """Give a released connection, still busy, to the first request waiting for one."""
        conn.keep = False  # as when parked: the next exchange decides
        return self._wake(key, conn)

    async def wait_for_release(self, key: PoolKey, timeout: float) -> BackendConnection | None:
        """Wait, at most `timeout` seconds, for a busy connection to be handed over; None when
        the time is up or a busy connection was closed instead (then open a new one)."""
        queue = self._queue.get(key)
        if queue is None:
            queue = self._queue[key] = collections.deque()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[BackendConnection | None] = loop.create_future()
        queue.append(waiter)
        # A plain timer that answers None, not `asyncio.timeout()` (its context object and the
        # task's cancel and uncancel): nearly every request waits here at a backend's capacity.
        expiry = loop.call_later(timeout, _give_up, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                waiter.result().close()  # handed over as the request was cancelled
            raise
        finally:
            expiry.cancel()
            if not waiter.done():
                waiter.cancel()

    def _wake(self, key: PoolKey, conn: BackendConnection | None) -> bool:
        queue = self._queue.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _busy_closed(self, key: PoolKey, conn: BackendConnection) -> None:
        busy = self._busy.get(key)
        if busy is not None:
            busy.discard(conn)
        # A request waiting for a hand-off now opens a connection of its own, unless a new one
        # already waits for the process this close frees.
        if self._queue.get(key) and not self.someone_waits(key, conn):
            self._wake(key, None)

    # -- new connections that parked ones yield to -------------------------------------------

    def wait_for_answer(self, key: PoolKey, conn: BackendConnection) -> None:
        """`conn` is new and has no reply yet: the parked connections to its address are let go
        (they may hold the backend process it waits for), and none is parked until it has one."""
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = set()
        self._forget_closed(waiting)
        waiting.add(conn)
        released = self.close_idle(key)
        if released:
            log.debug("%s %s: %d idle connection(s) closed for a new one", key[0], key[1], released)

    def answered(self, key: PoolKey, conn: BackendConnection) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.discard(conn)

    def someone_waits(self, key: PoolKey, conn: BackendConnection) -> bool:
        """True while another live new connection to this address waits for its first reply."""
        waiting = self._waiting.get(key)
        if not waiting:
            return False
        self._forget_closed(waiting)
        return any(other is not conn for other in waiting)

    @staticmethod
    def _forget_closed(waiting: set[BackendConnection]) -> None:
        # A request aborted while it waited closes its connection without releasing it.
        for conn in [conn for conn in waiting if not conn.alive()]:
            waiting.discard(conn)

    def _idle_input(self, key: PoolKey, conn: BackendConnection, data: bytes) -> None:
        # Called from the protocol while the connection is parked.
        if data:
            log.warning("%s %s: %d byte(s) on an idle connection, which belong to no request: "
                        "connection closed", key[0], key[1], len(data))
        else:
            log.debug("%s %s: idle connection closed by the backend", key[0], key[1])
        self.discard(key, conn)


class BackendSet:
    """The backends of one route: round-robin choice, passive health, and its share of the
    worker's `ConnectionPool` (its own pool when none is given)."""

    def __init__(self, addresses: Sequence[Address], connect_timeout: float, keepalive: int, *,
                 name: str = "backend", fail_timeout: float = FAIL_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, pool: ConnectionPool | None = None,
                 yield_idle: bool = False, bare: bool = False) -> None:
        if not addresses:
            raise ValueError("a BackendSet needs at least one address")
        self.addresses: tuple[Address, ...] = tuple(addresses)
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.name = name  # "proxy", "fastcgi": the first word of error details, and the pool's
        self.fail_timeout = fail_timeout
        self.idle_timeout = idle_timeout
        self.pool = pool if pool is not None else ConnectionPool()
        # Parked connections yield to a new one that waits for its first reply byte (backends
        # with a process per connection: php-fpm).
        self.yield_idle = yield_idle
        self._next = 0
        self._down_until: dict[Address, float] = {}
        self._stat_ids = {address: STATS.backend_id(address) for address in self.addresses}  # status page
        self._keys: dict[Address, PoolKey] = {address: (name, address) for address in self.addresses}
        # `bare`: connections are SocketStreams (the gateways) where the address needs no name
        # lookup; else asyncio streams (the proxy, and host names).
        self._bare: dict[Address, tuple[int, str | tuple[str, int]]] = {}
        if bare:
            for address in self.addresses:
                target = _socket_address(address)
                if target is not None:
                    self._bare[address] = target

    @property
    def closed(self) -> bool:
        return self.pool.closed

    # -- health ------------------------------------------------------------------------------

    def mark_down(self, address: Address) -> None:
        """Skip `address` for fail_timeout seconds (passive health check), and drop its pool."""
        self._down_until[address] = time.monotonic() + self.fail_timeout
        STATS.backend_failed(self._stat_ids[address], self.fail_timeout)
        self.pool.close_idle(self._keys[address])

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
        if n == 1:
            return list(self.addresses)  # most routes: one address, up or down, is the one to try
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
            key = self._keys[address]
            counted = self.yield_idle and self.keepalive > 0  # busy connections are counted
            if not fresh and self.keepalive > 0:
                # A SocketStream is asked directly whether the backend closed it (`take`): no
                # coroutine and no turn of the event loop.
                pooled = self._take(address) if address in self._bare else await self._pooled(address)
                if pooled is None and counted and self.pool.at_capacity(key):
                    pooled = await self.pool.wait_for_release(key, self.connect_timeout)
                    if pooled is not None:
                        pooled.reused = True
                        STATS.backend_used(self._stat_ids[address])
                        return pooled  # still counted busy
                if pooled is not None:
                    if counted:
                        self.pool.lend(key, pooled)
                    return pooled
            try:
                conn = await self._connect(address)
            except HTTPError as exc:
                failure = exc
                self.mark_down(address)
                continue
            if self.yield_idle:
                self.pool.wait_for_answer(key, conn)
            if counted:
                self.pool.lend(key, conn)
            return conn
        assert failure is not None
        raise failure

    def answered(self, conn: BackendConnection) -> None:
        """The first reply byte arrived on `conn`: parked connections need not yield to it."""
        if self.yield_idle:
            self.pool.answered(self._keys[conn.address], conn)

    def release(self, conn: BackendConnection, *, reusable: bool | None = None) -> None:
        """Give a connection back: pooled when `reusable` (default `conn.keep`) and there is room."""
        keep = conn.keep if reusable is None else reusable
        key = self._keys.get(conn.address)
        pool = self.pool
        if key is None:
            conn.close()
            return
        pool.answered(key, conn)
        if not keep or self.keepalive <= 0 or pool.closed or not conn.alive():
            conn.close()
            return
        if conn.unread():
            log.warning("%s %s: %d byte(s) after the response, which belong to no request: "
                        "connection closed", self.name, conn.address, conn.unread())
            conn.close()
            return
        if self.yield_idle and pool.someone_waits(key, conn):
            log.debug("%s %s: connection not kept: a new one waits for the backend", self.name, conn.address)
            conn.close()
            pool.learn_capacity(key)
            return
        if self.yield_idle and pool.hand_off(key, conn):
            return  # to a request that waited for it: no park, no timer
        if pool.idle_count([key]) >= self.keepalive:
            conn.close()
            return
        pool.returned(key, conn)
        pool.park(key, conn, self.idle_timeout)

    @asynccontextmanager
    async def connection(self, *, fresh: bool = False) -> AsyncIterator[BackendConnection]:
        """`acquire` and, on leaving, `release`: pooled if `conn.keep` was set, else closed."""
        conn = await self.acquire(fresh=fresh)
        try:
            yield conn
        except BaseException:
            self.pool.answered(self._keys[conn.address], conn)
            conn.close()
            raise
        self.release(conn)

    def idle_count(self, address: Address | None = None) -> int:
        """Idle pooled connections of this route's addresses, for one address or in all."""
        keys = [self._keys[address]] if address is not None else list(self._keys.values())
        return self.pool.idle_count(keys)

    def close_idle(self) -> None:
        """Close every pooled connection of this route's addresses (worker shutdown, reload)."""
        for key in self._keys.values():
            self.pool.close_idle(key)

    def close(self) -> None:
        """The worker is stopping: close the pooled connections now, and those of requests still
        running when they end. An idle connection held through a graceful stop would keep a
        backend worker waiting on it (php-fpm with FCGI_KEEP_CONN) while other frontd workers,
        the next generation after a reload, need it."""
        self.pool.close()

    async def _pooled(self, address: Address) -> BackendConnection | None:
        if not self.pool.idle_count([self._keys[address]]):
            return None
        # One turn of the event loop lets a FIN that has already arrived reach the protocol, so
        # a connection the backend closed while idle is caught here rather than by the request.
        await asyncio.sleep(0)
        return self._take(address)

    def _take(self, address: Address) -> BackendConnection | None:
        conn = self.pool.take(self._keys[address])
        if conn is None:
            return None
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
        bare = self._bare.get(address)
        if bare is not None:
            try:
                stream = await connect(bare[0], bare[1], timeout)
            except TimeoutError:
                raise ServiceUnavailable(
                    f"{self.name} {address}: no connection within connect_timeout ({timeout:g}s)"
                ) from None
            except OSError as exc:
                raise BadGateway(f"{self.name} {address}: connect failed: {exc.strerror or exc}") from None
            STATS.backend_used(self._stat_ids[address])
            return BackendConnection(address, stream, stream, reused=False)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = _BackendProtocol(reader, loop=loop)
        try:
            async with asyncio.timeout(timeout):
                if address.kind == "unix":
                    transport, _ = await loop.create_unix_connection(lambda: protocol, address.path)
                else:
                    transport, _ = await loop.create_connection(lambda: protocol, address.host, address.port)
        except TimeoutError:
            raise ServiceUnavailable(
                f"{self.name} {address}: no connection within connect_timeout ({timeout:g}s)"
            ) from None
        except OSError as exc:
            # asyncio's strerror for TCP is "Connect call failed (addr)": say what errno means.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise BadGateway(f"{self.name} {address}: connect failed: {reason}") from None
        STATS.backend_used(self._stat_ids[address])
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return BackendConnection(address, reader, writer, reused=False, protocol=protocol)


def _socket_address(address: Address) -> tuple[int, str | tuple[str, int]] | None:
    """(family, address) for socket.connect, or None when the host is a name to look up."""
    if address.kind == "unix":
        return socket.AF_UNIX, address.path
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address.host)
        except OSError:
            continue
        return family, (address.host, address.port)
    return None
