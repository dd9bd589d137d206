"""A WordPress-like front controller on the real php-fpm, with one route and `try_files`.

`/2026/12/hello/` runs /index.php with REQUEST_URI=/2026/12/hello/, `/style.css` is sent as a
static file, an existing .php runs (never sent as source), and error pages are served by PHP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.interop.conftest import Peer, start_php_fpm

INDEX = """<?php
header('Content-Type: application/json');
if (isset($_GET['status'])) { http_response_code((int)$_GET['status']); }
echo json_encode(['script' => 'index', 'REQUEST_URI' => $_SERVER['REQUEST_URI'],
                  'SCRIPT_NAME' => $_SERVER['SCRIPT_NAME'], 'QUERY_STRING' => $_SERVER['QUERY_STRING'],
                  'METHOD' => $_SERVER['REQUEST_METHOD'], 'POST' => $_POST]);
"""
OTHER = """<?php
header('Content-Type: application/json');
echo json_encode(['script' => 'other', 'REQUEST_URI' => $_SERVER['REQUEST_URI']]);
"""


@pytest.fixture(scope="module")
def site(workdir: Path) -> Path:
    root = workdir / "wp"
    (root / "wp-content").mkdir(parents=True)
    (root / "index.php").write_text(INDEX)
    (root / "wp-login.php").write_text(OTHER)
    (root / "style.css").write_text("body { color: red }\n")
    (root / "wp-content" / "index.php").write_text("<?php echo 'content index';\n")
    (root / "404.php").write_text("<?php echo 'php says not found';\n")
    return Path(os.path.realpath(root))


@pytest.fixture(scope="module")
def server(peers: Callable[..., Peer], workdir: Path, site: Path, frontd_module: Callable[..., Frontd]) -> Frontd:
    fpm = start_php_fpm(peers, workdir, {"a": f"unix:{workdir}/php-tf.sock"})
    return frontd_module(f"""
[[vhost]]
names = ["blog.test"]

  [[vhost.route]]
  prefix = "/"
  fastcgi = "{fpm.addresses[0]}"
  root = "{site}"
  index = ["index.php"]
  try_files = ["$uri", "$uri/", "/index.php?$query"]

[[vhost]]
names = ["plain.test"]
error_pages = {{ 404 = "/404.php" }}

  [[vhost.route]]
  prefix = "/"
  fastcgi = "{fpm.addresses[0]}"
  root = "{site}"
  index = ["index.php"]
""")


def get(server: Frontd, path: str, **kwargs: object) -> requests.Response:
    return requests.get(server.url(path), headers={"Host": "blog.test"}, timeout=20,  # type: ignore[arg-type]
                        allow_redirects=False, **kwargs)


def test_pretty_url_runs_the_front_controller(server: Frontd) -> None:
    response = get(server, "/2026/12/hello/")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["script"] == "index"
    assert report["REQUEST_URI"] == "/2026/12/hello/"
    assert report["SCRIPT_NAME"] == "/index.php"
    report = get(server, "/2026/12/hello/?replytocom=5").json()
    assert (report["REQUEST_URI"], report["QUERY_STRING"]) == ("/2026/12/hello/?replytocom=5", "replytocom=5")


def test_post_to_a_pretty_url_keeps_method_and_body(server: Frontd) -> None:
    response = requests.post(server.url("/wp-comments/post"), headers={"Host": "blog.test"},
                             data={"comment": "hi"}, timeout=20)
    report = response.json()
    assert (report["METHOD"], report["POST"], report["REQUEST_URI"]) == ("POST", {"comment": "hi"}, "/wp-comments/post")


def test_static_file_is_sent_as_a_file(server: Frontd) -> None:
    response = get(server, "/style.css")
    assert (response.status_code, response.text) == (200, "body { color: red }\n")
    assert response.headers["content-type"].startswith("text/css")
    assert "etag" in response.headers  # the static handler's answer, not PHP's


def test_existing_php_is_run_never_sent(server: Frontd) -> None:
    response = get(server, "/wp-login.php")
    assert response.status_code == 200
    assert "<?php" not in response.text
    assert json.loads(response.text) == {"script": "other", "REQUEST_URI": "/wp-login.php"}
    # A directory with an index script runs it ("$uri/").
    assert get(server, "/wp-content/").text == "content index"


def test_backend_error_status_passes_through(server: Frontd) -> None:
    response = get(server, "/anything?status=404")
    assert response.status_code == 404
    assert response.json()["script"] == "index"


def test_error_page_served_by_php_with_the_original_status(server: Frontd) -> None:
    response = requests.get(server.url("/missing.php"), headers={"Host": "plain.test"}, timeout=20)
    assert (response.status_code, response.text) == (404, "php says not found")
    # A dot file is never tried: on the blog the front controller answers instead.
    assert get(server, "/.hidden.php").json()["script"] == "index"
