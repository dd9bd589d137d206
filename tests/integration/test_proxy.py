"""Proxy routes against real HTTP backends (tests/integration/proxy_backend.py) on TCP and Unix sockets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.http_client import Answer, RawClient
from tests.integration.proxy_backend import Backend, Backends, Received, Reply, pattern

Start = Callable[..., Frontd]


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def route(proxy: str, prefix: str = "/", names: str = '"example.test"', extra: str = "") -> str:
    """A config with one vhost whose one route proxies `prefix` to `proxy` (a URL or a TOML array)."""
    value = proxy if proxy.startswith("[") else f'"{proxy}"'
    return (f"[[vhost]]\nnames = [{names}]\ndefault = true\n"
            f"  [[vhost.route]]\n  prefix = \"{prefix}\"\n  proxy = {value}\n{extra}\n")


def echo(response: requests.Response) -> dict[str, Any]:
    """The JSON of the default backend application: what it received."""
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def headers_of(data: dict[str, Any]) -> dict[str, str]:
    """The backend's received headers as a dict (repeated names joined as the backend saw them)."""
    out: dict[str, str] = {}
    for name, value in data["headers"]:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def raw_get(server: Frontd, target: str, host: str = "example.test") -> Answer:
    """GET `target` exactly as written (requests would re-encode it)."""
    with server.connect() as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return RawClient(sock).read()


def free_port() -> int:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- routing and paths ------------------------------------------------------------------------


def test_two_domains_to_two_unix_backends(frontd: Start, backends: Backends, tmp_path: Path) -> None:
    beijing = backends.start(unix_path=str(tmp_path / "beijing.sock"), name="beijing")
    shanghai = backends.start(unix_path=str(tmp_path / "shanghai.sock"), name="shanghai")
    server = frontd(
        f'[[vhost]]\nnames = ["beijing.test.com"]\n  [[vhost.route]]\n  prefix = "/"\n  proxy = "{beijing.url}"\n'
        f'[[vhost]]\nnames = ["shanghai.test.com"]\n  [[vhost.route]]\n  prefix = "/"\n  proxy = "{shanghai.url}"\n'
    )
    for host, name in (("beijing.test.com", "beijing"), ("shanghai.test.com", "shanghai"),
                       ("shanghai.test.com:8080", "shanghai")):
        data = echo(requests.get(server.url("/where?x=1"), headers={"Host": host}, timeout=10))
        assert data["backend"] == name
        assert data["target"] == "/where?x=1"
        assert headers_of(data)["host"] == host  # the client's Host goes to the backend
    assert len(beijing.received) == 1 and len(shanghai.received) == 2


def test_path_unchanged_without_path_in_url(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url, prefix="/app/"))
    # The client's own percent-encoding reaches the backend untouched.
    for path in ("/app/a%20b/c?x=1&y=%2F", "/app", "/app/%7Euser/", "/app/caf%C3%A9", "/app/x/../app/y"):
        answer = raw_get(server, path)
        assert answer.status == 200
        assert json.loads(answer.body)["target"] == path


def test_prefix_replaced_by_url_path(frontd: Start, backends: Backends, tmp_path: Path) -> None:
    tcp = backends.start(name="tcp")
    unix = backends.start(unix_path=str(tmp_path / "b.sock"), name="unix")
    server = frontd(
        '[[vhost]]\nnames = ["example.test"]\n'
        f'  [[vhost.route]]\n  prefix = "/app/"\n  proxy = "{tcp.url}/base/"\n'
        f'  [[vhost.route]]\n  prefix = "/u/"\n  proxy = "{unix.url}:/sock/base/"\n'
        f'  [[vhost.route]]\n  prefix = "/root/"\n  proxy = "{tcp.url}/"\n'
    )
    cases = {
        "/app/x/y?q=1": ("tcp", "/base/x/y?q=1"),
        "/app/": ("tcp", "/base/"),
        "/app": ("tcp", "/base"),
        "/app/a%20b": ("tcp", "/base/a%20b"),
        # Dot segments are resolved before routing; the rest is re-encoded from the clean path.
        "/app/x/../y": ("tcp", "/base/y"),
        "/u/deep/er?": ("unix", "/sock/base/deep/er"),
        "/root/r/s": ("tcp", "/r/s"),
    }
    for path, (name, target) in cases.items():
        answer = raw_get(server, path)
        assert answer.status == 200, (path, answer.body)
        data = json.loads(answer.body)
        assert (data["backend"], data["target"]) == (name, target), path


# -- headers ------------------------------------------------------------------------------------


def test_request_headers_added_and_removed(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url))
    request = (
        "GET /h HTTP/1.1\r\n"
        "Host: example.test:8080\r\n"
        "Connection: keep-alive, X-Hop\r\n"
        "X-Hop: named by Connection\r\n"
        "Keep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\n"
        "TE: trailers, deflate;q=0.5\r\n"
        "Upgrade: h2c\r\n"
        "Expect: 100-continue\r\n"
        "X-Forwarded-For: 203.0.113.9\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: evil.test\r\n"
        "Forwarded: for=198.51.100.7\r\n"
        "Via: 1.0 fred\r\n"
        "X-Kept: yes\r\n"
        "Authorization: Bearer t\r\n"
        "\r\n"
    )
    with server.connect() as sock:
        sock.sendall(request.encode())
        answer = RawClient(sock).read()
    assert answer.status == 200
    got = headers_of(json.loads(answer.body))
    for gone in ("x-hop", "keep-alive", "proxy-connection", "proxy-authorization", "upgrade", "expect",
                 "content-length", "transfer-encoding"):
        assert gone not in got, gone
    assert got["host"] == "example.test:8080"
    assert got["connection"] == "te"  # RFC 9110 §10.1.4: TE travels with its connection option
    assert got["te"] == "trailers"
    assert got["x-kept"] == "yes" and got["authorization"] == "Bearer t"
    assert got["via"] == "1.0 fred, 1.1 frontd"
    assert got["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == "example.test:8080"
    assert got["forwarded"] == 'for=198.51.100.7, for=127.0.0.1;proto=http;host="example.test:8080"'


def test_header_names_with_underscores_never_reach_the_backend(frontd: Start, backends: Backends) -> None:
    """Issue 13 §5: `X_Forwarded_For` must not pose as `X-Forwarded-For` at a backend that folds
    "_" and "-"; such fields are dropped, as CGI drops them."""
    backend = backends.start()
    server = frontd(route(backend.url))
    request = ("GET /u HTTP/1.1\r\nHost: example.test\r\nX_Forwarded_For: 203.0.113.66\r\n"
               "Client_IP: 203.0.113.66\r\nX-Kept-Dash: yes\r\nConnection: close\r\n\r\n")
    with server.connect() as sock:
        sock.sendall(request.encode())
        answer = RawClient(sock).read()
    assert answer.status == 200
    names = [name for name, _ in json.loads(answer.body)["headers"]]
    assert not [name for name in names if "_" in name], names
    got = headers_of(json.loads(answer.body))
    assert got["x-kept-dash"] == "yes"
    assert got["x-forwarded-for"] == "127.0.0.1"


def test_host_option_and_http10_client(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url, prefix="/set/", extra='  host = "internal.example"\n')
                    + f'  [[vhost.route]]\n  prefix = "/plain/"\n  proxy = "{backend.url}"\n')
    got = headers_of(echo(requests.get(server.url("/set/x"), headers={"Host": "example.test"}, timeout=10)))
    assert got["host"] == "internal.example"
    assert got["x-forwarded-host"] == "example.test"
    # HTTP/1.0 without Host: the backend (HTTP/1.1) still gets one; Via names the client's version.
    answer = server.raw(b"GET /plain/x HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    got = headers_of(json.loads(body))
    assert got["host"] == backend.address and got["via"] == "1.0 frontd"


def test_response_hop_by_hop_dropped(frontd: Start, backends: Backends) -> None:
    def app(backend: Backend, req: Received, reply: Reply) -> None:
        reply.send(201, b"made\n", [
            ("connection", "x-secret"), ("x-secret", "hop"), ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"), ("server", "backend/1.0"), ("x-app", "kept"),
            ("set-cookie", "a=1"), ("set-cookie", "b=2"),
        ])

    backend = backends.start(app)
    server = frontd(route(backend.url))
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        answer = RawClient(sock).read()
    assert answer.status == 201 and answer.body == b"made\n"
    names = [k for k, _ in answer.raw_headers]
    for gone in (b"x-secret", b"keep-alive", b"proxy-authenticate"):
        assert gone not in names
    assert answer.headers["server"].startswith("frontd/")
    assert answer.headers["x-app"] == "kept"
    assert [v for k, v in answer.raw_headers if k == b"set-cookie"] == [b"a=1", b"b=2"]


# -- bodies ---------------------------------------------------------------------------------------


def test_five_mib_upload_and_download(frontd: Start, backends: Backends, tmp_path: Path) -> None:
    backend = backends.start(unix_path=str(tmp_path / "big.sock"))
    server = frontd(route(backend.url))
    size = 5 * 1024 * 1024
    data = pattern(size)[::-1]
    got = echo(requests.post(server.url("/upload"), data=data, timeout=30))
    assert got["body_length"] == size and got["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert headers_of(got)["content-length"] == str(size) and not got["chunked"]
    for query in ("", "&chunked=1"):
        response = requests.get(server.url(f"/download?n={size}{query}"), timeout=30)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
        assert ("content-length" in response.headers) == (query == "")


def worker_peak_rss(server: Frontd) -> int:
    """The largest peak RSS (VmHWM, KiB) among the worker processes of `server` (Linux /proc)."""
    peaks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{server.pid}$", status, re.M):
            found = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.M)
            if found:
                peaks.append(int(found.group(1)))
    assert peaks, "no worker process found"
    return max(peaks)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_large_bodies_stream_in_flat_memory(frontd: Start, backends: Backends) -> None:
    """Neither body is ever held whole: 64 MiB each way leaves the worker's peak RSS nearly unmoved."""
    backend = backends.start()
    server = frontd(route(backend.url), top='[limits]\nmax_body_size = "1GiB"\n')
    echo(requests.get(server.url("/warm-up"), timeout=10))
    before = worker_peak_rss(server)
    size = 64 * 1024 * 1024
    with requests.get(server.url(f"/download?n={size}&chunked=1"), stream=True, timeout=60) as response:
        assert sum(len(chunk) for chunk in response.iter_content(65536)) == size
    block = pattern(65536)
    got = echo(requests.post(server.url("/up"), data=(block for _ in range(size // 65536)), timeout=60))
    assert got["body_length"] == size
    assert worker_peak_rss(server) - before < 16 * 1024  # KiB: a few buffers, not a body


def test_chunked_upload_reaches_the_backend_with_a_content_length(frontd: Start, backends: Backends) -> None:
    """Issue 13 §1: with request buffering (the default) the body is received whole, then sent
    with its length, so backends that cannot read chunked bodies (Python's http.server) get it."""
    backend = backends.start()
    server = frontd(route(backend.url))
    pieces = [b"x" * 1000, b"y" * 70000, b"z"]
    got = echo(requests.put(server.url("/up"), data=iter(pieces), timeout=10))
    assert got["chunked"] is False
    assert headers_of(got)["content-length"] == str(71001)
    assert got["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


@pytest.mark.parametrize("body, status", [
    (b"5\r\nabcde\r\nZZ\r\n", 400),  # a bad chunk size after a good chunk
    (b"7\r\nabcdefg\r\n0\r\n\r\n", 413),  # over max_body_size
])
def test_a_body_that_fails_never_reaches_the_backend(frontd: Start, backends: Backends, body: bytes,
                                                    status: int) -> None:
    """Issue 13 §5: with request buffering the head of a chunked request no longer reaches the
    backend before its body has been validated; the backend sees no connection at all."""
    backend = backends.start()
    server = frontd(route(backend.url), top="[limits]\nmax_body_size = 6\n")
    with server.connect() as sock:
        sock.sendall(b"POST /bad HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert RawClient(sock).read().status == status
    assert echo(requests.get(server.url("/after"), timeout=10))["target"] == "/after"
    assert backend.requests_to("/bad") == []
    assert backend.accepted == 1  # the request after it, alone


def test_chunked_upload_goes_out_chunked_without_buffering(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url, extra="  request_buffering = false"))
    pieces = [b"x" * 1000, b"y" * 70000, b"z"]
    got = echo(requests.put(server.url("/up"), data=iter(pieces), timeout=10))
    assert got["chunked"] is True
    assert "content-length" not in headers_of(got)
    assert got["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_first_chunk_streams_before_backend_finishes(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url))
    with server.connect() as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: example.test\r\n\r\n")
        received = b""
        while b"first chunk" not in received:
            data = sock.recv(65536)
            assert data, "connection closed before the first chunk"
            received += data
        assert not backend.release.is_set()  # the backend is still holding the rest back
        backend.release.set()
        while not received.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            assert data
            received += data
    assert b"second chunk" in received


def test_head_request(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url))
    response = requests.head(server.url("/download?n=1000"), timeout=10)
    assert response.status_code == 200 and response.content == b""
    assert backend.received[-1].method == "HEAD"


# -- failures ------------------------------------------------------------------------------------


def test_backend_down_is_502_quickly(frontd: Start, tmp_path: Path) -> None:
    server = frontd(route(f"http://127.0.0.1:{free_port()}", prefix="/tcp/")
                    + f'  [[vhost.route]]\n  prefix = "/unix/"\n  proxy = "http://unix:{tmp_path}/none.sock"\n')
    for path in ("/tcp/x", "/unix/x", "/tcp/y"):
        started = time.monotonic()
        response = requests.get(server.url(path), timeout=10)
        assert response.status_code == 502
        assert time.monotonic() - started < 2
    server.wait_error_log(r"proxy 127\.0\.0\.1:\d+: connect failed: Connection refused")
    server.wait_error_log(r"proxy unix:\S+none\.sock: connect failed")


def test_dead_backend_skipped_round_robin(frontd: Start, backends: Backends) -> None:
    one = backends.start(name="one")
    two = backends.start(name="two")
    dead = f"http://127.0.0.1:{free_port()}"
    server = frontd(route(f'["{one.url}", "{dead}", "{two.url}"]', extra="  keepalive = 0\n"))
    names = [echo(requests.get(server.url("/"), timeout=10))["backend"] for _ in range(8)]
    assert sorted(set(names)) == ["one", "two"]
    assert abs(names.count("one") - names.count("two")) <= 2
    # Passive health: the dead address was tried once, then skipped for a while.
    assert server.errors().count("connect failed") == 1


def test_slow_backend_is_504(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url, extra='  timeout = "1s"\n'))
    started = time.monotonic()
    response = requests.get(server.url("/slow"), timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert 0.9 < elapsed < 3
    server.wait_error_log(r"504: proxy 127\.0\.0\.1:\d+: no response for 1s")


def test_connect_timeout_is_503(frontd: Start) -> None:
    # A listener whose accept queue is full: further connects hang in SYN-sent until they time out.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # fill the backlog (its size is only a hint to the kernel)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            server = frontd(route(f"http://127.0.0.1:{port}", extra='  connect_timeout = "300ms"\n'))
            response = requests.get(server.url("/"), timeout=10)
        finally:
            for filler in fillers:
                filler.close()
    if response.status_code == 502:
        pytest.skip("the kernel answered the connect despite the full backlog")
    assert response.status_code == 503
    server.wait_error_log(r"no connection within connect_timeout \(0\.3s\)")


@pytest.mark.parametrize("raw, what", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "malformed response head"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     "both Content-Length and Transfer-Encoding"),
    (b"NOT HTTP AT ALL\r\n\r\n", "malformed response head"),
    (b"", "closed the connection without a response"),
])
def test_bad_responses_are_502(frontd: Start, backends: Backends, raw: bytes, what: str) -> None:
    def app(backend: Backend, req: Received, reply: Reply) -> None:
        reply.raw(raw)

    backend = backends.start(app)
    server = frontd(route(backend.url))
    response = requests.get(server.url("/"), timeout=10)
    assert response.status_code == 502
    server.wait_error_log(f"502: proxy 127.0.0.1:\\d+: .*{what}")
    assert "hello" not in response.text


def test_truncated_response_closes_client_connection(frontd: Start, backends: Backends) -> None:
    def app(backend: Backend, req: Received, reply: Reply) -> None:
        reply.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")

    backend = backends.start(app)
    server = frontd(route(backend.url))
    answer = server.raw(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 100" in head.lower()
    assert body == b"only ten b"  # then the connection closed: the client sees a short body
    server.wait_error_log(r"bad response body.*after the response started; closing")


def test_client_gone_closes_backend_connection(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url))
    with server.connect() as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: example.test\r\n\r\n")
        received = b""
        while b"first chunk" not in received:
            received += sock.recv(65536)
    # The client is gone in the middle of the response: once frontd notices (its writes fail), it
    # must drop the backend connection rather than wait for the rest or pool it.
    backend.release.set()
    wait_for(lambda: backend.closed == 1, 10, "the backend connection to close")
    assert backend.accepted == 1


# -- keep-alive --------------------------------------------------------------------------------


def test_keepalive_reuses_backend_connections(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url))
    session = requests.Session()
    for i in range(10):
        assert echo(session.get(server.url(f"/n{i}"), timeout=10))["connection"] == 1
    for i in range(5):  # a new client connection each time, still the pooled backend connection
        assert echo(requests.get(server.url(f"/m{i}"), timeout=10))["connection"] == 1
    assert backend.accepted == 1 and len(backend.received) == 15


def test_keepalive_zero_opens_one_connection_per_request(frontd: Start, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(route(backend.url, extra="  keepalive = 0\n"))
    for i in range(4):
        echo(requests.get(server.url(f"/n{i}"), timeout=10))
    assert backend.accepted == 4


def drop_second_request(backend: Backend, req: Received, reply: Reply) -> None:
    """A backend that closes a kept-alive connection just as its second request arrives."""
    if req.number == 2:
        reply.close_now = True
        return
    reply.send(200, req.as_json(backend.name), [("content-type", "application/json")])


def test_stale_pooled_connection_retried_for_get(frontd: Start, backends: Backends) -> None:
    backend = backends.start(drop_second_request)
    server = frontd(route(backend.url))
    assert echo(requests.get(server.url("/one"), timeout=10))["connection"] == 1
    assert echo(requests.get(server.url("/two"), timeout=10))["connection"] == 2
    assert [r.target for r in backend.received] == ["/one", "/two", "/two"]
    server.wait_error_log(r"closed the connection without a response \(a kept-alive connection\); "
                          r"retrying on a new connection")


def test_stale_pooled_connection_not_retried_for_post(frontd: Start, backends: Backends) -> None:
    backend = backends.start(drop_second_request)
    server = frontd(route(backend.url))
    assert echo(requests.post(server.url("/one"), data=b"a", timeout=10))["connection"] == 1
    # The backend may have acted on the POST before closing: never sent twice.
    assert requests.post(server.url("/two"), data=b"b", timeout=10).status_code == 502
    assert [r.target for r in backend.received] == ["/one", "/two"]


def test_small_put_body_replayed_on_stale_connection(frontd: Start, backends: Backends) -> None:
    backend = backends.start(drop_second_request)
    server = frontd(route(backend.url))
    echo(requests.get(server.url("/one"), timeout=10))
    got = echo(requests.put(server.url("/two"), data=b"idempotent body", timeout=10))
    assert got["body_sha256"] == hashlib.sha256(b"idempotent body").hexdigest()
    assert got["connection"] == 2


def test_backend_answering_before_reading_the_body(frontd: Start, backends: Backends) -> None:
    """A backend may refuse an upload early (413) without reading it; the answer still arrives."""

    def refuse(sock: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Request):
                break
        sock.sendall(h.send(h11.Response(status_code=413, headers=[("content-length", "3"),
                                                                    ("connection", "close")])) or b"")
        sock.sendall(b"no\n")
        sock.shutdown(socket.SHUT_WR)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        server = frontd(route(f"http://127.0.0.1:{listener.getsockname()[1]}"))
        result: list[requests.Response] = []
        client = threading.Thread(target=lambda: result.append(
            requests.post(server.url("/big"), data=b"u" * (8 * 1024 * 1024), timeout=20)))
        client.start()
        conn, _ = listener.accept()
        with conn:
            refuse(conn)
            client.join(20)
    assert result, "no answer"
    assert result[0].status_code == 413 and result[0].content == b"no\n"
