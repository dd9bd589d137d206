"""Output rules at the socket: `headers`, `compress`, `precompressed` and per-vhost access logs.

Responses are read with http.client (it decodes no content coding, so the encoded bytes are what
the test sees) and decoded here with zlib, zstandard and brotli; curl --compressed and headless
Chromium decode them as real clients.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli
import pytest
import zstandard

from tests.conftest import Frontd, wait_for
from tests.integration.processes import chromium_dump_dom
from tests.integration.proxy_backend import Backend, Backends, Received, Reply
from tests.integration.test_tls import TLS_TOP, Client, Pki, pki, tls_port, vhost  # noqa: F401 (pki: the fixture)

Start = Callable[..., Frontd]
CSS = b"".join(b".rule-%d { color: #%06x; margin: 0 auto; padding: 4px; }\n" % (i, i * 7919 % 0xFFFFFF)
               for i in range(400))  # about 20 KiB, compressible


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def fetch(server: Frontd, path: str, headers: dict[str, str] | None = None,
          method: str = "GET", host: str = "example.test") -> tuple[int, dict[str, str], bytes, list[tuple[str, str]]]:
    """(status, fields by lower-case name, body as sent, every field in order)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": host, "Accept-Encoding": "identity", **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        fields = [(k.lower(), v) for k, v in response.getheaders()]
        return response.status, dict(fields), body, fields
    finally:
        conn.close()


def decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    raise AssertionError(f"unexpected coding {coding}")


def make_site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "assets").mkdir(parents=True)
    (root / "style.css").write_bytes(CSS)
    (root / "small.css").write_bytes(b"p { color: red }\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    (root / "index.html").write_text("<h1>home</h1>\n")
    return root


# -- headers ---------------------------------------------------------------------------------


def test_headers_on_files_errors_and_304_route_overrides_field_by_field(frontd: Start, tmp_path: Path) -> None:
    root = make_site(tmp_path)
    (root / "assets" / "a.css").write_bytes(CSS)
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
headers = {{ "X-Frame-Options" = "DENY", "Cache-Control" = "no-cache", "Strict-Transport-Security" = "max-age=60" }}
  [[vhost.route]]
  prefix = "/assets/"
  static = "{root / 'assets'}"
  headers = {{ "Cache-Control" = "public, max-age=31536000, immutable", "X-Frame-Options" = "" }}
""")
    status, fields, body, _ = fetch(server, "/style.css")
    assert status == 200 and body == CSS
    assert fields["x-frame-options"] == "DENY" and fields["cache-control"] == "no-cache"
    # RFC 6797 §7.2: never over plain HTTP, even when configured.
    assert "strict-transport-security" not in fields
    status, fields, _, _ = fetch(server, "/assets/a.css")
    assert status == 200
    assert fields["cache-control"] == "public, max-age=31536000, immutable"
    assert "x-frame-options" not in fields  # "" on the route removes the vhost's field
    # A 304 carries them too.
    status, fields, _, _ = fetch(server, "/assets/a.css", {"If-None-Match": fields["etag"]})
    assert status == 304 and fields["cache-control"].startswith("public")
    # frontd's own errors: under the vhost root and under the route.
    status, fields, _, _ = fetch(server, "/missing")
    assert status == 404 and fields["x-frame-options"] == "DENY" and fields["cache-control"] == "no-cache"
    status, fields, _, _ = fetch(server, "/assets/missing")
    assert status == 404 and fields["cache-control"].startswith("public") and "x-frame-options" not in fields
    status, fields, _, _ = fetch(server, "/style.css", method="DELETE")
    assert status == 405 and fields["x-frame-options"] == "DENY"


def test_headers_replace_and_remove_backend_fields(frontd: Start, tmp_path: Path, backends: Backends) -> None:
    def app(backend: Backend, req: Received, reply: Reply) -> None:
        reply.send(200, b"ok\n", [("content-type", "text/plain"), ("x-powered-by", "PHP/8"),
                                  ("cache-control", "private"), ("cache-control", "no-store"),
                                  ("x-kept", "yes")])

    backend = backends.start(app)
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
headers = {{ "X-Powered-By" = "", "Cache-Control" = "public, max-age=60" }}
  [[vhost.route]]
  prefix = "/"
  proxy = "{backend.url}"
""")
    status, fields, body, ordered = fetch(server, "/x")
    assert status == 200 and body == b"ok\n"
    assert "x-powered-by" not in fields and fields["x-kept"] == "yes"
    assert [v for k, v in ordered if k == "cache-control"] == ["public, max-age=60"]


# -- compress ---------------------------------------------------------------------------------


def compress_site(frontd: Start, tmp_path: Path, extra: str = "", vhost: str = "compress = true") -> Frontd:
    root = make_site(tmp_path)
    return frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
{vhost}
{extra}
""")


@pytest.mark.parametrize("coding", ["gzip", "zstd", "br"])
def test_compress_each_coding(frontd: Start, tmp_path: Path, coding: str) -> None:
    server = compress_site(frontd, tmp_path)
    status, fields, body, _ = fetch(server, "/style.css", {"Accept-Encoding": coding})
    assert status == 200
    assert fields["content-encoding"] == coding
    assert fields["vary"] == "Accept-Encoding"
    assert "content-length" not in fields and "accept-ranges" not in fields
    assert fields["etag"].startswith('W/"')
    assert fields["content-type"].startswith("text/css")
    assert len(body) < len(CSS) // 3
    assert decode(coding, body) == CSS
    server.wait_access_log(rf'"GET /style.css HTTP/1.1" 200 {len(body)} ')


@pytest.mark.parametrize(("accept", "expected"), [
    ("gzip, br, zstd", "zstd"),  # equal q: zstd, then br, then gzip
    ("gzip, br", "br"),
    ("gzip;q=1.0, zstd;q=0.5, br;q=0.8", "gzip"),
    ("*", "zstd"),
    ("br;q=0, *;q=0.3", "zstd"),
    ("x-gzip", "gzip"),
    ("gzip;q=0, zstd;q=0, br;q=0", None),
    ("deflate, compress", None),
    ("gzip;q=2", None),  # a malformed weight: the element is ignored
    ("identity", None),
])
def test_compress_negotiation(frontd: Start, tmp_path: Path, accept: str, expected: str | None) -> None:
    server = compress_site(frontd, tmp_path)
    status, fields, body, _ = fetch(server, "/style.css", {"Accept-Encoding": accept})
    assert status == 200
    assert fields.get("content-encoding") == expected
    assert fields["vary"] == "Accept-Encoding"  # the answer depended on Accept-Encoding either way
    assert (decode(expected, body) if expected else body) == CSS


def test_compress_list_chooses_and_orders(frontd: Start, tmp_path: Path) -> None:
    server = compress_site(frontd, tmp_path, vhost='compress = ["gzip", "br"]')
    assert fetch(server, "/style.css", {"Accept-Encoding": "zstd, br, gzip"})[1]["content-encoding"] == "gzip"
    assert fetch(server, "/style.css", {"Accept-Encoding": "zstd"})[1].get("content-encoding") is None


def test_compress_leaves_alone(frontd: Start, tmp_path: Path) -> None:
    server = compress_site(frontd, tmp_path)
    accept = {"Accept-Encoding": "gzip"}
    # Under the minimum size (1 KiB), not a compressible type, HEAD, a Range.
    status, fields, body, _ = fetch(server, "/small.css", accept)
    assert status == 200 and "content-encoding" not in fields and body == b"p { color: red }\n"
    status, fields, _, _ = fetch(server, "/image.png", accept)
    assert status == 200 and "content-encoding" not in fields and "vary" not in fields
    status, fields, body, _ = fetch(server, "/style.css", accept, method="HEAD")
    assert status == 200 and "content-encoding" not in fields and fields["content-length"] == str(len(CSS))
    status, fields, body, _ = fetch(server, "/style.css", {**accept, "Range": "bytes=0-9"})
    assert status == 206 and "content-encoding" not in fields and body == CSS[:10]
    # identity;q=0: even a small response is encoded rather than sent as identity.
    status, fields, body, _ = fetch(server, "/small.css", {"Accept-Encoding": "gzip, identity;q=0"})
    assert fields["content-encoding"] == "gzip" and gzip.decompress(body) == b"p { color: red }\n"
    # The conditional still works on the (weak) ETag of the encoded response, and the 304 carries
    # that ETag and the Vary of the 200 (RFC 9110 §15.4.5).
    etag = fetch(server, "/style.css", accept)[1]["etag"]
    status, fields, body, _ = fetch(server, "/style.css", {**accept, "If-None-Match": etag})
    assert status == 304 and body == b""
    assert fields["etag"] == etag and fields["vary"] == "Accept-Encoding"


def test_compress_no_transform_and_configured_types(frontd: Start, tmp_path: Path) -> None:
    server = compress_site(frontd, tmp_path, vhost="""compress = true
compress_types = ["image/png"]
compress_min_size = 100""")
    status, fields, _, _ = fetch(server, "/style.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in fields  # text/css is no longer in the list
    status, fields, body, _ = fetch(server, "/image.png", {"Accept-Encoding": "gzip"})
    assert fields["content-encoding"] == "gzip"
    assert decode("gzip", body) == (tmp_path / "www" / "image.png").read_bytes()
    server2 = compress_site(frontd, tmp_path / "b", vhost='compress = true\nheaders = { "Cache-Control" = "no-transform" }')
    status, fields, body, _ = fetch(server2, "/style.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in fields and body == CSS


def test_compress_large_file_streamed(frontd: Start, tmp_path: Path) -> None:
    server = compress_site(frontd, tmp_path)
    big = CSS * 400  # about 8 MiB, several chunks
    (tmp_path / "www" / "big.css").write_bytes(big)
    for coding in ("gzip", "zstd", "br"):
        status, fields, body, _ = fetch(server, "/big.css", {"Accept-Encoding": coding})
        assert status == 200 and fields["content-encoding"] == coding and fields["transfer-encoding"] == "chunked"
        assert decode(coding, body) == big


def test_compress_cgi_and_proxy_output(frontd: Start, tmp_path: Path, backends: Backends) -> None:
    cgi = tmp_path / "cgi"
    cgi.mkdir()
    script = cgi / "css.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/css\\n\\n'\ni=0\n"
                      "while [ $i -lt 300 ]; do echo \".c$i { margin: 0 }\"; i=$((i+1)); done\n")
    script.chmod(0o755)
    expected_cgi = b"".join(b".c%d { margin: 0 }\n" % i for i in range(300))
    encoded = gzip.compress(CSS)

    def app(backend: Backend, req: Received, reply: Reply) -> None:
        if req.target.endswith("/pre"):
            reply.send(200, encoded, [("content-type", "text/css"), ("content-encoding", "gzip")])
        else:
            reply.send(200, json.dumps({"items": list(range(2000))}).encode(), [("content-type", "application/json")])

    backend = backends.start(app)
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
compress = true
  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{cgi}"
  [[vhost.route]]
  prefix = "/api/"
  proxy = "{backend.url}"
""")
    status, fields, body, _ = fetch(server, "/cgi-bin/css.sh", {"Accept-Encoding": "br"})
    assert status == 200 and fields["content-encoding"] == "br" and decode("br", body) == expected_cgi
    status, fields, body, _ = fetch(server, "/api/list", {"Accept-Encoding": "zstd"})
    assert fields["content-encoding"] == "zstd"
    assert json.loads(decode("zstd", body)) == {"items": list(range(2000))}
    # Already encoded by the backend: passed on as it is, never encoded twice.
    status, fields, body, _ = fetch(server, "/api/pre", {"Accept-Encoding": "br, gzip"})
    assert fields["content-encoding"] == "gzip" and body == encoded


def test_compress_streamed_output_is_not_held_back(frontd: Start, backends: Backends) -> None:
    """A backend's first chunk reaches the client, decodable, while the backend is still working:
    each write is flushed through the encoder (a long poll or a progress page keeps working)."""
    backend = backends.start()  # /stream: "first chunk\n", then waits for release, "second chunk\n"
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
compress = true
compress_min_size = 0
  [[vhost.route]]
  prefix = "/"
  proxy = "{backend.url}"
""")
    with server.connect() as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: example.test\r\nAccept-Encoding: gzip\r\n\r\n")
        sock.settimeout(0.2)
        received = bytearray()

        def first_chunk_decoded() -> bool:
            try:
                received.extend(sock.recv(65536))
            except TimeoutError:
                return False
            head, _, rest = bytes(received).partition(b"\r\n\r\n")
            if not rest:
                return False
            assert b"content-encoding: gzip" in head.lower()
            # The chunks of the chunked framing that are complete: their gzip bytes.
            size_line, _, tail = rest.partition(b"\r\n")
            body = b""
            while size_line and len(tail) >= int(size_line, 16) + 2:
                n = int(size_line, 16)
                body += tail[:n]
                size_line, _, tail = tail[n + 2:].partition(b"\r\n")
            return zlib.decompressobj(31).decompress(body) == b"first chunk\n"

        wait_for(first_chunk_decoded, what="the first chunk, decoded, before the backend finishes")
        backend.release.set()


def test_curl_compressed(frontd: Start, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server = compress_site(frontd, tmp_path)
    result = subprocess.run([curl, "-sS", "--compressed", "-D", "-", "-H", "Host: example.test",
                             server.url("/style.css")], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert re.search(rb"(?im)^content-encoding: (gzip|br|zstd)\r?$", head)
    assert body == CSS


def test_chromium_decodes_compressed_css_and_js(frontd: Start, tmp_path: Path) -> None:
    root = make_site(tmp_path)
    padding = "/* " + "padding so the file is over the minimum size " * 40 + "*/\n"
    (root / "page.css").write_text(padding + "#probe { width: 123px; height: 7px; }\n")
    (root / "page.js").write_text(
        padding + "document.addEventListener('DOMContentLoaded', function () {\n"
        "  var w = getComputedStyle(document.getElementById('probe')).width;\n"
        "  document.getElementById('out').textContent = 'js ran, probe width ' + w;\n});\n")
    (root / "page.html").write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="/page.css">'
        '<script src="/page.js"></script></head>'
        '<body><div id="probe"></div><p id="out">js did not run</p></body></html>\n')
    server = frontd(f"""
[[vhost]]
names = ["127.0.0.1"]
root = "{root}"
compress = true
access_log_format = "json"
""")
    result = chromium_dump_dom(server.url("/page.html"), tmp_path / "chromium-profile")
    assert "js ran, probe width 123px" in result.stdout
    server.wait_access_log(r'"target":"/page.js"')
    lines = [json.loads(line) for line in server.access().splitlines()]
    sent = {line["target"]: line["bytes"] for line in lines}
    # The bodies went out encoded: fewer bytes than the files.
    assert sent["/page.css"] < (root / "page.css").stat().st_size // 4
    assert sent["/page.js"] < (root / "page.js").stat().st_size // 4


# -- precompressed ----------------------------------------------------------------------------


def precompressed_site(frontd: Start, tmp_path: Path) -> tuple[Frontd, Path]:
    root = make_site(tmp_path)
    assets = root / "assets"
    (assets / "a.css").write_bytes(CSS)
    (assets / "a.css.gz").write_bytes(gzip.compress(CSS))
    (assets / "a.css.br").write_bytes(brotli.compress(CSS))
    (assets / "b.css").write_bytes(CSS)
    (assets / "b.css.gz").write_bytes(gzip.compress(b"stale"))
    old = os.stat(assets / "b.css").st_mtime - 60
    os.utime(assets / "b.css.gz", (old, old))
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
  [[vhost.route]]
  prefix = "/assets/"
  static = "{assets}"
  precompressed = true
""")
    return server, assets


def test_precompressed_sibling_sent(frontd: Start, tmp_path: Path) -> None:
    server, assets = precompressed_site(frontd, tmp_path)
    status, fields, body, _ = fetch(server, "/assets/a.css", {"Accept-Encoding": "gzip, br"})
    assert status == 200 and fields["content-encoding"] == "br"
    assert body == (assets / "a.css.br").read_bytes()
    assert fields["content-type"].startswith("text/css") and fields["vary"] == "Accept-Encoding"
    assert fields["content-length"] == str(len(body))
    status, fields, body, _ = fetch(server, "/assets/a.css", {"Accept-Encoding": "gzip"})
    assert fields["content-encoding"] == "gzip" and gzip.decompress(body) == CSS
    gz_etag = fields["etag"]
    # No acceptable coding: the original, still with Vary.
    status, fields, body, _ = fetch(server, "/assets/a.css")
    assert "content-encoding" not in fields and body == CSS and fields["vary"] == "Accept-Encoding"
    assert fields["etag"] != gz_etag
    # Conditionals and ranges work on the encoded file.
    status, fields, body, _ = fetch(server, "/assets/a.css", {"Accept-Encoding": "gzip", "If-None-Match": gz_etag})
    assert status == 304 and fields["vary"] == "Accept-Encoding"
    size = (assets / "a.css.gz").stat().st_size
    status, fields, body, _ = fetch(server, "/assets/a.css", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert status == 206 and fields["content-range"] == f"bytes 0-9/{size}"
    assert body == (assets / "a.css.gz").read_bytes()[:10]


def test_precompressed_stale_or_symlinked_sibling_ignored(frontd: Start, tmp_path: Path) -> None:
    server, assets = precompressed_site(frontd, tmp_path)
    status, fields, body, _ = fetch(server, "/assets/b.css", {"Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in fields and body == CSS
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root\n")
    (assets / "c.css").write_bytes(CSS)
    (assets / "c.css.gz").symlink_to(secret)
    status, fields, body, _ = fetch(server, "/assets/c.css", {"Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in fields and body == CSS
    # The vhost root has no precompressed: its files go out as they are.
    (tmp_path / "www" / "style.css.gz").write_bytes(gzip.compress(CSS))
    status, fields, body, _ = fetch(server, "/style.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in fields and "vary" not in fields and body == CSS


def test_precompressed_on_vhost_reaches_script_mode_files(frontd: Start, tmp_path: Path) -> None:
    """A script-mode route sends its non-script files as static files: precompressed set on the
    vhost applies to them (no backend is asked: nothing listens at its address)."""
    root = make_site(tmp_path)
    (root / "app.css").write_bytes(CSS)
    (root / "app.css.gz").write_bytes(gzip.compress(CSS))  # written after: not older
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
precompressed = true
  [[vhost.route]]
  prefix = "/"
  fastcgi = "127.0.0.1:9"
  root = "{root}"
  index = ["index.php"]
""")
    status, fields, body, _ = fetch(server, "/app.css", {"Accept-Encoding": "gzip"})
    assert status == 200 and fields["content-encoding"] == "gzip" and gzip.decompress(body) == CSS
    assert fields["content-type"].startswith("text/css")


# -- access logs ------------------------------------------------------------------------------


def test_access_log_per_vhost_and_formats(frontd: Start, tmp_path: Path) -> None:
    root = make_site(tmp_path)
    json_log = tmp_path / "json.log"
    vhost_log = tmp_path / "vhost.log"
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
access_log = "{json_log}"
access_log_format = "json"

[[vhost]]
names = ["other.test"]
root = "{root}"
access_log = "{vhost_log}"
access_log_format = "vhost_combined"

[[vhost]]
names = ["rest.test"]
root = "{root}"
""")
    fetch(server, "/index.html?x=1", {"User-Agent": 'agent "quoted"', "Referer": "http://r.test/"})
    fetch(server, "/index.html", host="other.test")
    fetch(server, "/missing", host="rest.test")
    wait_for(lambda: json_log.exists() and json_log.read_text(), what="the JSON access log")
    record = json.loads(json_log.read_text().splitlines()[0])
    assert set(record) == {"time", "host", "client", "method", "target", "protocol", "status", "bytes",
                           "duration", "upstream", "user_agent", "referer", "cut"}
    assert record["host"] == "example.test" and record["client"] == "127.0.0.1"
    assert record["method"] == "GET" and record["target"] == "/index.html?x=1"
    assert record["status"] == 200 and record["bytes"] == len("<h1>home</h1>\n")
    assert record["protocol"] == "HTTP/1.1" and record["user_agent"] == 'agent "quoted"'
    assert record["referer"] == "http://r.test/" and record["upstream"] is None and record["cut"] is False
    assert 0 <= record["duration"] < 10 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    wait_for(lambda: vhost_log.exists() and vhost_log.read_text(), what="the vhost_combined access log")
    assert re.match(rf'other\.test:{server.port} 127\.0\.0\.1 - - \[[^]]+\] "GET /index.html HTTP/1.1" 200 ',
                    vhost_log.read_text())
    server.wait_access_log(r'"GET /missing HTTP/1.1" 404 ')
    assert "example.test" not in server.access() and "other.test" not in server.access()
    assert len(json_log.read_text().splitlines()) == 1


# -- over TLS -------------------------------------------------------------------------------


def test_configured_hsts_over_tls_only_and_compression_through_tls(frontd: Start, tmp_path: Path, pki: Pki) -> None:
    """`headers` HSTS reaches HTTPS clients, never plain-HTTP ones (RFC 6797 §7.2); an encoded
    file body goes through TLS (no sendfile there) intact."""
    root = make_site(tmp_path)
    big = CSS * 50  # about 1 MiB: several chunks
    (root / "big.css").write_bytes(big)
    server = frontd(vhost(root, "a", "a.test", extra='default = true\ncompress = true\n'
                          'headers = { "Strict-Transport-Security" = "max-age=63072000" }'), top=TLS_TOP)
    port = tls_port(server)
    client = Client("a.test", port, pki.client())
    client.request("GET", "/big.css", headers={"Accept-Encoding": "br"})
    response = client.getresponse()
    body = response.read()
    client.close()
    assert response.status == 200 and response.getheader("strict-transport-security") == "max-age=63072000"
    assert response.getheader("content-encoding") == "br" and brotli.decompress(body) == big
    status, fields, _, _ = fetch(server, "/style.css", host="a.test")
    assert status == 200 and "strict-transport-security" not in fields


def test_headers_on_redirect_https(frontd: Start, tmp_path: Path, pki: Pki) -> None:
    root = make_site(tmp_path)
    server = frontd(vhost(root, "a", "a.test", extra='default = true\nredirect_https = true\n'
                          'headers = { "X-Frame-Options" = "DENY" }'), top=TLS_TOP)
    status, fields, _, _ = fetch(server, "/style.css", host="a.test")
    assert status == 308 and fields["x-frame-options"] == "DENY"


def test_error_page_gets_headers_and_compression(frontd: Start, tmp_path: Path) -> None:
    """An error page is sent by the route that serves its path: with that route's output rules,
    under the original status."""
    root = make_site(tmp_path)
    (root / "errors").mkdir()
    page = b"<html><body>" + b"<p>not here</p>" * 200 + b"</body></html>\n"
    (root / "errors" / "404.html").write_bytes(page)
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
error_pages = {{ 404 = "/errors/404.html" }}
headers = {{ "X-Frame-Options" = "DENY" }}
compress = ["gzip"]
""")
    status, fields, body, _ = fetch(server, "/missing", {"Accept-Encoding": "gzip"})
    assert status == 404 and fields["x-frame-options"] == "DENY"
    assert fields["content-encoding"] == "gzip" and gzip.decompress(body) == page
    assert "etag" not in fields  # the page file's validators are not the missing resource's


def test_headers_on_rewrite_redirects_and_auth_refusals(frontd: Start, tmp_path: Path) -> None:
    """Responses frontd makes before any route runs (a rewrite's external redirect, a 401 from
    auth) carry the vhost's headers as errors do."""
    root = make_site(tmp_path)
    (tmp_path / "htpasswd").write_text("")
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
root = "{root}"
headers = {{ "X-Frame-Options" = "DENY" }}
  [[vhost.rewrite]]
  match = '^/old/(.*)$'
  to = "/new/$1"
  status = 301
  [[vhost.route]]
  prefix = "/private/"
  static = "{root}"
  auth = {{ realm = "Staff", htpasswd = "{tmp_path / 'htpasswd'}" }}
""")
    status, fields, _, _ = fetch(server, "/old/page")
    assert status == 301 and fields["location"] == "/new/page"
    assert fields["x-frame-options"] == "DENY"
    status, fields, _, _ = fetch(server, "/private/index.html")
    assert status == 401 and fields["x-frame-options"] == "DENY"
    assert fields["www-authenticate"].startswith('Basic realm="Staff"')
