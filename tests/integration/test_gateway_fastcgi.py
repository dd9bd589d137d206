"""FastCGI routes against a capture backend: the exact records frontd sends, and what it makes of
the replies (status, STDERR, protocolStatus, timeouts, connection reuse and abort)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient
from tests.integration.gateway_backends import (
    Answer,
    CaptureServer,
    Captured,
    CaptureServers,
    env_json,
    free_port,
    route_config,
    rss_kib,
)
from tests.integration.processes import children

Start = Callable[..., Frontd]
HOST = {"Host": "app.test"}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[CaptureServers]:
    servers = CaptureServers("fastcgi", tmp_path)
    yield servers
    servers.stop_all()


def config(address: str, prefix: str = "/app/", extra: str = "", names: str = '"app.test"') -> str:
    return route_config("fastcgi", address, prefix=prefix, extra=extra, names=names)


def test_get_sends_begin_params_and_empty_stdin(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend(unix=True)
    server = frontd(config(fcgi.address))
    response = requests.get(server.url("/app/x/y%20z?a=1&b"), headers=HOST, timeout=10)
    assert response.status_code == 200, response.text
    (req,) = fcgi.requests
    # §5.1: RESPONDER, FCGI_KEEP_CONN clear by default; then PARAMS ending in an empty record and
    # an empty STDIN (§6.1: sent even without a body), nothing else.
    assert (req.role, req.flags) == (1, 0)
    types = [t for t, _, _ in req.records]
    assert types[0] == 1 and types[-1] == 5 and req.records[-1][2] == 0
    assert types.count(5) == 1
    assert req.records[-2] == (4, 1, 0)
    assert all(rid == 1 for _, rid, _ in req.records)
    env = req.env
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x/y z"
    assert env["QUERY_STRING"] == "a=1&b"
    assert env["REQUEST_URI"] == "/app/x/y%20z?a=1&b"
    assert env["SERVER_NAME"] == "app.test"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "CONTENT_LENGTH" not in env
    # Records are 8-byte aligned (§3.3 recommendation) and the raw bytes parse to the end.
    assert len(req.raw) % 8 == 0


def test_header_hygiene_httpoxy_folding_and_merging(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend()
    server = frontd(config(fcgi.address))
    with server.connect() as sock:
        sock.sendall(b"GET /app/ HTTP/1.1\r\nHost: app.test\r\nProxy: http://127.0.0.1:9/\r\n"
                     b"PROXY: http://127.0.0.1:9/\r\nX_Forwarded_For: 6.6.6.6\r\nRemote_User: admin\r\n"
                     b"X-Forwarded-For: 10.0.0.1\r\nX-Test: a\r\nX-Test: b\r\nCookie: c=1\r\nCookie: d=2\r\n"
                     b"Connection: close\r\n\r\n")
        answer = RawClient(sock).read()
    assert answer.status == 200
    env = fcgi.requests[0].env
    # httpoxy (CVE-2016-5385): no Proxy header ever becomes HTTP_PROXY.
    assert not [name for name in env if "PROXY" in name]
    # "_" names would fold onto trusted variables: dropped.
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "REMOTE_USER" not in env and "HTTP_REMOTE_USER" not in env
    # RFC 3875 §4.1.18: repeated fields merged into one variable.
    assert env["HTTP_X_TEST"] == "a, b"
    assert env["HTTP_COOKIE"] == "c=1; d=2"
    assert len(fcgi.requests[0].names()) == len(set(fcgi.requests[0].names()))


def test_post_body_and_chunked_body(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend()
    server = frontd(config(fcgi.address))
    body = bytes(range(256)) * 1000  # over one 65535-byte STDIN record
    response = requests.post(server.url("/app/up"), data=body, headers={**HOST, "Content-Type": "x/y"}, timeout=10)
    assert response.status_code == 200
    req = fcgi.requests[0]
    assert req.body == body
    assert req.env["CONTENT_LENGTH"] == str(len(body))
    assert req.env["CONTENT_TYPE"] == "x/y"
    assert all(length <= 65535 for t, _, length in req.records if t == 5)

    def chunks() -> Iterator[bytes]:
        yield b"first,"
        yield b"second," * 5000
        yield b"end"

    response = requests.post(server.url("/app/up"), data=chunks(), headers=HOST, timeout=10)
    assert response.status_code == 200
    req = fcgi.requests[1]
    expected = b"first," + b"second," * 5000 + b"end"
    # RFC 3875 §4.2: de-chunked, with CONTENT_LENGTH the length after de-chunking.
    assert req.body == expected
    assert req.env["CONTENT_LENGTH"] == str(len(expected))


def test_status_and_headers_relayed_head_discarded(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        return Answer(b"Status: 409 Conflict\r\nContent-Type: text/plain\r\nX-App: yes\r\n"
                      b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nconflict\n")

    fcgi = backend(app)
    server = frontd(config(fcgi.address))
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == 409
    assert response.reason == "Conflict"
    assert response.headers["X-App"] == "yes"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.text == "conflict\n"
    response = requests.head(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == 409 and response.content == b""


@pytest.mark.parametrize("status,name", [(1, "FCGI_CANT_MPX_CONN"), (2, "FCGI_OVERLOADED"),
                                         (3, "FCGI_UNKNOWN_ROLE")])
def test_rejected_request_is_503(frontd: Start, backend: Callable[..., CaptureServer], status: int,
                                 name: str) -> None:
    fcgi = backend(lambda s, r: Answer(protocol_status=status))
    server = frontd(config(fcgi.address))
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == 503
    server.wait_error_log(rf"503: fastcgi {fcgi.address}: FCGI_END_REQUEST with {name}")


def test_stderr_goes_to_error_log_with_backend_address(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        answer = env_json(server, req)
        answer.stderr = b"PHP message: something odd\nsecond line \x1b[31m\n"
        return answer

    fcgi = backend(app)
    server = frontd(config(fcgi.address))
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 200
    server.wait_error_log(rf"fastcgi {fcgi.address} stderr: PHP message: something odd, client: 127\.0\.0\.1")
    line = server.wait_error_log(r"stderr: second line .*")
    assert "\x1b" not in line.group(0) and "\\x1b" in line.group(0)


def test_no_stdout_is_502(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend(lambda s, r: Answer(output=b""))
    server = frontd(config(fcgi.address))
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 502


def test_slow_backend_is_504(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend(lambda s, r: Answer(b"Content-Type: text/plain\r\n\r\nlate", delay=3))
    server = frontd(config(fcgi.address, extra='timeout = "1s"'))
    started = time.monotonic()
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code == 504
    assert time.monotonic() - started < 2.5
    server.wait_error_log(rf"504: fastcgi {fcgi.address}: no output for 1s")


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_refused_connect_is_502_quickly(frontd: Start, tmp_path: Path, where: str) -> None:
    address = f"127.0.0.1:{free_port()}" if where == "tcp" else f"unix:{tmp_path / 'nobody.sock'}"
    server = frontd(config(address, extra='connect_timeout = "2s"'))
    started = time.monotonic()
    response = requests.get(server.url("/app/"), headers=HOST, timeout=10)
    assert response.status_code in (502, 503)
    assert time.monotonic() - started < 1.5
    server.wait_error_log(r"fastcgi .*connect failed")


def test_dead_backend_skipped(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend()
    dead = f"127.0.0.1:{free_port()}"
    server = frontd(f"""
[[vhost]]
names = ["app.test"]
  [[vhost.route]]
  prefix = "/app/"
  fastcgi = ["{dead}", "{fcgi.address}"]
""")
    statuses = [requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code for _ in range(4)]
    assert statuses == [200] * 4
    assert len(fcgi.requests) == 4


def test_keepalive_off_by_default_one_connection_per_request(frontd: Start,
                                                             backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend()
    server = frontd(config(fcgi.address))
    for _ in range(3):
        assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 200
    assert fcgi.connections == 3
    assert all(req.flags == 0 for req in fcgi.requests)


def test_keepalive_reuses_connections(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend(unix=True)
    server = frontd(config(fcgi.address, extra="keepalive = 2"))
    session = requests.Session()
    for i in range(4):
        response = session.post(server.url("/app/"), data=b"x" * (i * 1000), headers=HOST, timeout=10)
        assert response.status_code == 200
    # Content-Length in the reply: frontd stops at it and still waits for FCGI_END_REQUEST.
    assert fcgi.connections == 1
    assert [req.number for req in fcgi.requests] == [1, 2, 3, 4]
    assert [req.request_id for req in fcgi.requests] == [1, 2, 3, 4]  # a new id per request
    assert all(req.flags == 1 for req in fcgi.requests)
    assert [len(req.body) for req in fcgi.requests] == [0, 1000, 2000, 3000]


def test_keepalive_under_load_hands_connections_over(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    # Two "processes" (libfcgi, php-fpm's static pool), eight clients at once: once a new
    # connection had to wait for a kept one to be closed, requests wait for a busy connection to
    # be handed over instead of each opening one that makes another close (one connection per
    # request before). None may starve: every request is answered.
    fcgi = backend(lambda s, r: Answer(env_json(s, r).output, delay=0.02), processes=2)
    server = frontd(config(fcgi.address, extra='keepalive = 4\ntimeout = "8s"'))
    statuses: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(8):
                statuses.append(session.get(server.url("/app/"), headers=HOST, timeout=15).status_code)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 64, (statuses, server.errors()[-2000:])
    # The first eight connect (six wait in the backlog), then a probe a second at most.
    assert fcgi.connections <= 20, fcgi.connections
    assert all(req.flags == 1 for req in fcgi.requests)


def test_stale_pooled_connection_retried_once(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        if req.number == 2:
            # The backend read the request, then closed the kept connection without a word: the
            # race with an idle close (php-fpm at pm.max_requests).
            return Answer(drop=True)
        return env_json(server, req)

    fcgi = backend(app)
    server = frontd(config(fcgi.address, extra="keepalive = 2"))
    for body in (b"", b"small body"):
        response = requests.post(server.url("/app/"), data=body, headers=HOST, timeout=10)
        assert response.status_code == 200, response.text
    # Request 1 on connection 1; request 2 dropped there, sent again as request 1 of connection 2.
    assert [(r.connection, r.number) for r in fcgi.requests] == [(1, 1), (1, 2), (2, 1)]
    assert [r.request_id for r in fcgi.requests] == [1, 2, 2]  # the replay as it was sent
    assert fcgi.requests[2].body == b"small body"
    server.wait_error_log(r"pooled connection closed by the backend; sending the request again")


def test_fresh_connection_dropped_is_502_not_retried(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend(lambda s, r: Answer(drop=True))
    server = frontd(config(fcgi.address, extra="keepalive = 2"))
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 502
    assert len(fcgi.requests) == 1


def slow_stream(server: CaptureServer, req: Captured) -> Answer:
    def pieces() -> Iterator[bytes]:
        yield b"Content-Type: application/octet-stream\r\n\r\n"
        for _ in range(400):
            yield b"x" * 65536

    return Answer(pieces=pieces(), piece_delay=0.02)


@pytest.mark.parametrize("keepalive", [0, 2])
def test_client_gone_aborts_backend_request(frontd: Start, backend: Callable[..., CaptureServer],
                                            keepalive: int) -> None:
    fcgi = backend(slow_stream)
    server = frontd(config(fcgi.address, extra=f"keepalive = {keepalive}"))
    with server.connect() as sock:
        sock.sendall(b"GET /app/ HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    req = fcgi.wait_requests(1)[0]
    wait_for(lambda: req.aborted, 10, "the backend to see the request aborted")
    types = [t for t, _, _ in req.records]
    # §5.4: on a kept connection FCGI_ABORT_REQUEST; otherwise the connection is closed.
    assert (2 in types) == bool(keepalive)


def test_ten_mib_response_streamed_with_flat_memory(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    piece = bytes(range(256)) * 256

    def app(server: CaptureServer, req: Captured) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield b"Content-Type: application/octet-stream\r\n\r\n"
            for _ in range(160):
                yield piece

        return Answer(pieces=pieces())

    fcgi = backend(app)
    server = frontd(config(fcgi.address))
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 200  # warm up
    (worker,) = children(server.pid)
    _, peak_before = rss_kib(worker)
    digest = hashlib.sha256()
    size = 0
    with requests.get(server.url("/app/"), headers=HOST, timeout=10, stream=True) as response:
        for data in response.iter_content(65536):
            digest.update(data)
            size += len(data)
            time.sleep(0.0005)  # a slower reader than the backend: backpressure, not buffering
    assert size == 10 * 1024 * 1024
    assert digest.hexdigest() == hashlib.sha256(piece * 160).hexdigest()
    _, peak_after = rss_kib(worker)
    assert peak_after - peak_before < 6 * 1024, f"worker peak RSS grew {peak_after - peak_before} KiB"


def test_large_params_split_across_records(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    fcgi = backend()
    server = frontd(config(fcgi.address), top='[limits]\nmax_header_size = "256KiB"\n')
    headers = {**HOST, **{f"X-Big-{i}": "v" * 8000 for i in range(12)}}
    assert requests.get(server.url("/app/"), headers=headers, timeout=10).status_code == 200
    req = fcgi.requests[0]
    assert req.env["HTTP_X_BIG_11"] == "v" * 8000
    params = [length for t, _, length in req.records if t == 4]
    assert len(params) >= 3 and max(params) <= 65535 and params[-1] == 0


def test_local_redirect_served_internally(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    def app(server: CaptureServer, req: Captured) -> Answer:
        if req.env["PATH_INFO"] == "/go":
            return Answer(b"Location: /app/landed?x=1\r\n\r\n")
        return env_json(server, req)

    fcgi = backend(app)
    server = frontd(config(fcgi.address))
    response = requests.get(server.url("/app/go"), headers=HOST, timeout=10, allow_redirects=False)
    assert response.status_code == 200
    assert response.json()["env"]["PATH_INFO"] == "/landed"
    assert response.json()["env"]["QUERY_STRING"] == "x=1"


def test_graceful_stop_closes_pooled_connections_at_once(frontd: Start, backend: Callable[..., CaptureServer]) -> None:
    # An idle pooled connection holds a backend worker (php-fpm with FCGI_KEEP_CONN): a worker
    # that stops gracefully closes it at once, not when its last request ends.
    release = threading.Event()

    def app(server: CaptureServer, req: Captured) -> Answer:
        if req.env["SCRIPT_NAME"] == "/slow":
            release.wait(10)
        return env_json(server, req)

    fcgi = backend(app)
    # /slow/ has a pool of its own (none): its request cannot take the pooled connection.
    slow_route = f'[[vhost.route]]\n  prefix = "/slow/"\n  fastcgi = "{fcgi.address}"\n'
    server = frontd(config(fcgi.address, extra="keepalive = 2\n  " + slow_route),
                    top='shutdown_timeout = "20s"\n')
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 200
    assert fcgi.connections == 1 and not fcgi.closed_by_peer  # pooled, open
    statuses: list[int] = []
    slow = threading.Thread(target=lambda: statuses.append(
        requests.get(server.url("/slow/"), headers=HOST, timeout=20).status_code))
    slow.start()
    try:
        fcgi.wait_requests(2)  # the slow request holds a second connection, and the worker
        os.kill(server.pid, signal.SIGQUIT)
        server.wait_error_log("worker shutting down gracefully")
        wait_for(lambda: 1 in fcgi.closed_by_peer, 10, "the pooled connection to be closed")
        assert slow.is_alive() and not statuses  # while a request still runs
    finally:
        release.set()
        slow.join(20)
    assert statuses == [200]  # the request that ran through the stop is answered
    assert server.proc.wait(10) == 0


def _one_segment_backend(listener: socket.socket, output: bytes, served: list[int]) -> None:
    """Answers each request with FCGI_STDOUT, the empty FCGI_STDOUT and FCGI_END_REQUEST in one
    send, so that frontd reads the whole response at once; stops when `listener` is closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while True:  # records up to the empty FCGI_STDIN that ends the request
                while len(data) < 8:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if len(data) < 8:
                    break
                _, kind, rid, length, padding = struct.unpack(">BBHHBx", data[:8])
                while len(data) < 8 + length + padding:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                data = data[8 + length + padding:]
                if kind == 5 and length == 0:
                    def record(kind: int, body: bytes) -> bytes:
                        return struct.pack(">BBHHBx", 1, kind, rid, len(body), 0) + body

                    conn.sendall(record(6, output) + record(6, b"") + record(3, struct.pack(">IB3x", 0, 0)))
                    served.append(rid)
                    break


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_whole_response_read_with_the_head_gets_a_content_length(frontd: Start, version: str) -> None:
    """The response and its FCGI_END_REQUEST arrived with the head: the client gets the body with
    a Content-Length (one write) rather than chunked or close-delimited, and HTTP/1.0 keeps its
    connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    served: list[int] = []
    thread = threading.Thread(target=_one_segment_backend,
                              args=(listener, b"Content-Type: text/plain\r\nX-App: 1\r\n\r\nhello\n", served))
    thread.start()
    try:
        server = frontd(config("127.0.0.1:%d" % listener.getsockname()[1]))
        with server.connect() as sock:
            client = RawClient(sock)
            for _ in range(2):  # the same connection twice: kept alive for HTTP/1.0 too
                keep = "Connection: keep-alive\r\n" if version == "1.0" else ""
                client.send(f"GET /app/ HTTP/{version}\r\nHost: app.test\r\n{keep}\r\n".encode())
                answer = client.read()
                assert answer.status == 200 and answer.body == b"hello\n" and answer.headers["x-app"] == "1"
                assert answer.headers.get("content-length") == "6"
                assert "transfer-encoding" not in answer.headers
        assert len(served) == 2
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)
