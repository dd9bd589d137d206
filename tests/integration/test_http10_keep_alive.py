"""HTTP/1.0 keep-alive at the socket: announced only when kept, and kept when announced.

Regression for frontd issue 12, item 1: a response to `Connection: keep-alive` from an HTTP/1.0
client said `connection: keep-alive`, then the connection was closed (h11 leaves an HTTP/1.0
client in MUST_CLOSE after every request, and the connection loop asked h11 whether to go on).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Frontd, recv_all, wait_for
from tests.http_client import Answer, RawClient

# Echoes its body with a Content-Length, so that the response can be kept alive.
ECHO_SH = """#!/bin/sh
body=$(head -c "${CONTENT_LENGTH:-0}")
printf 'Content-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n%s' "${#body}" "$body"
"""
# No Content-Length: an HTTP/1.0 client can only find the end of this body by the close. The
# script is still running when its head is relayed (it waits for the test's go file, at most
# 10 s), so frontd cannot count the body and give it a length.
STREAM_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\nno '
n=0
while [ ! -e "{go}" ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done
printf 'length\\n'
"""

CONFIG = """
[[vhost]]
names = ["site.test"]
default = true
root = "{root}"

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{cgi}"
"""

KEEP = b"Connection: keep-alive\r\n"


@pytest.fixture
def server(frontd, site: Path, tmp_path: Path) -> Frontd:
    cgi = tmp_path / "cgi-bin"
    cgi.mkdir()
    for name, text in (("echo.sh", ECHO_SH), ("stream.sh", STREAM_SH.format(go=tmp_path / "go"))):
        (cgi / name).write_text(text)
        (cgi / name).chmod(0o755)
    return frontd(CONFIG.format(root=site, cgi=cgi))


def get10(path: bytes, extra: bytes = KEEP) -> bytes:
    return b"GET %s HTTP/1.0\r\nHost: site.test\r\n%s\r\n" % (path, extra)


def post10(path: bytes, body: bytes) -> bytes:
    return b"POST %s HTTP/1.0\r\nHost: site.test\r\n%sContent-Length: %d\r\n\r\n%s" % (path, KEEP, len(body), body)


def kept(answer: Answer) -> bool:
    return answer.headers.get("connection", "").lower() == "keep-alive"


def test_two_requests_on_one_connection(server: Frontd) -> None:
    with server.connect() as sock:
        client = RawClient(sock)
        for i in range(3):
            client.send(get10(b"/hello.txt?i=%d" % i))
            answer = client.read()
            assert answer.status == 200 and answer.body == b"hello\n", i
            assert kept(answer) and answer.headers["content-length"] == "6", answer.headers


def test_request_with_body_then_another(server: Frontd) -> None:
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(post10(b"/cgi-bin/echo.sh", b"a=1&b=2"))
        answer = client.read()
        assert answer.status == 200 and answer.body == b"a=1&b=2" and kept(answer)
        client.send(get10(b"/hello.txt"))
        answer = client.read()
        assert answer.status == 200 and answer.body == b"hello\n" and kept(answer)


def test_error_response_keeps_the_connection(server: Frontd) -> None:
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(get10(b"/missing"))
        answer = client.read()
        assert answer.status == 404 and kept(answer)
        client.send(get10(b"/hello.txt"))
        assert client.read().body == b"hello\n"


def test_pipelined_requests(server: Frontd) -> None:
    batch = (get10(b"/hello.txt?i=1") + post10(b"/cgi-bin/echo.sh", b"payload") + get10(b"/sub/")
             + get10(b"/hello.txt?i=2"))
    with server.connect() as sock:
        sock.sendall(batch)
        client = RawClient(sock)
        bodies = [client.read().body for _ in range(4)]
        assert bodies == [b"hello\n", b"payload", b"<h1>sub</h1>\n", b"hello\n"]
        client.send(get10(b"/hello.txt?i=3"))
        assert client.read().body == b"hello\n"


def test_response_without_length_closes_and_says_so(server: Frontd, tmp_path: Path) -> None:
    with server.connect() as sock:
        sock.sendall(get10(b"/cgi-bin/stream.sh") + get10(b"/hello.txt"))
        data = b""

        def head_relayed() -> bool:
            nonlocal data
            data += sock.recv(65536)
            return b"\r\n\r\nno " in data

        wait_for(head_relayed, what="the script's head and first bytes")
        (tmp_path / "go").touch()
        data += recv_all(sock)  # returns only because the server closes
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nconnection: close" in head.lower() and b"keep-alive" not in head.lower()
    assert body == b"no length\n"  # the pipelined request after it was not answered


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive, close\r\n"])
def test_without_keep_alive_closes(server: Frontd, connection: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(get10(b"/hello.txt", extra=connection))
        data = recv_all(sock)
    assert b"keep-alive" not in data.lower() and data.endswith(b"\r\n\r\nhello\n")


def test_transfer_encoding_closes(server: Frontd) -> None:
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; close after it.
    request = (b"POST /cgi-bin/echo.sh HTTP/1.0\r\nHost: site.test\r\n" + KEEP
               + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get10(b"/hello.txt"))
    with server.connect() as sock:
        sock.sendall(request)
        data = recv_all(sock)
    assert data.count(b"HTTP/1.1 ") == 1 and b"keep-alive" not in data.lower()



def test_keepalive_timeout_zero_says_close(frontd, site: Path) -> None:
    server = frontd(CONFIG.format(root=site, cgi=site) + '\n[limits]\nkeepalive_timeout = 0\n')
    for request in (get10(b"/hello.txt"), b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n"):
        with server.connect() as sock:
            sock.sendall(request)
            data = recv_all(sock)
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nconnection: close" in head and b"keep-alive" not in head, request
