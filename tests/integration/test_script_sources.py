"""Script sources are never served as files (frontd issue 12, item 4).

A file whose name ends in a script extension (those of every script-mode route in the file, and
the CGI `interpreters` extensions) is refused with 403 by every static root: the vhost's, a
`static` route's, a directory's index; on a script-mode gateway route an existing file that is
not a script is served as a static file instead (Caddy's `php_fastcgi`), never sent to the
backend.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.integration.gateway_backends import CaptureServer

Start = Callable[..., Frontd]
SOURCE = b"<?php echo 'secret' . $db_password; ?>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture
def backend() -> Iterator[CaptureServer]:
    server = CaptureServer("fastcgi")
    yield server
    server.stop()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """www/ (the vhost root), lib/ (a static route, DokuWiki's lib/plugins/acl/ layout), app/
    (the php route's root) and cgi/ (a CGI directory with a .py interpreter)."""
    top = Path(os.path.realpath(tmp_path))
    www = top / "www"
    (www / "dir").mkdir(parents=True)
    (www / "both").mkdir()
    (www / "listed").mkdir()
    (www / "a.php").write_bytes(SOURCE)
    (www / "UPPER.PHP").write_bytes(SOURCE)
    (www / "tool.py").write_bytes(b"print('source')\n")
    (www / "page.html").write_bytes(b"<p>page</p>\n")
    (www / "dir" / "index.php").write_bytes(SOURCE)
    (www / "both" / "index.php").write_bytes(SOURCE)
    (www / "both" / "index.html").write_bytes(b"<p>html</p>\n")
    (www / "listed" / "b.php").write_bytes(SOURCE)
    (www / "listed" / "b.txt").write_bytes(b"text\n")
    os.symlink("a.php", www / "alias.txt")  # a harmless name for a script's bytes
    lib = top / "lib" / "plugins" / "acl"
    lib.mkdir(parents=True)
    (lib / "admin.php").write_bytes(SOURCE)
    (lib / "acl.png").write_bytes(PNG)
    app = top / "app"
    (app / "img").mkdir(parents=True)
    (app / "index.php").write_bytes(SOURCE)
    (app / "img" / "a.png").write_bytes(PNG)
    (app / "style.css").write_bytes(b"body { color: red }\n")
    (app / "Shout.PHP").write_bytes(SOURCE)
    (app / "run.py").write_bytes(b"print('source')\n")
    (top / "cgi").mkdir()
    return top


def site(tree: Path, backend: CaptureServer, *, vhost_index: str = '["index.html"]') -> str:
    return f"""
[[vhost]]
names = ["site.test"]
root = "{tree}/www"
index = {vhost_index}
autoindex = true

  [[vhost.route]]
  prefix = "/lib/"
  static = "{tree}/lib"
  autoindex = true

  [[vhost.route]]
  prefix = "/app/"
  fastcgi = "{backend.address}"
  root = "{tree}/app"
  index = ["index.php"]

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{tree}/cgi"
  interpreters = {{ ".py" = "python3" }}
"""


HOST = {"Host": "site.test"}


def get(server: Frontd, path: str, method: str = "GET") -> requests.Response:
    return requests.request(method, server.url(path), headers=HOST, timeout=10, allow_redirects=False)


def assert_refused(server: Frontd, path: str) -> None:
    for method in ("GET", "HEAD"):
        response = get(server, path, method)
        assert response.status_code == 403, (path, method, response.status_code)
        assert b"secret" not in response.content and b"print" not in response.content
        assert response.headers["content-type"].startswith("text/html")


def test_php_under_the_vhost_root_is_refused(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend))
    assert_refused(server, "/a.php")
    # One log line per refusal, naming the path.
    server.wait_error_log(r"403: '/a\.php': .*script")
    assert len(re.findall(r"'/a\.php'", server.errors())) == 2  # GET and HEAD, one line each
    # The vhost's other files are still served.
    assert get(server, "/page.html").content == b"<p>page</p>\n"
    assert backend.connections == 0


def test_php_under_a_static_route_is_refused(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    # DokuWiki: lib/ can only be a static route, and its scripts sit beside its images.
    server = frontd(site(tree, backend))
    assert_refused(server, "/lib/plugins/acl/admin.php")
    png = get(server, "/lib/plugins/acl/acl.png")
    assert png.status_code == 200 and png.content == PNG
    assert png.headers["content-type"] == "image/png"
    assert backend.connections == 0


def test_a_script_as_a_directory_index_is_refused(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend, vhost_index='["index.php", "index.html"]'))
    assert_refused(server, "/dir/")
    # The first existing index name is the index: a script there is refused, not skipped.
    assert_refused(server, "/both/")
    server.wait_error_log(r"403: '/dir/': .*index\.php.*script")
    assert_refused(server, "/dir/index.php")


def test_a_cgi_interpreter_extension_is_refused(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend))
    assert_refused(server, "/tool.py")


def test_case_and_symlinks(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend))
    # A script by name whatever its case (a case-insensitive file system, Apache's AddHandler).
    assert_refused(server, "/UPPER.PHP")
    # A symlink with a harmless name leading to a script: the file's own name counts too.
    assert_refused(server, "/alias.txt")
    # Trailing dots and NTFS stream names are other names on Linux: no such file, no source.
    for path in ("/a.php.", "/a.php%20", "/a.php::$DATA", "/a.php/"):
        response = get(server, path)
        assert response.status_code == 404, path
        assert b"secret" not in response.content


def test_listing_names_a_script_but_does_not_serve_it(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend))
    listing = get(server, "/listed/")
    assert listing.status_code == 200
    assert 'href="b.php"' in listing.text and 'href="b.txt"' in listing.text
    assert_refused(server, "/listed/b.php")
    assert get(server, "/listed/b.txt").content == b"text\n"


def test_script_mode_serves_files_that_are_not_scripts(frontd: Start, tree: Path, backend: CaptureServer) -> None:
    server = frontd(site(tree, backend))
    png = get(server, "/app/img/a.png")
    assert png.status_code == 200, png.text
    assert png.content == PNG
    assert png.headers["content-type"] == "image/png"
    assert "etag" in png.headers
    head = get(server, "/app/img/a.png", "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(PNG))
    conditional = requests.get(server.url("/app/img/a.png"), timeout=10,
                               headers={**HOST, "If-None-Match": png.headers["etag"]})
    assert conditional.status_code == 304
    css = get(server, "/app/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # Static files take GET and HEAD only: a POST to a picture is not sent to php-fpm.
    assert get(server, "/app/img/a.png", "POST").status_code == 405
    # Not a script by the route's (case-sensitive) extensions, but a script by name: refused,
    # as is another route's script extension.
    assert_refused(server, "/app/Shout.PHP")
    assert_refused(server, "/app/run.py")
    # Path info after a file that is not a script stays a 404 (CVE-2019-11043's setup).
    for path in ("/app/img/a.png/x.php", "/app/img/a.png/", "/app/img/missing.png"):
        assert get(server, path).status_code == 404, path
    assert backend.connections == 0
    # The scripts still run.
    assert get(server, "/app/").status_code == 200
    assert get(server, "/app/index.php").status_code == 200
    assert [r.env["SCRIPT_FILENAME"] for r in backend.requests] == [f"{tree}/app/index.php"] * 2


def test_without_a_script_route_php_is_a_plain_file(frontd: Start, tree: Path) -> None:
    # The extensions come from the file's script-mode routes: a site with none serves .php
    # files like any other (they are not scripts anywhere here).
    server = frontd(f'[[vhost]]\nnames = ["site.test"]\nroot = "{tree}/www"\n')
    response = get(server, "/a.php")
    assert response.status_code == 200 and response.content == SOURCE
