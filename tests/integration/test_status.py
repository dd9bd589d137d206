"""The status page of a running frontd: counters move with traffic, three formats, access, workers.

JSON is checked against the schema in docs/status.md, the Prometheus text with prometheus_client's
parser, the HTML in headless Chromium (Debian's `chromium`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Frontd, wait_for
from tests.integration.processes import wait_workers
from tests.integration.proxy_backend import Backends

Start = Callable[..., Frontd]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "status.md"
SCHEMA = json.loads(re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.DOTALL)[0])
STATUS = "/frontd-status"


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def dead_port() -> int:
    """A local port nobody listens on (bound then closed: connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(site: Path, *, extra: str = "", routes: str = "") -> str:
    return f'[[vhost]]\nroot = "{site}"\nstatus = "{STATUS}"\n{extra}\n{routes}'


def proxy_route(prefix: str, url: str) -> str:
    return f'[[vhost.route]]\nprefix = "{prefix}"\nproxy = "{url}"\n'


def status(server: Frontd) -> dict[str, Any]:
    """The JSON status, fetched on a connection of its own (any worker may answer)."""
    response = requests.get(server.url(STATUS), params={"format": "json"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    doc: dict[str, Any] = response.json()
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    return doc


def get(server: Frontd, path: str) -> int:
    return requests.get(server.url(path), timeout=10, allow_redirects=False).status_code


def test_counters_move_with_traffic(frontd: Start, site: Path) -> None:
    server = frontd(config(site))
    before = status(server)
    for _ in range(7):
        assert get(server, "/hello.txt") == 200
    for _ in range(3):
        assert get(server, "/missing") == 404
    after = status(server)
    # One worker, one request at a time: every request was counted before the next was read.
    # The first status request itself is one more 2xx.
    assert after["totals"]["requests"] == before["totals"]["requests"] + 11
    assert after["totals"]["responses"]["2xx"] == before["totals"]["responses"]["2xx"] + 8
    assert after["totals"]["responses"]["4xx"] == before["totals"]["responses"]["4xx"] + 3
    assert after["totals"]["bytes_sent"] >= before["totals"]["bytes_sent"] + 7 * len("hello\n")
    assert after["totals"]["latency"]["count"] == after["totals"]["requests"]
    assert after["totals"]["latency"]["p50"] is not None
    assert after["totals"]["connections"] == before["totals"]["connections"] + 11
    (worker,) = after["workers"]
    assert worker["worker"] == 0 and worker["pids"] and worker["generation"] == 1
    assert after["generation"] == 1 and after["uptime"] >= 0
    assert after["started"] <= after["config_loaded"] <= after["time"]


def test_active_connections(frontd: Start, site: Path) -> None:
    server = frontd(config(site))
    assert status(server)["totals"]["active_connections"] == 1  # the status request's own
    held = [server.connect() for _ in range(3)]
    try:
        wait_for(lambda: status(server)["totals"]["active_connections"] == 4, what="3 held connections counted")
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: status(server)["totals"]["active_connections"] == 1, what="closed connections uncounted")


def test_status_classes_and_backends(frontd: Start, site: Path, backends: Backends) -> None:
    live = backends.start(name="live")
    dead = f"127.0.0.1:{dead_port()}"
    routes = proxy_route("/app/", live.url) + proxy_route("/down/", f"http://{dead}")
    server = frontd(config(site, routes=routes))
    assert get(server, "/hello.txt") == 200
    assert get(server, "/sub") == 301
    assert get(server, "/missing") == 404
    for _ in range(4):
        assert get(server, "/app/x") == 200
    for _ in range(2):
        assert get(server, "/down/x") == 502
    doc = status(server)
    assert doc["totals"]["responses"] == {"1xx": 0, "2xx": 5, "3xx": 1, "4xx": 1, "5xx": 2}
    by_address = {b["address"]: b for b in doc["backends"]}
    app = by_address[live.address]
    assert (app["kind"], app["state"], app["requests"], app["failures"]) == ("proxy", "up", 4, 0)
    assert app["responses"]["2xx"] == 4 and app["bytes_sent"] > 0
    assert app["routes"] == ["(default)/app/"] and app["configured"]
    down = by_address[dead]
    assert (down["state"], down["failures"], down["down_workers"]) == ("down", 2, 1)
    assert down["responses"]["5xx"] == 2 and down["last_failure"] is not None


def test_prometheus_format_parses(frontd: Start, site: Path) -> None:
    server = frontd(config(site))
    for _ in range(5):
        get(server, "/missing")
    response = requests.get(server.url(STATUS), params={"format": "prometheus"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families and all(name.startswith("frontd_") for name in families)
    for family in families.values():
        assert family.documentation, family.name
    responses = {(s.labels["worker"], s.labels["class"]): s.value for s in families["frontd_responses"].samples}
    assert responses[("0", "4xx")] == 5.0
    assert families["frontd_request_duration_seconds"].type == "histogram"
    assert families["frontd_config_generation"].samples[0].value == 1.0


def test_html_renders_in_headless_chromium(frontd: Start, site: Path, backends: Backends,
                                           tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (tests/run.sh installs Debian's chromium)")
    live = backends.start(name="live")
    server = frontd(config(site, routes=proxy_route("/app/", live.url)))
    get(server, "/app/")
    response = requests.get(server.url(STATUS), timeout=10)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr",
         f"--user-data-dir={profile}", "--dump-dom", server.url(STATUS)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<h1>frontd status</h1>" in dom
    assert '<table id="workers">' in dom
    assert dom.count('<table class="backend"') == 1 and live.address in dom
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', dom)
    # Console errors (a script error, a resource that failed) would be logged as CONSOLE lines.
    assert not re.search(r"CONSOLE.*(Uncaught|Error)|Failed to load resource", result.stderr)


def test_refused_outside_status_allow(frontd: Start, site: Path) -> None:
    server = frontd(config(site, extra='status_allow = ["10.0.0.0/8"]'))
    for fmt in ("html", "json", "prometheus"):
        response = requests.get(server.url(STATUS), params={"format": fmt}, timeout=10)
        assert response.status_code == 403
        assert "frontd_" not in response.text and "workers" not in response.text
    server.wait_error_log(r"status page: client 127\.0\.0\.1 is not in status_allow")
    # Only the exact path is the status page; the rest of the site is served as before.
    assert get(server, STATUS + "/x") == 404
    assert get(server, "/hello.txt") == 200


def test_methods_and_formats(frontd: Start, site: Path) -> None:
    server = frontd(config(site))
    assert requests.head(server.url(STATUS), timeout=10).status_code == 200
    response = requests.post(server.url(STATUS), data=b"x", timeout=10)
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert requests.get(server.url(STATUS), params={"format": "xml"}, timeout=10).status_code == 400


def test_workers_aggregated_whichever_answers(frontd: Start, site: Path) -> None:
    server = frontd(config(site), top="workers = 2")
    n = 30
    for _ in range(n):
        assert get(server, "/missing") == 404  # a fresh connection each: either worker accepts
    # A worker counts a request just after sending its response: let the last one land.
    wait_for(lambda: status(server)["totals"]["responses"]["4xx"] == n, what=f"{n} 404s counted")
    answers: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def ask() -> None:
        doc = status(server)
        with lock:
            answers.setdefault(doc["answered_by"], doc)

    def both_answered() -> bool:
        # Concurrent connections, so that both workers take some.
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return set(answers) == {0, 1}

    wait_for(both_answered, 20, "status answers from both workers")
    for doc in answers.values():
        # The 404s were counted by whichever worker served them; each answer has them all.
        assert doc["totals"]["responses"]["4xx"] == n
        assert sum(w["responses"]["4xx"] for w in doc["workers"]) == n
        assert sum(w["requests"] for w in doc["workers"]) == doc["totals"]["requests"]
        assert [w["worker"] for w in doc["workers"]] == [0, 1]
        assert all(len(w["pids"]) == 1 for w in doc["workers"])
    # Each worker has answered status requests, and each answer saw the other's count.
    wait_for(lambda: all(w["responses"]["2xx"] > 0 for w in status(server)["workers"]),
             what="status requests counted by both workers")


def test_counters_survive_a_reload(frontd: Start, site: Path) -> None:
    server = frontd(config(site), top='shutdown_timeout = "3s"')
    for _ in range(4):
        get(server, "/missing")
    before = status(server)
    os.kill(server.pid, signal.SIGHUP)
    server.wait_error_log(r"configuration reloaded")
    def new_generation() -> dict[str, Any] | None:
        doc = status(server)
        return doc if doc["workers"][0]["generation"] == 2 else None

    after = cast(dict[str, Any], wait_for(new_generation, what="a worker of generation 2 answering"))
    assert after["generation"] == 2 and after["config_loaded"] > before["config_loaded"]
    assert after["totals"]["responses"]["4xx"] == 4
    assert after["workers"][0]["pids"] != before["workers"][0]["pids"]
    assert after["started"] == before["started"]


def test_a_killed_worker_keeps_its_counts_and_drops_its_connections(frontd: Start, site: Path) -> None:
    server = frontd(config(site))
    for _ in range(3):
        get(server, "/missing")
    (old,) = wait_workers(server.pid, 1)
    held = server.connect()
    try:
        wait_for(lambda: status(server)["totals"]["active_connections"] == 2, what="the held connection counted")
        os.kill(old, signal.SIGKILL)
        wait_workers(server.pid, 1, not_in={old})

        def replaced() -> dict[str, Any] | None:
            doc = status(server)
            return doc if doc["workers"][0]["pids"] and old not in doc["workers"][0]["pids"] else None

        doc = cast(dict[str, Any], wait_for(replaced, what="the new worker 0 answering"))
    finally:
        held.close()
    # Worker 0's history goes on under the new process; the dead one's open connections are gone.
    assert [w["worker"] for w in doc["workers"]] == [0]
    assert doc["totals"]["responses"]["4xx"] == 3
    assert doc["totals"]["active_connections"] == 1
