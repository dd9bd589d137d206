"""php-fpm behind frontd in script mode (`root` and `index`), as nginx users run it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.interop.checks import RAMP_10_MIB_SHA256, GatewayPeerChecks
from tests.interop.conftest import (
    PEERS,
    Deployment,
    Peer,
    free_port,
    gateway_config,
    parse_output,
    start_php_fpm,
)

ROOT = os.path.realpath(PEERS / "php")
ENDPOINTS = {"info": "info.php", "echo": "echo.php", "status": "status.php", "slow": "slow.php", "big": "big.php"}


@pytest.fixture(scope="module")
def fpm(peers: Callable[..., Peer], workdir: Path) -> Peer:
    return start_php_fpm(peers, workdir, {"a": f"unix:{workdir}/php-a.sock", "b": f"127.0.0.1:{free_port()}",
                                          "k": f"unix:{workdir}/php-k.sock"})


@pytest.fixture(scope="module")
def deploy(fpm: Peer, workdir: Path, frontd_module: Callable[..., Frontd]) -> Deployment:
    a, b, k = fpm.addresses
    server = frontd_module(gateway_config("fastcgi", a, b, workdir, root=ROOT, index='["index.php"]', keep=k))
    return Deployment(server, "fastcgi", ENDPOINTS, script_mode=True, big_sha256=RAMP_10_MIB_SHA256)


class TestPHPFPM(GatewayPeerChecks):
    def test_server_variables_as_behind_nginx(self, deploy: Deployment) -> None:
        response = deploy.request("GET", "a", "info", "/extra/path", params={"x": "1", "y": "two words"})
        info = parse_output(response.content)
        # What nginx's fastcgi_split_path_info + fastcgi_params give a PHP script.
        assert info["SCRIPT_NAME"] == "/one/info.php"
        assert info["SCRIPT_FILENAME"] == f"{ROOT}/info.php"
        assert info["PATH_INFO"] == "/extra/path"
        assert info["QUERY_STRING"] == "x=1&y=two+words"
        assert info["REQUEST_METHOD"] == "GET"
        assert info["REQUEST_URI"] == "/one/info.php/extra/path?x=1&y=two+words"
        assert info["PHP_SELF"] == "/one/info.php/extra/path"
        assert info["DOCUMENT_ROOT"] == ROOT
        assert info["PATH_TRANSLATED"] == f"{ROOT}/extra/path"
        assert info["SERVER_NAME"] == "a.test"
        assert info["SERVER_PORT"] == str(deploy.server.port)
        assert info["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert info["GATEWAY_INTERFACE"] == "CGI/1.1"
        assert info["REDIRECT_STATUS"] == "200"
        assert info["REMOTE_ADDR"] == "127.0.0.1"
        assert info["GET"] == {"x": "1", "y": "two words"}

    def test_post_fields(self, deploy: Deployment) -> None:
        response = deploy.request("POST", "b", "info", data={"name": "frontd", "list[]": ["1", "2"]})
        info = parse_output(response.content)
        assert info["REQUEST_METHOD"] == "POST"
        assert info["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
        assert info["POST"] == {"name": "frontd", "list": ["1", "2"]}

    def test_uploaded_file(self, deploy: Deployment) -> None:
        content = os.urandom(300_000)
        response = deploy.request("POST", "a", "info", data={"title": "upload"},
                                  files={"doc": ("report.bin", content, "application/octet-stream")})
        info = parse_output(response.content)
        assert info["POST"] == {"title": "upload"}
        assert info["FILES"] == {"doc": {"name": "report.bin", "size": len(content), "error": 0,
                                         "sha256": hashlib.sha256(content).hexdigest()}}

    def test_directory_index(self, deploy: Deployment) -> None:
        response = deploy.request("GET", "a", "sub/")
        assert response.status_code == 200
        assert response.text == "index of sub: /one/sub/index.php\n"

    def test_missing_script_is_404_without_asking_php(self, deploy: Deployment, workdir: Path) -> None:
        for path in ("missing.php", "missing.php/x", "nothere/info.php"):
            assert deploy.request("GET", "b", path).status_code == 404
        # php-fpm logs every request it gets: none of these reached it.
        assert deploy.request("GET", "b", "info").status_code == 200
        log = (workdir / "php-b.access.log").read_text()
        assert "missing" not in log and "nothere" not in log
        assert "Primary script unknown" not in deploy.server.errors()

    def test_cve_2019_11043_path_split(self, deploy: Deployment) -> None:
        # nginx's split regex stops at %0a and left PATH_INFO empty: php-fpm underflowed. frontd
        # either refuses the control character or passes SCRIPT_NAME + PATH_INFO = the path.
        host, prefix = deploy.routes["a"]
        target = f"{prefix}info.php/x%0ay.php?" + "Q" * 1700
        response = requests.get(deploy.server.url(target), headers={"Host": host}, timeout=10)
        if response.status_code != 400:
            info = parse_output(response.content)
            assert info["SCRIPT_NAME"] + info["PATH_INFO"] == f"{prefix}info.php/x\ny.php"

    def test_non_php_file_is_not_executed(self, deploy: Deployment, workdir: Path) -> None:
        # The first existing file is the script: a picture with PHP in it, with ".php" after it,
        # is found as the picture, which does not end in .php (the route's index gives its
        # extensions): a 404 from frontd, and php-fpm (its security.limit_extensions would
        # answer 403) never hears of it (CVE-2019-11043's setup).
        response = deploy.request("GET", "a", "picture.jpg/x.php")
        assert "EXECUTED" not in response.text
        assert response.status_code == 404
        # The picture itself is a static file: its bytes as they are, never PHP's output.
        response = deploy.request("GET", "a", "picture.jpg")
        assert response.status_code == 200
        assert response.content == (PEERS / "php" / "picture.jpg").read_bytes()
        assert response.headers["content-type"] == "image/jpeg"
        assert deploy.request("GET", "a", "info").status_code == 200
        assert "picture" not in (workdir / "php-a.access.log").read_text()
        assert "Access to the script" not in deploy.server.errors()

    def test_php_warnings_reach_the_error_log(self, deploy: Deployment) -> None:
        deploy.request("GET", "a", "warn.php")
        deploy.server.wait_error_log(r"fastcgi unix:\S+php-a\.sock stderr: .*frontd-interop-warning")

    def test_keepalive_pool_survives_worker_recycling(self, deploy: Deployment) -> None:
        # FCGI_KEEP_CONN with php-fpm, whose only worker of pool "k" exits every 3 requests: a
        # pooled connection it closed is detected or retried, never a client-visible error.
        session = requests.Session()
        for i in range(12):
            body = {"n": str(i)} if i % 2 else None
            response = session.request("POST" if body else "GET", deploy.server.url("/keep/info.php"),
                                       data=body, headers={"Host": "k.test"}, timeout=10)
            assert response.status_code == 200, (i, response.text)
            info = parse_output(response.content)
            assert info["peer"] == "k"
            assert info["POST"] == (body or [])


BLOG_INDEX = b"<?php header('Content-Type: text/plain'); echo 'blog ', $_SERVER['SCRIPT_NAME'], \"\\n\";\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(100))


def test_gateways_md_php_fpm_example(fpm: Peer, workdir: Path, frontd_module: Callable[..., Frontd]) -> None:
    """docs/gateways.md's php-fpm example: a vhost root for the pictures and a `/` php route over
    the same directory. The route serves the pictures as static files and runs the PHP."""
    blog = workdir / "blog"
    (blog / "img").mkdir(parents=True)
    (blog / "index.php").write_bytes(BLOG_INDEX)
    (blog / "img" / "a.png").write_bytes(PNG)
    (blog / "style.css").write_text("body { margin: 0 }\n")
    a = fpm.addresses[0]
    server = frontd_module(f"""
[[vhost]]
names = ["blog.example.test"]
root = "{blog}"                 # static files (images, CSS) straight from disk

  [[vhost.route]]
  prefix = "/"
  fastcgi = "{a}"
  root = "{blog}"
  index = ["index.php"]
  timeout = "60s"
""", name="blog.conf")
    headers = {"Host": "blog.example.test"}

    def get(path: str) -> requests.Response:
        return requests.get(server.url(path), headers=headers, timeout=10)

    assert get("/").text == "blog /index.php\n"
    assert get("/index.php").text == "blog /index.php\n"
    png = get("/img/a.png")
    assert (png.status_code, png.headers["content-type"], png.content) == (200, "image/png", PNG)
    css = get("/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert get("/img/a.png/x.php").status_code == 404
    assert get("/img/missing.png").status_code == 404
    log = (workdir / "php-a.access.log").read_text()
    assert "a.png" not in log and "style.css" not in log
