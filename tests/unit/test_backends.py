"""frontd.gateway.backends: round-robin order and passive health (no sockets here; see
tests/integration/test_proxy_backends.py for connections and the pool)."""

from __future__ import annotations

import asyncio

import pytest

from frontd.config.model import Address
from frontd.gateway.backends import BackendConnection, BackendSet

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
