"""Script mode (`root` on a fastcgi, scgi or uwsgi route) against a capture backend: what reaches
the backend, and what never does. PROTOCOLS.md §4, CVE-2019-11043 row: `/upload/a.jpg/x.php`
must not be sent to FastCGI unless `x.php`'s script file exists."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.integration.gateway_backends import CaptureServer, Captured, Answer, as_http, env_json

Start = Callable[..., Frontd]
HOST = {"Host": "app.test"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """index.php, a picture in upload/ (with PHP in it), a sub/ index, a script without an
    extension, and a .php symlink to the picture."""
    top = tmp_path / "root"
    (top / "upload").mkdir(parents=True)
    (top / "sub").mkdir()
    (top / "index.php").write_text("<?php echo 'index';\n")
    (top / "sub" / "index.php").write_text("<?php echo 'sub';\n")
    (top / "sub" / "index.html").write_text("static\n")
    (top / "upload" / "a.jpg").write_bytes(b"\xff\xd8<?php echo 'EXECUTED'; ?>")
    (top / "tool").write_text("#!/bin/sh\n")
    os.symlink("upload/a.jpg", top / "disguised.php")
    return Path(os.path.realpath(top))


@pytest.fixture
def backend() -> Iterator[Callable[..., CaptureServer]]:
    started: list[CaptureServer] = []

    def start(protocol: str = "fastcgi") -> CaptureServer:
        app: Callable[[CaptureServer, Captured], Answer] | None = None
        if protocol == "uwsgi":
            app = lambda s, r: as_http(env_json(s, r))  # noqa: E731
        server = CaptureServer(protocol, app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def config(protocol: str, address: str, root: Path, extra: str) -> str:
    return f"""
[[vhost]]
names = ["app.test"]

  [[vhost.route]]
  prefix = "/app/"
  {protocol} = "{address}"
  root = "{root}"
  {extra}
"""


@pytest.mark.parametrize("protocol", ["fastcgi", "scgi", "uwsgi"])
def test_picture_with_php_after_it_never_reaches_the_backend(frontd: Start, backend: Callable[..., CaptureServer],
                                                              root: Path, protocol: str) -> None:
    capture = backend(protocol)
    server = frontd(config(protocol, capture.address, root, 'index = ["index.php"]'))
    for path in ("/app/upload/a.jpg/x.php", "/app/upload/a.jpg/", "/app/disguised.php", "/app/disguised.php/x"):
        response = requests.get(server.url(path), headers=HOST, timeout=10)
        assert response.status_code == 404, (path, response.text)
        assert "EXECUTED" not in response.text
    # Files that are not scripts, with nothing after them, are static files: their bytes, never
    # the backend's output.
    picture = requests.get(server.url("/app/upload/a.jpg"), headers=HOST, timeout=10)
    assert (picture.status_code, picture.content) == (200, b"\xff\xd8<?php echo 'EXECUTED'; ?>")
    assert picture.headers["content-type"] == "image/jpeg"
    tool = requests.get(server.url("/app/tool"), headers=HOST, timeout=10)
    assert (tool.status_code, tool.content) == (200, b"#!/bin/sh\n")
    server.wait_error_log(r"404: '/app/upload/a\.jpg/x\.php': script \S+/upload/a\.jpg does not end in \.php")
    # A script that does end in .php still runs, PATH_INFO and all.
    response = requests.get(server.url("/app/index.php/x"), headers=HOST, timeout=10)
    assert response.status_code == 200, response.text
    (req,) = capture.requests  # the requests above sent nothing, not even a connection
    assert capture.connections == 1
    env = req.env
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app/index.php", "/x")
    assert env["SCRIPT_FILENAME"] == f"{root}/index.php"


def test_index_and_directory_index(frontd: Start, backend: Callable[..., CaptureServer], root: Path) -> None:
    capture = backend()
    server = frontd(config("fastcgi", capture.address, root, 'index = ["index.html", "index.php"]'))
    # The default extensions come from every index name: .html and .php.
    assert requests.get(server.url("/app/"), headers=HOST, timeout=10).status_code == 200
    assert requests.get(server.url("/app/sub/"), headers=HOST, timeout=10).status_code == 200
    assert [r.env["SCRIPT_FILENAME"] for r in capture.requests] == [f"{root}/index.php",
                                                                   f"{root}/sub/index.html"]
    assert requests.get(server.url("/app/upload/a.jpg/x.php"), headers=HOST, timeout=10).status_code == 404
    assert len(capture.requests) == 2


def test_explicit_extensions_skip_index_names_that_do_not_match(frontd: Start, backend: Callable[..., CaptureServer],
                                                                root: Path) -> None:
    capture = backend()
    server = frontd(config("fastcgi", capture.address, root,
                           'index = ["index.html", "index.php"]\n  extensions = [".php"]'))
    assert requests.get(server.url("/app/sub/"), headers=HOST, timeout=10).status_code == 200
    # Not a script of this route: a static file (and .html is no script extension anywhere).
    page = requests.get(server.url("/app/sub/index.html"), headers=HOST, timeout=10)
    assert (page.status_code, page.text) == (200, "static\n")
    assert [r.env["SCRIPT_FILENAME"] for r in capture.requests] == [f"{root}/sub/index.php"]


@pytest.mark.parametrize("extra", ["", 'index = ["index"]', 'index = ["index.php"]\n  extensions = []'])
def test_any_file_without_index_extensions(frontd: Start, backend: Callable[..., CaptureServer], root: Path,
                                           extra: str) -> None:
    # fcgiwrap-style CGI directories: scripts without an extension; or an explicit empty list.
    capture = backend()
    server = frontd(config("fastcgi", capture.address, root, extra))
    assert requests.get(server.url("/app/tool/more"), headers=HOST, timeout=10).status_code == 200
    env = capture.requests[0].env
    assert (env["SCRIPT_FILENAME"], env["PATH_INFO"]) == (f"{root}/tool", "/more")
