"""Static files at the socket: types, validators, conditionals, ranges, directories, big files, bodies.

One frontd serves the whole module (a vhost root, a `static` alias and an autoindex alias); tests
that need their own process (memory) start one. Responses are read with raw sockets
(tests/http_client.py) so that status lines, headers and body bytes are checked exactly.
"""

from __future__ import annotations

import email.utils
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, start_frontd, wait_for
from tests.http_client import Answer, RawClient, count_responses, parse_one
from tests.integration.processes import bytes_by_call, syscalls

CONFIG = """
[[vhost]]
names = ["site.test"]
root = "{root}"

  [[vhost.route]]
  prefix = "/files/"
  static = "{alias}"

  [[vhost.route]]
  prefix = "/listing/"
  static = "{listing}"
  autoindex = true
"""

# A fixed modification time well in the past, so HTTP-date validators are strong (RFC 9110 §8.8.2.2).
MTIME = 1_600_000_000
DATA = bytes((i * 7 + i // 251) % 256 for i in range(1000))
SECRET = b"SECRET-BODY-THAT-MUST-NOT-LEAK\n"

TYPES = {
    "a.css": "text/css; charset=utf-8",
    "a.js": "text/javascript; charset=utf-8",
    "a.mjs": "text/javascript; charset=utf-8",
    "a.json": "application/json; charset=utf-8",
    "a.svg": "image/svg+xml; charset=utf-8",
    "a.wasm": "application/wasm",
    "a.woff2": "font/woff2",
    "a.woff": "font/woff",
    "a.webp": "image/webp",
    "a.avif": "image/avif",
    "a.png": "image/png",
    "a.jpg": "image/jpeg",
    "a.gif": "image/gif",
    "a.ico": "image/vnd.microsoft.icon",
    "a.html": "text/html; charset=utf-8",
    "a.txt": "text/plain; charset=utf-8",
    "a.xml": "application/xml; charset=utf-8",
    "a.pdf": "application/pdf",
    "a.mp4": "video/mp4",
    "a.webmanifest": "application/manifest+json; charset=utf-8",
    "UPPER.CSS": "text/css; charset=utf-8",
    "a.unknownext": "application/octet-stream",
    "README": "application/octet-stream",
    "archive.tar.gz": "application/gzip",
}


def build_tree(top: Path) -> dict[str, Path]:
    root = top / "www"
    alias = top / "alias"
    listing = top / "listing"
    for d in (root, alias, listing):
        d.mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "hello.txt").write_text("hello\n")
    (root / "data.bin").write_bytes(DATA)
    (root / "tiny.txt").write_bytes(b"x" * 96)
    (root / "empty.txt").write_bytes(b"")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (root / "noindex").mkdir()
    (root / "noindex" / "inner-name.txt").write_text("inner\n")
    (root / "evil.test").mkdir()
    (root / "evil.test" / "index.html").write_text("evil dir\n")
    (root / "a b.txt").write_text("space\n")
    (root / "caf\u00e9.txt").write_text("caf\u00e9\n")
    (root / "\u65e5\u672c").mkdir()
    (root / "\u65e5\u672c" / "index.html").write_text("nihon\n")
    (root / "secret.txt").write_bytes(SECRET)
    for name in TYPES:
        (root / name).write_text("x\n")
    for path in root.rglob("*"):
        os.utime(path, (MTIME, MTIME))
    (alias / "index.html").write_text("<h1>alias</h1>\n")
    (alias / "inside.txt").write_text("alias file\n")
    (alias / "d").mkdir()
    (alias / "d" / "index.html").write_text("alias d\n")
    (listing / "<script>.txt").write_text("x\n")
    (listing / "a&b \"q\".txt").write_text("x\n")
    (listing / "visible.txt").write_text("x\n")
    (listing / "caf\u00e9.txt").write_text("x\n")
    (listing / "child").mkdir()
    (listing / ".hidden-file").write_text("x\n")
    (listing / ".hidden-dir").mkdir()
    (listing / "withindex").mkdir()
    (listing / "withindex" / "index.html").write_text("listing index\n")
    return {"root": root, "alias": alias, "listing": listing, "top": top}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tree(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module")
def server(tree: dict[str, Path]) -> Iterator[Frontd]:
    server = start_frontd(tree["top"], CONFIG.format(root=tree["root"], alias=tree["alias"],
                                                     listing=tree["listing"]))
    yield server
    server.stop()


def request(server: Frontd, target: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            host: str = "site.test") -> Answer:
    """One request on a fresh connection, read with h11's client side."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with server.connect() as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = RawClient(sock).read(method)
    # No error body may show where the files live.
    assert str(server.conf.parent).encode() not in answer.body
    return answer


# -- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ctype"), sorted(TYPES.items()))
def test_content_type(server: Frontd, name: str, ctype: str) -> None:
    answer = request(server, "/" + name)
    assert answer.status == 200
    assert answer.headers["content-type"] == ctype


def test_get_headers_and_body(server: Frontd, tree: dict[str, Path]) -> None:
    answer = request(server, "/hello.txt")
    assert answer.status == 200
    assert answer.body == b"hello\n"
    assert answer.headers["content-length"] == "6"
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["last-modified"] == email.utils.formatdate(MTIME, usegmt=True)
    assert re.fullmatch(r'"[!#-~]+"', answer.headers["etag"])  # strong, quoted (RFC 9110 §8.8.3)
    assert "transfer-encoding" not in answer.headers


def test_empty_file(server: Frontd) -> None:
    answer = request(server, "/empty.txt")
    assert answer.status == 200 and answer.body == b"" and answer.headers["content-length"] == "0"


def test_etag_changes_with_the_file(server: Frontd, tree: dict[str, Path]) -> None:
    path = tree["root"] / "changing.txt"
    path.write_text("one\n")
    os.utime(path, (MTIME, MTIME))
    first = request(server, "/changing.txt").headers["etag"]
    path.write_text("two!\n")
    os.utime(path, (MTIME + 5, MTIME + 5))
    second = request(server, "/changing.txt")
    assert second.body == b"two!\n"
    assert second.headers["etag"] != first


# -- conditional requests (RFC 9110 §13) -----------------------------------------------------


@pytest.fixture(scope="module")
def etag(server: Frontd) -> str:
    return request(server, "/hello.txt").headers["etag"]


def date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@pytest.mark.parametrize(("headers", "status"), [
    ({"If-None-Match": "{etag}"}, 304),
    ({"If-None-Match": '"nope", {etag}'}, 304),
    ({"If-None-Match": '"nope",{etag} , "other"'}, 304),
    ({"If-None-Match": "W/{etag}"}, 304),  # weak comparison (RFC 9110 §13.1.2)
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"nope"'}, 200),
    ({"If-None-Match": '"nope", W/"other"'}, 200),
    ({"If-Modified-Since": date(MTIME)}, 304),
    ({"If-Modified-Since": date(MTIME + 3600)}, 304),
    ({"If-Modified-Since": date(MTIME - 1)}, 200),
    ({"If-Modified-Since": "not a date"}, 200),
    # RFC 9110 §13.2.2: If-None-Match is evaluated and If-Modified-Since then ignored.
    ({"If-None-Match": '"nope"', "If-Modified-Since": date(MTIME + 3600)}, 200),
    ({"If-None-Match": "{etag}", "If-Modified-Since": date(MTIME - 3600)}, 304),
    ({"If-Match": "{etag}"}, 200),
    ({"If-Match": '"nope", {etag}'}, 200),
    ({"If-Match": "*"}, 200),
    ({"If-Match": '"nope"'}, 412),
    ({"If-Match": "W/{etag}"}, 412),  # If-Match uses strong comparison (RFC 9110 §13.1.1)
    ({"If-Unmodified-Since": date(MTIME)}, 200),
    ({"If-Unmodified-Since": date(MTIME + 3600)}, 200),
    ({"If-Unmodified-Since": date(MTIME - 1)}, 412),
    ({"If-Match": "{etag}", "If-Unmodified-Since": date(MTIME - 1)}, 200),  # §13.2.2 step 2
    ({"If-Match": '"nope"', "If-None-Match": "{etag}"}, 412),  # step 1 before step 3
])
def test_conditionals(server: Frontd, etag: str, headers: dict[str, str], status: int) -> None:
    sent = {k: v.replace("{etag}", etag) for k, v in headers.items()}
    answer = request(server, "/hello.txt", headers=sent)
    assert answer.status == status
    if status == 304:
        assert answer.body == b""
        assert answer.headers["etag"] == etag
        assert answer.headers["last-modified"] == date(MTIME)
    elif status == 200:
        assert answer.body == b"hello\n"
    head = request(server, "/hello.txt", method="HEAD", headers=sent)
    assert head.status == status and head.body == b""


def test_if_none_match_list_in_two_field_lines(server: Frontd, etag: str) -> None:
    # RFC 9110 §5.3: several field lines of a list-based field are one list.
    with server.connect() as sock:
        sock.sendall(f'GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nIf-None-Match: "nope"\r\n'
                     f"If-None-Match: {etag}\r\n\r\n".encode())
        assert RawClient(sock).read().status == 304


# -- ranges (RFC 9110 §14) ------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "first", "last"), [
    ("bytes=0-99", 0, 99),
    ("bytes=0-0", 0, 0),
    ("bytes=500-", 500, 999),
    ("bytes=990-2000", 990, 999),
    ("bytes=-100", 900, 999),
    ("bytes=-5000", 0, 999),
    ("bytes=999-999", 999, 999),
    ("BYTES=10-19", 10, 19),
    ("bytes= 10-19 ", 10, 19),
    ("bytes=0-499,500-999", 0, 999),  # adjacent ranges are coalesced into one part
    ("bytes=0-100,50-200", 0, 200),  # overlapping too
])
def test_single_range(server: Frontd, spec: str, first: int, last: int) -> None:
    answer = request(server, "/data.bin", headers={"Range": spec})
    assert answer.status == 206
    assert answer.headers["content-range"] == f"bytes {first}-{last}/1000"
    assert answer.headers["content-length"] == str(last - first + 1)
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.body == DATA[first:last + 1]


def parse_multipart(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Parse multipart/byteranges strictly (RFC 2046 §5.1.1), taking each part's length from its
    Content-Range so that data bytes are never mistaken for a delimiter."""
    parts = []
    pos = 0
    delimiter = b"--" + boundary
    if body.startswith(b"\r\n"):
        pos = 2
    while True:
        assert body[pos:pos + len(delimiter)] == delimiter, body[pos:pos + 80]
        pos += len(delimiter)
        if body[pos:pos + 2] == b"--":
            assert body[pos + 2:] in (b"", b"\r\n")
            return parts
        assert body[pos:pos + 2] == b"\r\n"
        end = body.index(b"\r\n\r\n", pos)
        headers = {}
        for line in body[pos + 2:end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.decode().strip()
        pos = end + 4
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
        assert m is not None
        length = int(m.group(2)) - int(m.group(1)) + 1
        parts.append((headers, body[pos:pos + length]))
        pos += length
        assert body[pos:pos + 2] == b"\r\n"
        pos += 2


@pytest.mark.parametrize(("spec", "spans"), [
    ("bytes=0-9,500-519", [(0, 9), (500, 519)]),
    ("bytes=-10,0-4", [(990, 999), (0, 4)]),  # the order asked for (RFC 9110 §14.6)
    ("bytes=100-109, 300-309 ,900-", [(100, 109), (300, 309), (900, 999)]),
    ("bytes=0-9,5-14,600-609", [(0, 14), (600, 609)]),
])
def test_multipart_byteranges(server: Frontd, spec: str, spans: list[tuple[int, int]]) -> None:
    answer = request(server, "/data.bin", headers={"Range": spec})
    assert answer.status == 206
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["content-type"])
    assert m is not None
    assert "content-range" not in answer.headers
    assert answer.headers["content-length"] == str(len(answer.body))
    parts = parse_multipart(answer.body, m.group(1).encode())
    assert [(h["content-range"], data) for h, data in parts] == [
        (f"bytes {a}-{b}/1000", DATA[a:b + 1]) for a, b in spans]
    assert all(h["content-type"] == "application/octet-stream" for h, _ in parts)


@pytest.mark.parametrize("spec", [
    "bytes=1000-", "bytes=1000-1001", "bytes=5000-6000", "bytes=-0", "bytes=1000-,2000-",
])
def test_unsatisfiable_range(server: Frontd, spec: str) -> None:
    answer = request(server, "/data.bin", headers={"Range": spec})
    assert answer.status == 416
    assert answer.headers["content-range"] == "bytes */1000"
    assert DATA[:20] not in answer.body


@pytest.mark.parametrize("spec", ["bytes=abc", "bytes=5-1", "items=0-1", "bytes", "bytes=0-1;x", "bytes=--1"])
def test_invalid_range_is_ignored(server: Frontd, spec: str) -> None:
    answer = request(server, "/data.bin", headers={"Range": spec})
    assert answer.status == 200 and answer.body == DATA


def test_range_on_empty_file_is_ignored_or_416(server: Frontd) -> None:
    answer = request(server, "/empty.txt", headers={"Range": "bytes=0-"})
    assert answer.status == 416 and answer.headers["content-range"] == "bytes */0"
    assert request(server, "/empty.txt", headers={"Range": "bytes=-5"}).status == 200


@pytest.mark.parametrize("spec", [
    "bytes=" + ",".join(["0-"] * 500),  # the whole file, again and again
    "bytes=" + ",".join(["0-999"] * 500),
    "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 1000, 2)),  # 500 one-byte ranges
    "bytes=" + ",".join(f"-{n}" for n in range(1, 400)),  # suffixes that all overlap
    "bytes=" + ",".join(f"{i}-{i + 1}" for i in range(0, 1000, 7)),
    "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14",  # few, but each part costs more than its byte
    "bytes=0-0,999-999",
])
def test_many_ranges_never_amplify(server: Frontd, spec: str) -> None:
    answer = request(server, "/data.bin", headers={"Range": spec})
    assert answer.status in (200, 206)
    assert len(answer.body) <= len(DATA)
    if answer.status == 200:
        assert answer.body == DATA


def test_tiny_file_ranges_never_amplify(server: Frontd) -> None:
    answer = request(server, "/tiny.txt", headers={"Range": "bytes=0-0,10-10,20-20"})
    assert answer.status in (200, 206) and len(answer.body) <= 96


def test_if_range(server: Frontd) -> None:
    etag = request(server, "/data.bin").headers["etag"]
    cases = [
        (etag, 206),
        ('"stale"', 200),
        ("W/" + etag, 200),  # If-Range needs a strong match (RFC 9110 §13.1.5)
        (date(MTIME), 206),
        (date(MTIME - 1), 200),
        (date(MTIME + 1), 200),
        ("garbage", 200),
    ]
    for value, status in cases:
        answer = request(server, "/data.bin", headers={"Range": "bytes=0-9", "If-Range": value})
        assert answer.status == status, value
        assert answer.body == (DATA[:10] if status == 206 else DATA)


def test_head_with_range_sends_no_body(server: Frontd) -> None:
    answer = request(server, "/data.bin", method="HEAD", headers={"Range": "bytes=0-9"})
    assert answer.status in (200, 206) and answer.body == b""


# -- directories --------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "body"), [
    ("/", b"<h1>home</h1>\n"),
    ("/sub/", b"<h1>sub</h1>\n"),
    ("/files/", b"<h1>alias</h1>\n"),
    ("/files/d/", b"alias d\n"),
    ("/files/inside.txt", b"alias file\n"),
    ("/%E6%97%A5%E6%9C%AC/", b"nihon\n"),
    ("/listing/withindex/", b"listing index\n"),
])
def test_index_files(server: Frontd, target: str, body: bytes) -> None:
    answer = request(server, target)
    assert answer.status == 200 and answer.body == body
    assert answer.headers["content-type"] == ("text/plain; charset=utf-8" if target.endswith(".txt")
                                             else "text/html; charset=utf-8")


@pytest.mark.parametrize(("target", "location"), [
    ("/sub", "/sub/"),
    ("/sub?a=1&b=%20", "/sub/?a=1&b=%20"),
    ("/files", "/files/"),
    ("/files?x", "/files/?x"),
    ("/files/d", "/files/d/"),
    ("/%E6%97%A5%E6%9C%AC", "/%E6%97%A5%E6%9C%AC/"),
    ("/sub/../sub", "/sub/"),
    # Never a scheme-relative "//evil.test/": that would redirect the browser to another host.
    ("//evil.test", "/evil.test/"),
    ("///evil.test?q", "/evil.test/?q"),
    ("/%2Fevil.test", None),
])
def test_directory_without_slash_redirects(server: Frontd, target: str, location: str | None) -> None:
    answer = request(server, target)
    if location is None:
        assert answer.status in (400, 404)
        return
    assert answer.status == 301
    assert answer.headers["location"] == location
    followed = requests.get(server.url(target), headers={"Host": "site.test"}, timeout=5)
    assert followed.status_code == 200 and followed.history[0].status_code == 301


def test_file_with_trailing_slash_is_not_found(server: Frontd) -> None:
    assert request(server, "/hello.txt/").status == 404
    assert request(server, "/files/inside.txt/").status == 404


def test_no_listing_without_autoindex(server: Frontd) -> None:
    answer = request(server, "/noindex/")
    assert answer.status in (403, 404)
    assert b"inner-name" not in answer.body


def test_autoindex_listing(server: Frontd) -> None:
    answer = request(server, "/listing/")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    body = answer.body.decode()
    # Names are escaped as HTML text and percent-encoded as links.
    assert "<script>" not in body
    assert "&lt;script&gt;.txt" in body
    assert 'href="%3Cscript%3E.txt"' in body
    assert ">a&amp;b &quot;q&quot;.txt<" in body and 'href="a%26b%20%22q%22.txt"' in body
    assert "a&b" not in body
    assert 'href="caf%C3%A9.txt"' in body and "caf\u00e9.txt" in body
    assert 'href="child/"' in body and 'href="visible.txt"' in body
    # Hidden names are not listed.
    assert ".hidden" not in body
    linked = request(server, "/listing/%3Cscript%3E.txt")
    assert linked.status == 200 and linked.body == b"x\n"


def test_autoindex_child_and_title_escaped(server: Frontd, tree: dict[str, Path]) -> None:
    (tree["listing"] / "child" / "<b>").mkdir(exist_ok=True)
    answer = request(server, "/listing/child/%3Cb%3E/")
    assert answer.status == 200
    assert b"<b>" not in answer.body and b"&lt;b&gt;" in answer.body
    assert request(server, "/listing/child").status == 301


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "body"), [
    ("/a%20b.txt", b"space\n"),
    ("/caf%C3%A9.txt", "caf\u00e9\n".encode()),
    ("/caf%c3%a9.txt", "caf\u00e9\n".encode()),
    ("/h%65llo.txt", b"hello\n"),
    ("/./hello.txt", b"hello\n"),
    ("/sub/../hello.txt", b"hello\n"),
    ("//hello.txt", b"hello\n"),
])
def test_names_and_encodings(server: Frontd, target: str, body: bytes) -> None:
    answer = request(server, target)
    assert answer.status == 200 and answer.body == body


def test_names_with_requests(server: Frontd) -> None:
    for name, body in (("a b.txt", "space\n"), ("caf\u00e9.txt", "caf\u00e9\n")):
        response = requests.get(server.url("/" + name), timeout=5)
        assert response.status_code == 200 and response.content == body.encode()


def test_missing_file(server: Frontd) -> None:
    answer = request(server, "/nope.txt")
    assert answer.status == 404
    assert request(server, "/nope/deeper.txt").status == 404
    assert request(server, "/hello.txt/deeper").status == 404


# -- HEAD and methods ------------------------------------------------------------------------


def without_date(answer: Answer) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k != "date"}


@pytest.mark.parametrize("target", ["/hello.txt", "/data.bin", "/", "/sub", "/files/inside.txt", "/listing/"])
def test_head_has_get_headers_and_no_body(server: Frontd, target: str) -> None:
    get = request(server, target)
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(f"HEAD {target} HTTP/1.1\r\nHost: site.test\r\n\r\n".encode())
        head = client.read("HEAD")
        # The same socket answers a next request: nothing was sent after the head.
        client.send(b"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        after = client.read()
    assert head.status == get.status and head.body == b""
    assert without_date(head) == without_date(get)
    assert after.status == 200 and after.body == b"hello\n"


def test_options(server: Frontd) -> None:
    for target in ("/hello.txt", "/", "/files/inside.txt", "*"):
        answer = request(server, target, method="OPTIONS")
        assert answer.status == 204
        assert {m.strip() for m in answer.headers["allow"].split(",")} >= {"GET", "HEAD", "OPTIONS"}
        assert answer.body == b""


def test_keepalive_across_every_kind_of_answer(server: Frontd, etag: str) -> None:
    """Answers without a body (204, 301, 304) and errors raised by the handler (403, 404, 405,
    412, 416) leave the connection usable, and answers come back in order, pipelined or not."""
    sequence = [
        ("OPTIONS /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n", "OPTIONS", 204, b""),
        (f"GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nIf-None-Match: {etag}\r\n\r\n", "GET", 304, b""),
        ("GET /data.bin HTTP/1.1\r\nHost: site.test\r\nRange: bytes=2000-\r\n\r\n", "GET", 416, None),
        ("GET /hello.txt HTTP/1.1\r\nHost: site.test\r\nIf-Match: \"x\"\r\n\r\n", "GET", 412, None),
        ("GET /nope HTTP/1.1\r\nHost: site.test\r\n\r\n", "GET", 404, None),
        ("GET /noindex/ HTTP/1.1\r\nHost: site.test\r\n\r\n", "GET", 403, None),
        ("DELETE /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n", "DELETE", 405, None),
        ("GET /sub HTTP/1.1\r\nHost: site.test\r\n\r\n", "GET", 301, b""),
        ("HEAD /data.bin HTTP/1.1\r\nHost: site.test\r\n\r\n", "HEAD", 200, b""),
        ("GET /data.bin HTTP/1.1\r\nHost: site.test\r\nRange: bytes=0-9,20-29\r\n\r\n", "GET", 206, None),
        ("GET /hello.txt HTTP/1.1\r\nHost: site.test\r\n\r\n", "GET", 200, b"hello\n"),
    ]
    for pipelined in (False, True):
        with server.connect() as sock:
            client = RawClient(sock)
            if pipelined:
                client.send("".join(head for head, *_ in sequence).encode())
            for head, method, status, body in sequence:
                if not pipelined:
                    client.send(head.encode())
                answer = client.read(method)
                assert answer.status == status, head
                assert answer.headers.get("connection", "") != "close", head
                if body is not None:
                    assert answer.body == body, head


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND", "MKCOL"])
def test_other_methods_are_405(server: Frontd, method: str) -> None:
    answer = request(server, "/hello.txt", method=method, headers={"Content-Length": "0"})
    assert answer.status == 405
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert allowed >= {"GET", "HEAD"} and method not in allowed


# -- request bodies sent to static files -------------------------------------------------------

SMUGGLED = b"GET /secret.txt HTTP/1.1\r\nHost: site.test\r\n\r\n"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_is_never_a_request(server: Frontd, method: str, framing: str) -> None:
    """A body whose bytes are themselves a request gives exactly one response (no smuggling)."""
    if framing == "length":
        head = b"%s /hello.txt HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n" % (
            method.encode(), len(SMUGGLED))
        body = SMUGGLED
    else:
        head = b"%s /hello.txt HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n" % method.encode()
        body = chunked(SMUGGLED)
    out = server.raw(head + body)
    assert count_responses(out) == 1, out
    assert SECRET not in out
    assert parse_one(out).status == (200 if method == "GET" else 405)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_connection_usable_or_closed_after_body(server: Frontd, method: str, framing: str) -> None:
    """After a body sent to a static file, the next request on the socket is answered correctly,
    or the server closes the connection; it never answers the body."""
    payload = SMUGGLED * 50
    if framing == "length":
        first = b"%s /hello.txt HTTP/1.1\r\nHost: site.test\r\nContent-Length: %d\r\n\r\n%s" % (
            method.encode(), len(payload), payload)
    else:
        first = (b"%s /hello.txt HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 % method.encode()) + b"".join(b"%x\r\n%s\r\n" % (len(SMUGGLED), SMUGGLED) for _ in range(50)) \
            + b"0\r\n\r\n"
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(first)
        answer = client.read()
        assert answer.status == (200 if method == "GET" else 405)
        if answer.headers.get("connection", "").lower() == "close":
            assert client.closed_by_peer()
            return
        try:
            client.send(b"GET /tiny.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        except OSError:
            return  # closed: acceptable
        sock.settimeout(5)
        rest = recv_all_after_one(sock)
    assert SECRET not in rest
    if rest:
        assert count_responses(rest) == 1, rest
        second = parse_one(rest)
        assert second.status == 200 and second.body == b"x" * 96


def recv_all_after_one(sock: socket.socket) -> bytes:
    """Whatever the server sends for the second request, up to its close or a quiet second."""
    sock.settimeout(2)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return data
        if not chunk:
            return data
        data += chunk
        try:
            answer = parse_one(data)
        except Exception:  # noqa: BLE001 - incomplete yet
            continue
        if answer.status and len(answer.body) == int(answer.headers.get("content-length", -1)):
            # Wait a moment for anything extra (a smuggled second response).
            sock.settimeout(0.3)


# -- big files -------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """frontd's master and its children (the workers, whichever serves the connection)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                pids.append(int(entry))
    return pids


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB summed over frontd and its child processes (workers)."""
    rss = hwm = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        hwm += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, hwm


def test_large_file_in_constant_memory(frontd, tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    size = 64 * 1024 * 1024
    with open(root / "big.bin", "wb") as f:
        # Sparse except for marks at known offsets, checked on arrival.
        for offset in (0, size // 2, size - 16):
            f.seek(offset)
            f.write(b"MARK%012d" % offset)
        f.truncate(size)
    server = frontd(f'[[vhost]]\nnames = ["big.test"]\nroot = "{root}"\n')
    # Warm up the code paths so that lazily imported modules do not count as growth.
    assert requests.get(server.url("/big.bin"), headers={"Range": "bytes=0-15"}, timeout=5).status_code == 206
    rss_before, hwm_before = tree_rss_kib(server.pid)
    with server.connect(timeout=30) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: big.test\r\nConnection: close\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        received = 0
        head = b""
        marks = {}
        tail = b""
        buf = b""
        first = True
        mid_rss = 0
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            if first:
                buf += chunk
                if b"\r\n\r\n" not in buf:
                    continue
                head, _, chunk = buf.partition(b"\r\n\r\n")
                first = False
            # The last 16 bytes of the previous chunk too, for a mark split across two reads.
            window, start = tail + chunk, received - len(tail)
            for offset in (0, size // 2, size - 16):
                if start <= offset and offset + 16 <= start + len(window):
                    marks[offset] = window[offset - start:offset - start + 16]
            received += len(chunk)
            tail = window[-16:]
            if not mid_rss and received > size // 2:
                mid_rss = tree_rss_kib(server.pid)[0]
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: %d" % size in head.lower()
    assert received == size
    assert marks == {o: b"MARK%012d" % o for o in (0, size // 2, size - 16)}
    rss_after, hwm_after = tree_rss_kib(server.pid)
    # A few MiB of slack for allocator noise; a buffered file would add up to 64 MiB.
    assert mid_rss - rss_before < 8 * 1024, (rss_before, mid_rss)
    assert hwm_after - hwm_before < 8 * 1024, (hwm_before, hwm_after)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)


def test_large_file_range_in_the_middle(frontd, tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    size = 16 * 1024 * 1024
    with open(root / "big.bin", "wb") as f:
        f.seek(size - 1 - 100)
        f.write(b"END")
        f.truncate(size)
    server = frontd(f'[[vhost]]\nnames = ["big.test"]\nroot = "{root}"\n')
    response = requests.get(server.url("/big.bin"), headers={"Range": f"bytes={size - 101}-{size - 99}"},
                            timeout=10)
    assert response.status_code == 206 and response.content == b"END"
    response = requests.get(server.url("/big.bin"), timeout=30)
    assert len(response.content) == size


def test_file_changed_between_requests_of_a_keepalive_connection(server: Frontd, tree: dict[str, Path]) -> None:
    path = tree["root"] / "grows.txt"
    path.write_bytes(b"a" * 10)
    with server.connect() as sock:
        client = RawClient(sock)
        client.send(b"GET /grows.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert client.read().body == b"a" * 10
        path.write_bytes(b"b" * 20)
        os.utime(path, (time.time() + 10, time.time() + 10))
        client.send(b"GET /grows.txt HTTP/1.1\r\nHost: site.test\r\n\r\n")
        assert client.read().body == b"b" * 20


def test_file_body_goes_out_with_sendfile(frontd, tmp_path: Path) -> None:
    """Zero-copy: the bytes of a file leave through sendfile(2), never through read(2) into frontd."""
    root = tmp_path / "z"
    root.mkdir()
    data = os.urandom(1 << 20)
    (root / "one.bin").write_bytes(data)
    server = frontd(f'[[vhost]]\nnames = ["z.test"]\nroot = "{root}"\n')
    assert requests.get(server.url("/one.bin"), timeout=5).content == data
    log = tmp_path / "strace.txt"
    with syscalls(process_tree(server.pid), "sendfile,read,pread64,readv,preadv,preadv2", log):
        assert requests.get(server.url("/one.bin"), timeout=10).content == data
        part = requests.get(server.url("/one.bin"), headers={"Range": "bytes=300000-899999"}, timeout=10)
        assert part.status_code == 206 and part.content == data[300000:900000]
    moved = bytes_by_call(log)
    sent = moved.pop("sendfile", 0)
    read = sum(moved.values())
    assert sent == len(data) + 600000
    assert read < 64 * 1024
