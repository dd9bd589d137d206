"""FastCGI keep-alive against php-fpm's static pool: kept connections never starve it.

Issue 12 item 3: with `keepalive` on two php-fpm routes of one vhost (DokuWiki needs `/` and
`/lib/exe/`) and two frontd workers, a pool per route and worker could each hold an idle
connection, each holding one of php-fpm's children; the next new connection then waited in
php-fpm's backlog until the route's timeout, even under sequential traffic.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.interop.conftest import Peer, start_php_fpm
from tests.interop.test_php_fpm import ROOT

# Far above what php-fpm needs for these scripts, far below the route's timeout (a hang is a 504
# after `timeout`): a request that waited for a kept connection to be let go takes longer.
QUICK = 2.5


def wiki_config(address: str, keepalive: int, keepalive_timeout: str = "4s") -> str:
    """The DokuWiki layout: `/` and `/lib/exe/` on the same php-fpm, both with keep-alive."""
    routes = ""
    for prefix in ("/", "/lib/exe/"):
        routes += f"""
  [[vhost.route]]
  prefix = "{prefix}"
  fastcgi = "{address}"
  root = "{ROOT}"
  index = ["index.php"]
  keepalive = {keepalive}
  keepalive_timeout = "{keepalive_timeout}"
  timeout = "6s"
"""
    return f"""
[[vhost]]
names = ["wiki.test"]
default = true
{routes}"""


@pytest.fixture(scope="module")
def fpm(peers: Callable[..., Peer], workdir: Path) -> Peer:
    # pm = static with 2 children: each kept connection holds one of them. A pool for each
    # frontd: one frontd's kept connections would hold the other's children.
    two = "pm.max_children = 2"
    return start_php_fpm(peers, workdir, {name: f"unix:{workdir}/php-{name}.sock" for name in "stu"},
                         workers={name: two for name in "stu"})


@pytest.fixture(scope="module")
def two_workers(fpm: Peer, frontd_module: Callable[..., Frontd]) -> Frontd:
    return frontd_module(wiki_config(fpm.addresses[0], 4), top="workers = 2", name="two.conf")


@pytest.fixture(scope="module")
def one_worker(fpm: Peer, frontd_module: Callable[..., Frontd]) -> Frontd:
    return frontd_module(wiki_config(fpm.addresses[1], 4), top="workers = 1", name="one.conf")


def timed_get(server: Frontd, path: str) -> tuple[int, float, str]:
    start = time.monotonic()
    response = requests.get(server.url(path), timeout=15)
    return response.status_code, time.monotonic() - start, response.text


def test_sequential_requests_alternating_routes_never_wait(two_workers: Frontd) -> None:
    # A new client connection each time, so that both workers take requests.
    for i in range(16):
        path = "/lib/exe/info.php" if i % 2 else "/info.php"
        status, took, text = timed_get(two_workers, path)
        assert status == 200, (i, path, text[:200], two_workers.errors()[-2000:])
        assert took < QUICK, (i, path, took)


def test_a_new_connection_is_not_left_behind_idle_ones(one_worker: Frontd) -> None:
    # Two requests take both children; a third connection waits in php-fpm's backlog. As the
    # first two end, their connections must not be parked while the third waits: it would
    # never be accepted.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(timed_get, one_worker, f"{prefix}nap.php?ms=400")
                   for prefix in ("/", "/lib/exe/", "/")]
        results = [future.result() for future in futures]
    for status, took, text in results:
        assert status == 200, (results, one_worker.errors()[-2000:])
        assert took < QUICK + 0.8, results
    # And afterwards, sequential traffic reuses what is kept without waiting.
    for i in range(6):
        status, took, text = timed_get(one_worker, "/lib/exe/info.php" if i % 2 else "/info.php")
        assert status == 200 and took < QUICK, (i, status, took, text[:200])


def test_idle_connections_of_another_frontd_are_let_go_by_their_timer(
        fpm: Peer, frontd_module: Callable[..., Frontd]) -> None:
    # keepalive x processes > children: frontd A parks two connections, holding both children of
    # pool "u"; frontd B's new connection waits in php-fpm's backlog until A's keepalive_timeout
    # closes them, whether or not A sees another request (before, they stayed until A reused
    # them: B got a 504).
    address = fpm.addresses[2]
    a = frontd_module(wiki_config(address, 2, keepalive_timeout="1s"), top="workers = 1", name="a.conf")
    b = frontd_module(wiki_config(address, 2), top="workers = 1", name="b.conf")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda prefix: timed_get(a, f"{prefix}nap.php?ms=300&early=1"), ("/", "/lib/exe/")))
    assert [status for status, _, _ in results] == [200, 200], results
    status, took, text = timed_get(b, "/info.php")
    assert status == 200, (text[:200], b.errors()[-2000:])
    assert took < 1.0 + QUICK, took
