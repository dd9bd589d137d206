"""Per-client limits at the socket: `client_rate` / `client_burst` and `client_connections`, across
two workers, for clients bound to 127.0.0.1 and 127.0.0.2, and behind a trusted proxy."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Frontd, wait_for
from tests.http_client import Answer, RawClient
from tests.integration.processes import wait_workers

Start = Callable[..., Frontd]
ONE = "127.0.0.1"
TWO = "127.0.0.2"
STATUS = "/frontd-status"


def vhost(root: Path) -> str:
    return (f'[[vhost]]\nnames = ["example.test"]\nroot = "{root}"\nstatus = "{STATUS}"\n'
            f'status_allow = ["127.0.0.3"]\n')


def connect(server: Frontd, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))


def request(sock: socket.socket, path: str = "/hello.txt", fields: str = "") -> Answer:
    client = RawClient(sock)
    client.send(f"GET {path} HTTP/1.1\r\nHost: example.test\r\n{fields}\r\n".encode())
    return client.read()


def get(server: Frontd, source: str, path: str = "/hello.txt", fields: str = "") -> Answer:
    with connect(server, source) as sock:
        return request(sock, path, fields)


def worker_requests(server: Frontd) -> list[int]:
    answer = get(server, "127.0.0.3", f"{STATUS}?format=json")
    assert answer.status == 200, answer
    return [w["requests"] for w in json.loads(answer.body)["workers"]]


def test_burst_over_the_rate_gets_429_across_two_workers(frontd: Start, site: Path) -> None:
    server = frontd(vhost(site) + '[limits]\nclient_rate = "1/m"\nclient_burst = 5\n', top="workers = 2")
    wait_workers(server.pid, 2)
    # 20 connections open at once, then one request on each: the bucket holds 5 and refills 1 a
    # minute, so exactly 5 pass whichever worker serves them. Which worker accepts is the
    # kernel's and the scheduler's choice: a round whose 20 connections all went to one worker
    # proves nothing about sharing, so rounds go on, each from a client address of its own (a
    # bucket of its own), until both workers have served some.
    served: list[int] = []
    for last in range(10, 30):
        socks = [connect(server, f"127.0.0.{last}") for _ in range(20)]
        try:
            answers = [request(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        statuses = [a.status for a in answers]
        assert statuses.count(200) == 5, statuses
        assert statuses.count(429) == 15, statuses
        refused = next(a for a in answers if a.status == 429)
        # A full request a minute: the next one is at most 60 s away.
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        rounds = last - 9
        served = wait_for(lambda rounds=rounds: (lambda w: w if sum(w) >= 20 * rounds else None)(worker_requests(server)),
                          what="counts")  # type: ignore[assignment]
        if all(n > 0 for n in served):
            break
    assert all(n > 0 for n in served), f"one worker served everything in 20 rounds: {served}"
    # Another client has a bucket of its own.
    assert get(server, TWO).status == 200
    server.wait_error_log(r"429: client 127\.0\.0\.10 over client_rate \(0\.0166667/s, burst 5\)")


def test_rate_refills(frontd: Start, site: Path) -> None:
    server = frontd(vhost(site) + '[limits]\nclient_rate = "20/s"\nclient_burst = 1\n')
    with connect(server, ONE) as sock:
        assert request(sock).status == 200
        answer = request(sock)
        assert answer.status == 429 and answer.headers["retry-after"] == "1"
        # Not a fatal error: the connection carries the next request, which a refill lets through.
        wait_for(lambda: request(sock).status == 200, what="a refilled bucket")


def test_trusted_proxy_is_limited_by_the_clients_it_names(frontd: Start, site: Path) -> None:
    """1000 distinct forged addresses from a trusted proxy: each has a bucket of its own (the
    proxy itself is not limited), the table stays within its fixed size, and a named client
    over its rate is refused."""
    server = frontd(vhost(site) + '[limits]\nclient_rate = "1/m"\nclient_burst = 1\n',
                    top='trusted_proxies = ["127.0.0.1"]')
    with connect(server, ONE) as sock:
        for i in range(1000):
            answer = request(sock, fields=f"X-Forwarded-For: 10.{i // 250}.{i % 250}.1\r\n")
            assert answer.status == 200, (i, answer)
        assert request(sock, fields="X-Forwarded-For: 10.0.0.1\r\n").status == 429
        assert request(sock, fields="X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n").status == 429
    server.wait_access_log(r"(?m)^10\.0\.0\.1 - - .* 429 ")
    # From an untrusted peer the field is not believed: 127.0.0.2 is limited as itself.
    assert get(server, TWO, fields="X-Forwarded-For: 10.3.3.3\r\n").status == 200
    assert get(server, TWO, fields="X-Forwarded-For: 10.3.3.4\r\n").status == 429


def test_connection_limit_per_client(frontd: Start, site: Path) -> None:
    server = frontd(vhost(site) + "[limits]\nclient_connections = 2\n", top="workers = 2")
    wait_workers(server.pid, 2)
    first, second = connect(server, ONE), connect(server, ONE)
    try:
        assert request(first).status == 200
        assert request(second).status == 200
        # A third connection: its request gets 429, then the connection is closed.
        with connect(server, ONE) as third:
            answer = request(third)
            assert answer.status == 429 and answer.headers["retry-after"] == "1"
            assert answer.headers.get("connection") == "close"
            assert RawClient(third).closed_by_peer()
        server.wait_error_log(r"429: client 127\.0\.0\.1 over client_connections \(2\)")
        # Another client is unaffected.
        with connect(server, TWO) as other:
            assert request(other).status == 200
        # The open ones go on serving.
        assert request(first).status == 200
    finally:
        first.close()
    # One closed: there is room again (once the server has seen the close).
    try:
        wait_for(lambda: get(server, ONE).status == 200, what="a freed connection")
    finally:
        second.close()


def test_a_killed_worker_does_not_leave_connections_counted(frontd: Start, site: Path) -> None:
    server = frontd(vhost(site) + "[limits]\nclient_connections = 1\n")
    (worker,) = wait_workers(server.pid, 1)
    with connect(server, ONE) as sock:
        assert request(sock).status == 200
        os.kill(worker, signal.SIGKILL)  # the connection's count is never released by it
        wait_workers(server.pid, 1, not_in={worker})
    # Counted again from zero: the client is not locked out by a connection that is gone.
    assert get(server, ONE).status == 200


def test_a_rewritten_request_is_counted_once(frontd: Start, site: Path) -> None:
    """Rewrites run before the limits: the request they rewrite is still counted, once."""
    config = (vhost(site) + "  [[vhost.rewrite]]\n  match = '^/hi$'\n  to = \"/hello.txt\"\n"
              + '[limits]\nclient_rate = "1/m"\nclient_burst = 2\n')
    server = frontd(config)
    with connect(server, ONE) as sock:
        assert request(sock, "/hi").status == 200
        assert request(sock, "/hi").status == 200
        assert request(sock, "/hi").status == 429
