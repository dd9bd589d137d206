"""Status page: shared counters (slots, backends, aggregation), percentiles, and the three views.

No processes: the area is the same mapping the master would share, written through a
`WorkerStats` attached to a slot as a forked worker would be.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import html.parser
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from frontd.config.load import ConfigError, parse_config
from frontd.config.model import Address, Config, ProxyTarget, Route, VHost
from frontd.errors import BadRequest
from frontd.handlers.status import status_format
from frontd.http.addresses import client_allowed
from frontd.status import metrics
from frontd.status.metrics import LATENCY_BOUNDS, Area, WorkerStats, percentile
from frontd.status.render import (
    backend_routes,
    render_html,
    render_json,
    render_prometheus,
    to_dict,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "status.md"
PHP = Address("unix", path="/run/php.sock")
API = Address("tcp", host="127.0.0.1", port=9000)


def documented_json_blocks() -> list[dict[str, object]]:
    """The ```json blocks of docs/status.md, in order: the schema, then the example."""
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.DOTALL)
    return [json.loads(block) for block in blocks]


SCHEMA = documented_json_blocks()[0]


def config(workers: int = 2) -> Config:
    return Config(
        path="/etc/frontd.conf", listen=(Address("tcp", "127.0.0.1", 8080),), workers=workers,
        vhosts=(VHost(names=("example.test",), routes=(
            Route(prefix="/php/", kind="fastcgi", backends=(PHP,)),
            Route(prefix="/api/", kind="proxy", proxy=(ProxyTarget(API),)),
            Route(prefix="/api2/", kind="proxy", proxy=(ProxyTarget(API),)),
        ), status="/frontd-status"),),
    )


def in_task(fn: Callable[[], None]) -> None:
    """Run `fn` in a fresh context, as each connection's task does."""
    contextvars.copy_context().run(fn)


# -- percentiles --------------------------------------------------------------------------------


def test_percentile_interpolates_within_the_bucket() -> None:
    buckets = [0] * metrics.BUCKETS
    i = LATENCY_BOUNDS.index(0.01)  # the bucket (0.005, 0.01]
    buckets[i] = 10
    assert percentile(buckets, 0.5) == pytest.approx(0.0075)
    assert percentile(buckets, 1.0) == pytest.approx(0.01)
    assert percentile(buckets, 0.1) == pytest.approx(0.0055)


def test_percentile_across_buckets_and_edges() -> None:
    buckets = [0] * metrics.BUCKETS
    assert percentile(buckets, 0.5) is None
    buckets[0] = 90  # <= 100 µs
    buckets[-1] = 10  # slower than the last bound
    assert percentile(buckets, 0.5) == pytest.approx(0.0001 * 50 / 90)
    assert percentile(buckets, 0.9) == pytest.approx(0.0001)
    assert percentile(buckets, 0.99) == LATENCY_BOUNDS[-1]  # unbounded bucket: its lower bound


# -- the area: slots, backends, gauges ------------------------------------------------------------


def test_a_worker_number_keeps_its_slot_across_generations() -> None:
    area = Area(slots=4)
    area.configured(config())
    first = area.claim(0)
    area.started(first, 100)
    # A reload: the new worker 0 runs beside the old one, in a slot of its own.
    area.configured(config())
    second = area.claim(0)
    area.started(second, 200)
    assert second != first
    area.exited(100)
    # The next process of worker 0 gets the slot worker 0 used before, not a fresh one.
    area.exited(200)
    assert area.claim(0) in (first, second)
    other = area.claim(1)
    assert other not in (first, second)


def test_slots_run_out_gracefully() -> None:
    area = Area(slots=1)
    area.configured(config(1))
    assert area.claim(0) == 0
    assert area.claim(1) == area.scratch_slot  # counted nowhere, never read


def worker(area: Area, number: int, pid: int) -> WorkerStats:
    stats = WorkerStats()
    slot = area.claim(number)
    area.started(slot, pid)
    stats.attach(area, slot, number)
    return stats


def test_counts_add_up_across_workers_and_survive_an_exit() -> None:
    area = Area(slots=8)
    area.configured(config())
    w0, w1 = worker(area, 0, 100), worker(area, 1, 101)
    w0.connection_opened()
    w1.connection_opened()
    w1.connection_opened()
    start = time.monotonic()
    for status in (200, 200, 304, 404):
        w0.request(status, 10, start)
    for status in (200, 502, 101, 999):
        w1.request(status, 5, start)
    snap = area.snapshot(1)
    assert snap.answered_by == 1
    assert snap.totals.requests == 8
    assert snap.totals.responses == [1, 3, 1, 1, 2]  # 999 counts as 5xx
    assert snap.totals.bytes_sent == 60
    assert snap.totals.observed == 7  # the 101 (a WebSocket tunnel's life) is not a latency
    assert (snap.active, snap.connections) == (3, 3)
    assert [(w.number, w.pids, w.counts.requests, w.active) for w in snap.workers] == [
        (0, [100], 4, 1), (1, [101], 4, 2)]
    # Worker 1 is killed with two connections open: its gauge goes, its counts stay.
    area.exited(101)
    snap = area.snapshot()
    assert snap.totals.requests == 8
    assert snap.active == 1
    assert snap.workers[1].pids == []
    # Its replacement counts on from there.
    w1 = worker(area, 1, 102)
    w1.request(200, 1, start)
    snap = area.snapshot()
    assert snap.workers[1].counts.requests == 5
    assert snap.workers[1].pids == [102]


def test_backend_requests_are_attributed_through_the_task_context() -> None:
    area = Area(slots=4)
    area.configured(config())
    stats = worker(area, 0, 100)
    php = stats.backend_id(PHP)
    api = stats.backend_id("127.0.0.1:9000")
    assert (php, api) == (0, 1)
    assert stats.backend_id("127.0.0.1:1") == area.backends  # unregistered: the scratch backend
    start = time.monotonic()

    def php_request() -> None:
        stats.backend_used(php)
        stats.request(200, 100, start)

    def api_failure() -> None:
        stats.backend_failed(api, 10.0)  # connect refused, no other backend: its 502
        stats.request(502, 0, start)

    def static_request() -> None:
        stats.request(200, 7, start)

    for fn in (php_request, php_request, api_failure, static_request):
        in_task(fn)
    snap = area.snapshot()
    by_address = {b.address: b for b in snap.backends}
    assert by_address["unix:/run/php.sock"].counts.responses == [0, 2, 0, 0, 0]
    assert by_address["unix:/run/php.sock"].counts.bytes_sent == 200
    assert by_address["unix:/run/php.sock"].up
    failed = by_address["127.0.0.1:9000"]
    assert failed.kind == "proxy"
    assert failed.counts.requests == 1 and failed.counts.responses[4] == 1
    assert (failed.failures, failed.down_workers, failed.up) == (1, 1, False)
    assert failed.last_failure > 0
    assert snap.totals.requests == 4
    # The worker is gone: nobody skips the backend any more, the failure stays counted.
    area.exited(100)
    failed = {b.address: b for b in area.snapshot().backends}["127.0.0.1:9000"]
    assert (failed.failures, failed.up) == (1, True)


def test_a_request_does_not_inherit_the_previous_requests_backend() -> None:
    area = Area(slots=2)
    area.configured(config())
    stats = worker(area, 0, 100)
    start = time.monotonic()

    async def connection() -> None:
        # Two requests on one connection (one task): the second is a static file.
        stats.backend_used(stats.backend_id(PHP))
        stats.request(200, 1, start)
        stats.request(200, 1, start)

    asyncio.run(connection())
    php = area.snapshot().backends[0]
    assert php.counts.requests == 1


def test_spawn_supervisor_api() -> None:
    area = Area(slots=2)
    saved = metrics.AREA
    metrics.AREA = area
    try:
        area.configured(config())
        metrics.backend_processes(PHP, 4, kind="fastcgi")
        metrics.backend_restarted(PHP, kind="fastcgi")
        metrics.backend_restarted(PHP, kind="fastcgi")
        # A socket the supervisor created, which no route names: registered on the spot.
        metrics.backend_processes("unix:/run/frontd/app.sock", 2, kind="scgi")
    finally:
        metrics.AREA = saved
    snap = area.snapshot()
    by_address = {b.address: b for b in snap.backends}
    assert (by_address[str(PHP)].processes, by_address[str(PHP)].restarts) == (4, 2)
    spawned = by_address["unix:/run/frontd/app.sock"]
    assert (spawned.kind, spawned.processes, spawned.configured) == ("scgi", 2, True)
    # Workers find it by address, even when it was registered after they forked.
    stats = worker(area, 0, 100)
    assert stats.backend_id("unix:/run/frontd/app.sock") == spawned.id


def test_backends_of_an_earlier_configuration_are_kept_but_marked() -> None:
    area = Area(slots=2)
    area.configured(config())
    area.configured(Config(path="/x", listen=(), vhosts=(VHost(names=(), routes=(
        Route(prefix="/", kind="fastcgi", backends=(PHP,)),)),)))
    snap = area.snapshot()
    assert snap.generation == 2
    assert {b.address: b.configured for b in snap.backends} == {str(PHP): True, str(API): False}


def test_backend_routes() -> None:
    assert backend_routes(config()) == {
        str(PHP): ["example.test/php/"], str(API): ["example.test/api/", "example.test/api2/"]}


# -- views ----------------------------------------------------------------------------------------


def busy_area() -> Area:
    """Two workers, traffic of every class, a backend down, a spawned backend restarted."""
    area = Area(slots=4)
    area.configured(config())
    start = time.monotonic() - 0.003
    for number in (0, 1):
        stats = worker(area, number, 100 + number)
        stats.connection_opened()
        for status in (100, 200, 200, 301, 404, 500):
            in_task(functools.partial(stats.request, status, 1000, start))

        def php_request() -> None:
            stats.backend_used(stats.backend_id(PHP))
            stats.request(200, 50, start)

        in_task(php_request)

    def api_failure() -> None:
        stats.backend_failed(stats.backend_id(API), 10.0)
        stats.request(502, 0, start)

    in_task(api_failure)
    area.set_processes(area.register("fastcgi", PHP), 3)
    area.add_restart(area.register("fastcgi", PHP))
    return area


def test_json_validates_against_the_documented_schema() -> None:
    snap = busy_area().snapshot(0)
    doc = json.loads(render_json(snap, backend_routes(config())))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["totals"]["requests"] == 15
    assert doc["totals"]["responses"] == {"1xx": 2, "2xx": 6, "3xx": 2, "4xx": 2, "5xx": 3}
    assert len(doc["totals"]["latency"]["buckets"]) == metrics.BUCKETS
    assert doc["totals"]["latency"]["buckets"][-1] == {"le": "+Inf", "count": 15}
    backends = {b["address"]: b for b in doc["backends"]}
    assert backends["127.0.0.1:9000"]["state"] == "down"
    assert backends[str(PHP)]["processes"] == 3 and backends[str(PHP)]["restarts"] == 1
    assert backends[str(PHP)]["routes"] == ["example.test/php/"]


def test_the_documented_example_validates_and_the_schema_is_strict() -> None:
    example = documented_json_blocks()[1]
    jsonschema.validate(example, SCHEMA, cls=jsonschema.Draft202012Validator)
    doc = to_dict(busy_area().snapshot(0), {})
    doc["workers"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_prometheus_text_parses() -> None:
    text = render_prometheus(busy_area().snapshot(0), {}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(name.startswith("frontd_") for name in families)
    # Every family has HELP and TYPE lines, once each.
    for name in re.findall(r"^# TYPE (\S+) ", text, re.M):
        assert text.count(f"# TYPE {name} ") == 1 and f"# HELP {name} " in text
    assert families["frontd_requests"].type == "counter"
    requests = {s.labels["worker"]: s.value for s in families["frontd_requests"].samples
                if s.name == "frontd_requests_total"}
    assert requests == {"0": 7.0, "1": 8.0}
    responses = {(s.labels["worker"], s.labels["class"]): s.value for s in families["frontd_responses"].samples}
    assert responses[("1", "5xx")] == 2.0
    histogram = families["frontd_request_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = [s for s in histogram.samples if s.name.endswith("_bucket") and s.labels["worker"] == "0"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 7.0
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    up = {s.labels["backend"]: s.value for s in families["frontd_backend_up"].samples}
    assert up == {str(PHP): 1.0, "127.0.0.1:9000": 0.0}
    assert families["frontd_config_generation"].samples[0].value == 1.0


def test_prometheus_label_values_are_escaped() -> None:
    area = Area(slots=1)
    area.register("fastcgi", 'unix:/tmp/a"b\\c\nd.sock')
    text = render_prometheus(area.snapshot(), {}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["frontd_backend_up"].samples
    assert sample.labels["backend"] == 'unix:/tmp/a"b\\c\nd.sock'


class _Tables(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, str | None]] = []
        self.meta: list[dict[str, str | None]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(dict(attrs))
        elif tag == "meta":
            self.meta.append(dict(attrs))
        elif tag == "script":
            self.scripts += 1


def test_html_has_a_table_per_backend_and_refreshes() -> None:
    page = render_html(busy_area().snapshot(0), backend_routes(config())).decode()
    parser = _Tables()
    parser.feed(page)
    assert [t.get("class") for t in parser.tables] == [None, "backend", "backend"]
    assert parser.tables[0].get("id") == "workers"
    assert {"http-equiv": "refresh", "content": "5"} in parser.meta
    assert "DOWN" in page and "example.test/php/" in page and "restarts 1" in page


def test_html_escapes_what_it_shows() -> None:
    area = Area(slots=1)
    area.register("proxy", "unix:/tmp/<script>alert(1)</script>")
    page = render_html(area.snapshot(), {"unix:/tmp/<script>alert(1)</script>": ["<b>x</b>/"]}).decode()
    parser = _Tables()
    parser.feed(page)
    assert parser.scripts == 0
    assert "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;/" in page


# -- access and format ---------------------------------------------------------------------------


def test_client_allowed() -> None:
    import ipaddress

    local = (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("::1"))
    private = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_allowed("127.0.0.1", local)
    assert client_allowed("::1", local)
    assert client_allowed("::ffff:127.0.0.1", local)  # IPv4 on a dual-stack listener
    assert not client_allowed("127.0.0.2", local)
    assert not client_allowed("unix:", local)
    assert client_allowed("10.200.3.4", private)
    assert not client_allowed("127.0.0.1", private)
    assert not client_allowed("11.0.0.1", private)
    assert not client_allowed("127.0.0.1", ())


def test_status_format() -> None:
    assert status_format("") == "html"
    assert status_format("format=json") == "json"
    assert status_format("x=1&format=prometheus") == "prometheus"
    with pytest.raises(BadRequest):
        status_format("format=xml")


# -- configuration --------------------------------------------------------------------------------


def load(vhost: dict[str, object]) -> Config:
    return parse_config({"vhost": [{"names": ["a.test"], **vhost}]}, "/etc/frontd/frontd.conf")


def test_config_keys() -> None:
    plain = load({"status": "/frontd-status"})
    assert plain.vhosts[0].status == "/frontd-status"
    assert plain.vhosts[0].status_allow == ("127.0.0.1", "::1")
    allowed = load({"status": "/s", "status_allow": ["10.0.0.0/8", "::1", "192.0.2.7"]})
    assert allowed.vhosts[0].status_allow == ("10.0.0.0/8", "::1/128", "192.0.2.7/32")
    assert load({"status": "/s", "status_allow": []}).vhosts[0].status_allow == ()


@pytest.mark.parametrize(("vhost", "message"), [
    ({"status": "frontd-status"}, r'vhost\[0\]\.status: must start with "/"'),
    ({"status": "/s?x=1"}, r"vhost\[0\]\.status: must be a plain decoded path"),
    ({"status": "/a//b"}, r"vhost\[0\]\.status: must not contain empty"),
    ({"status": "/a/../b"}, r"vhost\[0\]\.status: must not contain empty"),
    ({"status": 1}, r"vhost\[0\]\.status: expected a path"),
    ({"status": "/s", "status_allow": "127.0.0.1"}, r"vhost\[0\]\.status_allow: expected an array"),
    ({"status": "/s", "status_allow": ["10.0.0.1/8"]},
     r'vhost\[0\]\.status_allow\[0\]: "10\.0\.0\.1/8" has host bits set \(did you mean "10\.0\.0\.0/8"\?\)'),
    ({"status": "/s", "status_allow": ["localhost"]}, r"status_allow\[0\]: expected an IP address or network"),
    ({"statuss": "/s"}, r'unknown key "statuss" \(did you mean "status"\?\)'),
    ({}, r"serves nothing"),
])
def test_config_errors(vhost: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(vhost)
