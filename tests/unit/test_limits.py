"""frontd.rules.limits: the shared client table (token buckets, connection counts, eviction)."""

from __future__ import annotations

import os

import pytest

from frontd.config.model import Limits
from frontd.errors import TooManyRequests
from frontd.rules import limits as limits_module
from frontd.rules.limits import WAYS, ClientLimits, ClientTable, client_key


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The table's clock, in nanoseconds, moved by the test."""
    now = [10**12]
    monkeypatch.setattr(limits_module, "_clock", lambda: now[0])
    return now


def test_bucket_holds_burst_and_refills_at_rate(clock: list[int]) -> None:
    table = ClientTable(sets=4)
    key = client_key("192.0.2.1")
    assert [table.take(key, 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert table.take(key, 2.0, 3) == pytest.approx(0.5)  # 2 a second: one more in half a second
    clock[0] += 250_000_000
    assert table.take(key, 2.0, 3) == pytest.approx(0.25)
    clock[0] += 250_000_000
    assert table.take(key, 2.0, 3) == 0.0
    clock[0] += 3600 * 10**9  # never more than the burst
    assert [table.take(key, 2.0, 3) for _ in range(4)][-1] > 0


def test_ipv4_mapped_is_the_same_client() -> None:
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1")
    assert client_key("2001:db8::1") != client_key("192.0.2.1")


def test_connections_counted_and_released(clock: list[int]) -> None:
    table = ClientTable(sets=4)
    key = client_key("192.0.2.1")
    assert table.open(key, 2, 1) and table.open(key, 2, 1)
    assert not table.open(key, 2, 1)
    assert table.open(client_key("192.0.2.2"), 2, 1)
    table.close(key)
    assert table.open(key, 2, 1)
    table.close(client_key("192.0.2.99"))  # never counted: nothing happens


def test_a_flood_of_addresses_keeps_the_table_bounded(clock: list[int]) -> None:
    table = ClientTable(sets=4)
    size = os.fstat(table.fd).st_size
    holder = client_key("198.51.100.1")
    assert table.open(holder, 10, 1)
    for i in range(1000):
        clock[0] += 1000
        assert table.take(client_key(f"10.0.{i // 256}.{i % 256}"), 1.0, 1) == 0.0
    assert table.entries() == table.capacity() == 4 * WAYS
    assert os.fstat(table.fd).st_size == size
    # An entry with an open connection outlives idle ones: its count is still there.
    assert not table.open(holder, 1, 1)


def test_client_limits_raise_429_with_retry_after(clock: list[int]) -> None:
    limits = ClientLimits(Limits(client_rate=0.5, client_burst=1), ClientTable(sets=4))
    limits.check_rate("192.0.2.1")
    with pytest.raises(TooManyRequests) as caught:
        limits.check_rate("192.0.2.1")
    assert caught.value.status == 429
    assert dict(caught.value.headers) == {b"retry-after": b"2"}
    assert ClientLimits.build(Limits()) is None


def test_forget_connections(clock: list[int]) -> None:
    table = ClientTable(sets=4)
    key = client_key("192.0.2.1")
    assert table.open(key, 1, 1) and not table.open(key, 1, 1)
    table.forget_connections()
    assert table.open(key, 1, 1)
    table.close(key)
    table.close(key)  # a live worker's connection closing after the reset: never below zero
    assert table.open(key, 1, 1)


@pytest.mark.parametrize("mutex", [True, False], ids=["mutex", "lockf"])
def test_lock_survives_a_holder_killed(mutex: bool) -> None:
    """A process that dies holding the lock (a worker killed mid-update) does not block the
    others: the robust mutex hands its next taker EOWNERDEAD, lockf is released by the kernel."""
    table = ClientTable(sets=4, mutex=mutex)
    assert table.lock.kind == ("mutex" if mutex else "lockf")
    pid = os.fork()
    if pid == 0:
        table.lock.acquire()
        os._exit(0)
    os.waitpid(pid, 0)
    table.lock.acquire()
    table.lock.release()
    assert table.take(client_key("192.0.2.1"), 1.0, 1) == 0.0
