"""frontd.gateway.backends against real sockets: connect, failover, the keep-alive pool.

The backends are asyncio servers on 127.0.0.1:0 and Unix sockets in tmp_path, inside the test's
own event loop; no frontd process is involved.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from frontd.config.model import Address
from frontd.errors import BadGateway
from frontd.gateway.backends import BackendConnection, BackendSet, ConnectionPool


class Peer:
    """A backend that counts connections and can close them on demand."""

    def __init__(self) -> None:
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.eofs = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        while await reader.read(65536):
            pass
        self.eofs += 1
        writer.close()

    async def tcp(self) -> Address:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return Address("tcp", "127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def unix(self, path: str) -> Address:
        self.server = await asyncio.start_unix_server(self.handle, path)
        return Address("unix", path=path)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (bounded by run()'s overall deadline)."""
    while not condition():
        await asyncio.sleep(0.005)


async def parked(peer: Peer) -> tuple[BackendSet, BackendConnection]:
    """A BackendSet on `peer`'s TCP address with one connection parked in its pool, the
    backend's end of it in `peer.writers[0]`."""
    backends = BackendSet([await peer.tcp()], 1.0, 4)
    conn = await backends.acquire()
    await settle(lambda: peer.accepted == 1)
    backends.release(conn, reusable=True)
    return backends, conn


def dead_address() -> Address:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return Address("tcp", "127.0.0.1", sock.getsockname()[1])


def test_pooled_connection_reused(tmp_path: Path) -> None:
    async def test() -> None:
        peer = Peer()
        address = await peer.unix(str(tmp_path / "p.sock"))
        backends = BackendSet([address], 1.0, 4)
        conn = await backends.acquire()
        assert not conn.reused and conn.address == address
        conn.writer.write(b"x")
        backends.release(conn, reusable=True)
        assert backends.idle_count() == 1
        again = await backends.acquire()
        assert again is conn and again.reused
        backends.release(again)  # keep not set: closed, not pooled
        assert backends.idle_count() == 0
        await settle(lambda: peer.eofs == 1)
        assert peer.accepted == 1
        await peer.close()

    run(test)


def test_pool_is_bounded() -> None:
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 2)
        conns = [await backends.acquire() for _ in range(3)]
        for conn in conns:
            conn.keep = True
            backends.release(conn)
        assert backends.idle_count() == 2
        await settle(lambda: peer.eofs == 1)  # the third was closed
        assert peer.accepted == 3
        backends.close_idle()
        await settle(lambda: peer.eofs == 3)
        await peer.close()

    run(test)


def test_connection_closed_by_peer_is_not_handed_out() -> None:
    async def test() -> None:
        peer = Peer()
        backends, conn = await parked(peer)
        peer.writers[0].close()  # the backend's keep-alive timeout, say
        await settle(lambda: conn.reader.at_eof())
        fresh = await backends.acquire()
        assert fresh is not conn and not fresh.reused
        assert peer.accepted == 2
        fresh.close()
        await peer.close()

    run(test)


def test_fresh_skips_the_pool() -> None:
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 4)
        conn = await backends.acquire()
        backends.release(conn, reusable=True)
        fresh = await backends.acquire(fresh=True)
        assert fresh is not conn and backends.idle_count() == 1
        fresh.close()
        backends.close_idle()
        await peer.close()

    run(test)


def test_keepalive_zero_never_pools() -> None:
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 0)
        conn = await backends.acquire()
        backends.release(conn, reusable=True)
        assert backends.idle_count() == 0
        await peer.close()

    run(test)


def test_idle_connection_closed_by_its_timer() -> None:
    # Issue 12 item 3: idle connections were only pruned when their pool was used again, so a
    # kept FastCGI connection held a php-fpm child for as long as no request came.
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 4, idle_timeout=0.05)
        conn = await backends.acquire()
        backends.release(conn, reusable=True)
        assert backends.idle_count() == 1
        await settle(lambda: peer.eofs == 1)  # closed with no other call into the pool
        assert backends.idle_count() == 0
        await peer.close()

    run(test)


def test_routes_share_the_idle_connections_of_an_address() -> None:
    async def test() -> None:
        peer = Peer()
        address = await peer.tcp()
        pool = ConnectionPool()
        one = BackendSet([address], 1.0, 4, name="fastcgi", pool=pool)
        two = BackendSet([address], 1.0, 4, name="fastcgi", pool=pool)
        other_protocol = BackendSet([address], 1.0, 4, name="proxy", pool=pool)
        conn = await one.acquire()
        one.release(conn, reusable=True)
        assert two.idle_count() == 1
        fresh = await other_protocol.acquire()  # an HTTP request never rides a FastCGI connection
        assert fresh is not conn
        fresh.close()
        again = await two.acquire()
        assert again is conn and again.reused
        again.close()
        await peer.close()

    run(test)


def test_bytes_on_an_idle_connection_close_it() -> None:
    # Issue 13 section 2: what a backend sends on an idle connection belongs to no request.
    async def test() -> None:
        peer = Peer()
        backends, conn = await parked(peer)
        peer.writers[0].write(b"HTTP/1.1 200 OK\r\nSet-Cookie: evil=1\r\n\r\n")
        await settle(lambda: backends.idle_count() == 0)
        assert conn.writer.is_closing()
        fresh = await backends.acquire()
        assert fresh is not conn and not fresh.reused
        fresh.close()
        await peer.close()

    run(test)


def test_unread_bytes_keep_a_connection_out_of_the_pool() -> None:
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 4)
        conn = await backends.acquire()
        await settle(lambda: peer.accepted == 1)
        peer.writers[0].write(b"stray")
        await settle(lambda: conn.unread() == 5)
        backends.release(conn, reusable=True)
        assert backends.idle_count() == 0 and conn.writer.is_closing()
        await peer.close()

    run(test)


def test_parked_connections_yield_to_a_new_one_waiting() -> None:
    # Issue 12 item 3: php-fpm gives each connection a child until it closes; a parked
    # connection may hold the child a new connection waits for in the backlog.
    async def test() -> None:
        peer = Peer()
        address = await peer.tcp()
        pool = ConnectionPool()
        kept = BackendSet([address], 1.0, 4, name="fastcgi", pool=pool, yield_idle=True)
        unkept = BackendSet([address], 1.0, 0, name="fastcgi", pool=pool, yield_idle=True)
        first = await kept.acquire()
        kept.answered(first)
        kept.release(first, reusable=True)
        assert kept.idle_count() == 1
        waiting = await unkept.acquire()  # a new connection with no answer yet
        assert kept.idle_count() == 0 and first.writer.is_closing()
        second = await kept.acquire()
        kept.answered(second)
        kept.release(second, reusable=True)  # not parked while `waiting` waits
        assert kept.idle_count() == 0 and second.writer.is_closing()
        unkept.answered(waiting)
        third = await kept.acquire()
        kept.answered(third)
        kept.release(third, reusable=True)
        assert kept.idle_count() == 1
        waiting.close()
        kept.close_idle()
        await peer.close()

    run(test)


def test_context_manager_pools_only_clean_ends() -> None:
    async def test() -> None:
        peer = Peer()
        backends = BackendSet([await peer.tcp()], 1.0, 4)
        async with backends.connection() as conn:
            conn.keep = True
        assert backends.idle_count() == 1
        with pytest.raises(RuntimeError):
            async with backends.connection() as conn:
                assert conn.reused
                conn.keep = True
                raise RuntimeError("protocol error")
        assert backends.idle_count() == 0
        await settle(lambda: peer.eofs == 1)
        await peer.close()

    run(test)


def test_refused_address_skipped_then_marked_down(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        peer = Peer()
        good = await peer.tcp()
        dead = dead_address()
        backends = BackendSet([dead, good], 1.0, 0, name="fastcgi")
        conn = await backends.acquire()  # dead refused, good connected: nothing was sent yet
        assert conn.address == good
        conn.close()
        assert backends.is_down(dead)
        for _ in range(4):
            conn = await backends.acquire()
            assert conn.address == good
            conn.close()
        assert "fastcgi 127.0.0.1:" in caplog.text and "trying the next backend" in caplog.text
        await peer.close()

    run(test)


def test_all_refused_is_502(tmp_path: Path) -> None:
    async def test() -> None:
        backends = BackendSet([dead_address(), Address("unix", path=str(tmp_path / "none.sock"))], 1.0, 0,
                              name="scgi")
        with pytest.raises(BadGateway) as failure:
            await backends.acquire()
        assert failure.value.detail.startswith("scgi ")
        assert "connect failed" in failure.value.detail

    run(test)
