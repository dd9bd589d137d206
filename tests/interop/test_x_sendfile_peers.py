"""X-Sendfile from real applications: a WSGI app under flup's FastCGI server and a PHP script
under php-fpm, each naming a file with `X-Sendfile` (or `X-Accel-Redirect`) on a route with
`x_sendfile` (docs/gateways.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.interop.conftest import Peer, start_flup, start_php_fpm

DATA = bytes(range(256)) * 1024  # 256 KiB
SEND_PHP = """<?php
// The file (and optionally the type) the query names, sent by frontd.
if (isset($_GET["type"])) {
    header("Content-Type: " . $_GET["type"]);
}
header("Content-Disposition: attachment; filename=\\"data.bin\\"");
header($_GET["field"] . ": " . $_GET["path"]);
echo "the body of the PHP script\\n";
"""


@pytest.fixture(scope="module")
def private(workdir: Path) -> Path:
    directory = workdir / "private"
    directory.mkdir()
    (directory / "data.bin").write_bytes(DATA)
    (directory / "page.html").write_text("<p>page</p>\n")
    (workdir / "outside.txt").write_text("outside\n")
    return directory


@pytest.fixture(scope="module")
def server(peers: Callable[..., Peer], workdir: Path, private: Path, frontd_module: Callable[..., Frontd]) -> Frontd:
    flup = f"unix:{workdir}/flup.sock"
    start_flup(peers, workdir, "fcgi", "flup", flup)
    php_root = workdir / "php"
    php_root.mkdir()
    (php_root / "send.php").write_text(SEND_PHP)
    fpm = start_php_fpm(peers, workdir, {"a": f"unix:{workdir}/php-a.sock"})
    return frontd_module(f"""
[[vhost]]
names = ["localhost"]
default = true

  [[vhost.route]]
  prefix = "/wsgi/"
  fastcgi = "{flup}"
  keepalive = 2
  x_sendfile = ["{private}"]

  [[vhost.route]]
  prefix = "/php/"
  fastcgi = "{fpm.addresses[0]}"
  root = "{os.path.realpath(php_root)}"
  index = ["index.php"]
  x_sendfile = ["{private}"]

  [[vhost.route]]
  prefix = "/wsgi-plain/"
  fastcgi = "{flup}"

  [[vhost.route]]
  prefix = "/internal/"
  static = "{private}"
  internal = true
""")


def test_flup_x_sendfile(server: Frontd, private: Path) -> None:
    with requests.Session() as session:
        for _ in range(3):  # on the kept-alive connection each time
            response = session.get(server.url("/wsgi/fields"), timeout=10,
                                   params={"X-Sendfile": str(private / "data.bin"), "Cache-Control": "private"})
            assert response.status_code == 200 and response.content == DATA
            assert response.headers["Content-Type"] == "text/plain"  # the application gave one
            assert response.headers["Cache-Control"] == "private"
        ranged = session.get(server.url("/wsgi/fields"), params={"X-Sendfile": str(private / "data.bin")},
                             headers={"Range": "bytes=1000-1999"}, timeout=10)
        assert ranged.status_code == 206 and ranged.content == DATA[1000:2000]
        not_modified = session.get(server.url("/wsgi/fields"), params={"X-Sendfile": str(private / "data.bin")},
                                   headers={"If-None-Match": ranged.headers["ETag"]}, timeout=10)
        assert not_modified.status_code == 304
        accel = session.get(server.url("/wsgi/fields"), params={"X-Accel-Redirect": "/internal/page.html"},
                            timeout=10)
        assert accel.status_code == 200 and accel.text == "<p>page</p>\n"
        refused = session.get(server.url("/wsgi/fields"), params={"X-Sendfile": str(private / ".." / "outside.txt")},
                              timeout=10)
        assert refused.status_code == 502 and b"outside" not in refused.content
        # Without x_sendfile on the route the application's answer is relayed as it is.
        plain = session.get(server.url("/wsgi-plain/fields"), params={"X-Sendfile": str(private / "data.bin")},
                            timeout=10)
        assert plain.status_code == 200 and plain.text == "the body of flup\n"
        assert plain.headers["X-Sendfile"] == str(private / "data.bin")
    # The FastCGI connection went back to the pool after each answer whose body was read away.
    assert "not read to its end" not in server.errors()


def test_php_fpm_x_sendfile(server: Frontd, private: Path, workdir: Path) -> None:
    url = server.url("/php/send.php")
    response = requests.get(url, params={"field": "X-Sendfile", "path": str(private / "data.bin"),
                                         "type": "application/octet-stream"}, timeout=10)
    assert response.status_code == 200 and response.content == DATA
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="data.bin"'
    assert response.headers["Content-Length"] == str(len(DATA))
    head = requests.head(url, params={"field": "X-Sendfile", "path": str(private / "data.bin")}, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(DATA))
    # PHP's default type is text/html; the application's type wins over the file's extension.
    assert head.headers["Content-Type"].startswith("text/html")
    accel = requests.get(url, params={"field": "X-Accel-Redirect", "path": "/internal/data.bin"},
                         headers={"Range": "bytes=-10"}, timeout=10)
    assert accel.status_code == 206 and accel.content == DATA[-10:]
    outside = str(workdir / "outside.txt")
    refused = requests.get(url, params={"field": "X-Sendfile", "path": outside}, timeout=10)
    assert refused.status_code == 502
    wait_for(lambda: f"X-Sendfile {outside!r} refused: outside the route's x_sendfile directories" in server.errors(),
             10, "the log line")
