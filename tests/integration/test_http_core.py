"""HTTP/1.1 at the socket: keep-alive, pipelining, HTTP/1.0, HEAD, Expect, and every kind of bad input.

Each bad input is checked for its status line, `Connection: close`, one error-log line, and a
fresh request still being served by the same worker.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, recv_all, wait_for
from tests.http_client import RawClient, parse_one

CONFIG = """
[limits]
max_header_size = "4KiB"
max_target_size = "1KiB"
max_body_size = "64KiB"

[[vhost]]
names = ["site.test"]
default = true
root = "{root}"
"""


@pytest.fixture
def server(frontd, site: Path) -> Frontd:
    return frontd(CONFIG.format(root=site))


def still_serving(server: Frontd) -> None:
    response = requests.get(server.url("/hello.txt"), timeout=5)
    assert response.status_code == 200 and response.text == "hello\n"


def test_get_and_headers(server: Frontd) -> None:
    response = requests.get(server.url("/"), timeout=5)
    assert response.status_code == 200
    assert response.text == "<h1>home</h1>\n"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Server"].startswith("frontd/")
    assert "Date" in response.headers
    server.wait_access_log(r'"GET / HTTP/1.1" 200 14 "-" "python-requests')


def test_keep_alive_carries_a_thousand_requests(server: Frontd) -> None:
    with server.connect() as sock:
        client = RawClient(sock)
        for i in range(1000):
            client.send(b"GET /hello.txt?i=%d HTTP/1.1\r\nHost: site.test\r\n\r\n" % i)
            answer = client.read()
            assert answer.status == 200 and answer.body == b"hello\n", i


def test_pipelined_requests_answered_in_order(server: Frontd) -> None:
    paths = [b"/hello.txt", b"/", b"/sub/", b"/missing"] * 25
    batch = b"".join(b"GET %s HTTP/1.1\r\nHost: site.test\r\n\r\n" % p for p in paths)
    with server.connect() as sock:
        sock.sendall(batch)
        client = RawClient(sock)
        for path in paths:
            answer = client.read()
            expected = {b"/hello.txt": b"hello\n", b"/": b"<h1>home</h1>\n", b"/sub/": b"<h1>sub</h1>\n"}
            if path == b"/missing":
                assert answer.status == 404
            else:
                assert answer.status == 200 and answer.body == expected[path]


def test_http10_without_host_closes(server: Frontd) -> None:
    data = server.raw(b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"\r\n\r\nhello\n")


def test_http10_keep_alive_not_assumed(server: Frontd) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        data = recv_all(sock)  # returns only because the server closes
    assert parse_one(data).body == b"hello\n"


def test_head_has_get_headers_and_no_body(server: Frontd) -> None:
    get = requests.get(server.url("/hello.txt"), timeout=5)
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"HEAD /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        head = client.read("HEAD")
        assert head.status == 200 and head.body == b""
        assert head.headers["content-length"] == get.headers["Content-Length"] == "6"
        assert head.headers["etag"] == get.headers["ETag"]
        # The connection is still in sync: the next answer is the next request's.
        client.send(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert client.read().body == b"hello\n"


def test_leading_empty_lines_ignored(server: Frontd) -> None:
    data = server.raw(b"\r\n\r\n\nGET /hello.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert parse_one(data).status == 200


def test_absolute_form_routed_by_target_host(frontd, site: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "hello.txt").write_text("other\n")
    server = frontd(CONFIG.format(root=site) + f'\n[[vhost]]\nnames = ["other.test"]\nroot = "{other}"\n')
    data = server.raw(b"GET http://Other.Test:8080/hello.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert parse_one(data).body == b"other\n"


def test_half_close_still_answered(server: Frontd) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = recv_all(sock)
    assert parse_one(data).body == b"hello\n"


def test_client_reset_mid_response_costs_nothing(server: Frontd, site: Path) -> None:
    (site / "big.bin").write_bytes(b"x" * (8 << 20))
    for _ in range(5):
        sock = server.connect()
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: site.test\r\n\r\n")
        sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
    still_serving(server)
    assert "Traceback" not in server.errors()


def test_no_descriptor_leak(server: Frontd) -> None:
    def open_fds() -> int:
        return len(list(Path(f"/proc/{server.pid}/fd").iterdir()))

    still_serving(server)
    before = open_fds()
    for _ in range(300):
        with server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
            recv_all(sock)
        requests.get(server.url("/missing"), timeout=5)
    wait_for(lambda: open_fds() <= before + 2, 5, "descriptors to be released")


def test_many_idle_connections_do_not_slow_others(server: Frontd) -> None:
    idle = [server.connect() for _ in range(300)]
    try:
        for sock in idle[:50]:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        for sock in idle[:50]:
            assert RawClient(sock).read().status == 200
        response = requests.get(server.url("/hello.txt"), timeout=2)
        assert response.status_code == 200
    finally:
        for sock in idle:
            sock.close()


BAD_INPUTS = [
    ("missing host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("duplicate host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("malformed host", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    ("host with userinfo", b"GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n", 400),
    ("malformed request line", b"GET /\r\nHost: a\r\n\r\n", 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("unsupported version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("transfer-encoding gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("chunked, identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501),
    ("content-length and transfer-encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("invalid content-length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("conflicting content-length",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("NUL in header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bare CR in header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", 400),
    ("NUL in target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("unknown method", b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("TRACE", b"TRACE / HTTP/1.1\r\nHost: a\r\nCookie: secret\r\n\r\n", 405),
    ("header block too large", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n", 431),
    ("many headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: aaaaaaaa\r\n" * 400 + b"\r\n", 431),
    ("target too long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("declared body too large", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n", 413),
]


@pytest.mark.parametrize("name,data,status", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(server: Frontd, name: str, data: bytes, status: int) -> None:
    raw = server.raw(data)
    answer = parse_one(raw)
    assert answer.status == status, raw[:200]
    assert answer.headers.get("connection") == "close"
    assert b"Traceback" not in raw and str(server.conf.parent).encode() not in raw
    if status == 405:
        assert b"secret" not in raw  # TRACE is never echoed
    server.wait_error_log(rf"\[(info|warning|error)\] \d+: {status}: ")
    still_serving(server)


def test_error_log_has_one_line_per_bad_request(server: Frontd) -> None:
    server.raw(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n")
    server.wait_error_log(r": 400: ")
    still_serving(server)
    assert server.errors().count(": 400: ") == 1


def test_header_just_under_limit_is_served(server: Frontd) -> None:
    head = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-A: "
    pad = 4096 - len(head) - 4
    answer = parse_one(server.raw(head + b"a" * pad + b"\r\n\r\n"))
    assert answer.status == 200


def test_target_just_under_limit_is_not_414(server: Frontd) -> None:
    answer = parse_one(server.raw(b"GET /" + b"a/" * 500 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert answer.status == 404


def test_body_at_limit_then_over_limit_chunked(server: Frontd) -> None:
    # A static resource reads and discards what it is sent, up to max_body_size.
    ok = b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n" + b"a" * 65536
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(ok)
        assert client.read().status == 405
        client.send(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.read().body == b"hello\n"
    chunk = b"%x\r\n%s\r\n" % (70000, b"a" * 70000)
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n")
        assert client.read().status == 405
        assert client.closed_by_peer()  # the over-limit body is not drained
    still_serving(server)


def test_smuggled_chunk_terminator_rejected(server: Frontd) -> None:
    # CVE-2025-43859: "5\r\nhelloXX0\r\n\r\n" must not frame as a body followed by a request.
    smuggled = (b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhelloXX0\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n")
    raw = server.raw(smuggled)
    assert b"<h1>sub</h1>" not in raw
    assert raw.count(b"HTTP/1.1 ") == 1
    still_serving(server)


def test_bare_lf_in_chunk_size_rejected(server: Frontd) -> None:
    raw = server.raw(b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5;ext\nhello\r\n0\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"<h1>sub</h1>" not in raw
    still_serving(server)


def test_body_never_taken_for_next_request(server: Frontd) -> None:
    inner = b"GET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = server.raw(b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner)
    assert raw.count(b"HTTP/1.1 ") == 1
    assert b"<h1>sub</h1>" not in raw
