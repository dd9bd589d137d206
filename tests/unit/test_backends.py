"""frontd.gateway.backends: round-robin order and passive health (no sockets here; see
tests/integration/test_proxy_backends.py for connections and the pool)."""

from __future__ import annotations

import asyncio

import pytest

from frontd.config.model import Address
from frontd.gateway import backends as backends_module
from frontd.gateway.backends import BackendConnection, BackendSet, ConnectionPool

A = Address("tcp", "127.0.0.1", 9001)
B = Address("tcp", "127.0.0.1", 9002)
C = Address("unix", path="/run/c.sock")


def test_round_robin() -> None:
    backends = BackendSet([A, B, C], 1.0, 0)
    assert [backends.order()[0] for _ in range(6)] == [A, B, C, A, B, C]
    assert backends.order() == [A, B, C]  # the rest of the turn follows, to try after a failure


def test_down_addresses_go_last_until_fail_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("frontd.gateway.backends.time.monotonic", lambda: now[0])
    backends = BackendSet([A, B, C], 1.0, 0, fail_timeout=10.0)
    backends.mark_down(B)
    assert backends.is_down(B) and not backends.is_down(A)
    # B's turn passes to the next address up; B is tried last, should all the others fail.
    assert [backends.order() for _ in range(3)] == [[A, C, B], [C, A, B], [C, A, B]]
    now[0] += 10.0
    assert not backends.is_down(B)
    assert backends.order() == [A, B, C]


def test_all_down_still_tried() -> None:
    backends = BackendSet([A, B], 1.0, 0)
    backends.mark_down(A)
    backends.mark_down(B)
    assert sorted(backends.order(), key=str) == [A, B]


def test_needs_an_address() -> None:
    with pytest.raises(ValueError):
        BackendSet([], 1.0, 0)


class _Transport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True


class _Writer:
    def __init__(self) -> None:
        self.transport = _Transport()

    def is_closing(self) -> bool:
        return self.transport.closing


def test_close_closes_the_pool_and_pools_nothing_after() -> None:
    async def main() -> None:
        backends = BackendSet([A, B], 1.0, 2)

        def connection(address: Address) -> BackendConnection:
            conn = BackendConnection(address, asyncio.StreamReader(), _Writer(), reused=False)  # type: ignore[arg-type]
            conn.keep = True
            return conn

        idle = [connection(A), connection(B)]
        for conn in idle:
            backends.release(conn)
        assert backends.idle_count() == 2
        backends.close()  # worker shutdown
        assert backends.idle_count() == 0 and all(conn.writer.transport.is_closing() for conn in idle)
        # A request that was running during the stop ends cleanly: its connection is closed too.
        late = connection(A)
        backends.release(late)
        assert backends.idle_count() == 0 and late.writer.transport.is_closing()

    asyncio.run(main())


def test_capacity_hand_off_and_no_starvation(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        pool = ConnectionPool()
        key = ("fastcgi", A)

        def busy(waiting: bool = False) -> BackendConnection:
            conn = BackendConnection(A, asyncio.StreamReader(), _Writer(), reused=False)  # type: ignore[arg-type]
            if waiting:
                pool.wait_for_answer(key, conn)
            pool.lend(key, conn)
            return conn

        answered, backlogged, kept = busy(), busy(waiting=True), busy()
        assert not pool.at_capacity(key)  # nothing learnt: a new connection may be opened
        kept.close()  # a kept connection closed for the backlogged one...
        pool.learn_capacity(key)  # ...so the backend serves two: `answered` and `backlogged`
        assert pool.at_capacity(key)

        # A request waiting for a connection is handed the next one released, as it is.
        first = asyncio.ensure_future(pool.wait_for_release(key, 5))
        second = asyncio.ensure_future(pool.wait_for_release(key, 5))
        await asyncio.sleep(0)
        assert pool.hand_off(key, answered)
        assert await first is answered
        # A busy connection that is closed instead lets the next waiter open its own, once no
        # new connection waits in the backlog for the process it held.
        pool.answered(key, backlogged)
        backlogged.close()
        assert await second is None
        # A waiter gives up after its time, and a cancelled one does not take a connection.
        assert await pool.wait_for_release(key, 0.01) is None
        third = asyncio.ensure_future(pool.wait_for_release(key, 5))
        await asyncio.sleep(0)
        third.cancel()
        await asyncio.sleep(0)
        assert not pool.hand_off(key, answered)

        # The capacity learnt holds for PROBE_INTERVAL, then a new connection may be tried.
        monkeypatch.setattr(backends_module, "PROBE_INTERVAL", 0.0)
        assert not pool.at_capacity(key)

    asyncio.run(main())
