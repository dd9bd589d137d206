"""Site rules at the socket: redirect routes, [[vhost.rewrite]], try_files and error_pages."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.integration.gateway_backends import Answer, CaptureServer, Captured
from tests.integration.proxy_backend import Backend, Received, Reply

Start = Callable[..., Frontd]


def get(server: Frontd, path: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("allow_redirects", False)
    return requests.get(server.url(path), timeout=10, **kwargs)  # type: ignore[arg-type]


def raw_status_and_location(server: Frontd, target: bytes, host: bytes = b"site.test") -> tuple[bytes, bytes | None]:
    answer = server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    location = next((line.split(b": ", 1)[1] for line in head[1:] if line.lower().startswith(b"location:")), None)
    return head[0].split(b" ")[1], location


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer("fastcgi")
    yield server
    server.stop()


# -- redirect routes -------------------------------------------------------------------------------

REDIRECTS = """
[[vhost]]
names = ["site.test"]
root = "{root}"

  [[vhost.route]]
  prefix = "/old/"
  redirect = "https://example.com/new/"

  [[vhost.route]]
  prefix = "/moved/"
  redirect = "/"
  status = 308

  [[vhost.route]]
  prefix = "/same-host/"
  redirect = "https://$host/x"
  status = 302
"""


def test_redirect_route_appends_rest_and_query(frontd: Start, site: Path) -> None:
    server = frontd(REDIRECTS.format(root=site))
    response = get(server, "/old/a/b%20c.html?x=1&y=2", headers={"Host": "site.test"})
    assert response.status_code == 301
    assert response.headers["location"] == "https://example.com/new/a/b%20c.html?x=1&y=2"
    assert get(server, "/old").headers["location"] == "https://example.com/new/"
    moved = requests.post(server.url("/moved/page"), data=b"kept", timeout=10, allow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (308, "/page")
    # The Host appears only where the config writes $host.
    assert get(server, "/same-host/p", headers={"Host": "site.test"}).headers["location"] == "https://site.test/x/p"
    assert get(server, "/old/p", headers={"Host": "evil.test"}).headers["location"] == "https://example.com/new/p"


@pytest.mark.parametrize("target", [b"/moved//evil.test", b"/moved//evil.test/", b"/moved/%2F%2Fevil.test",
                                    b"/moved/\\evil.test", b"/moved/%5Cevil.test", b"/moved/%0d%0aSet-Cookie:%20x=1",
                                    b"/moved/.//evil.test", b"/moved/..//evil.test"])
def test_redirect_route_is_no_open_redirect(frontd: Start, site: Path, target: bytes) -> None:
    server = frontd(REDIRECTS.format(root=site))
    status, location = raw_status_and_location(server, target)
    if location is None:
        assert status in (b"400", b"404"), (target, status)  # refused, or left the prefix
    else:
        assert status == b"308"
        assert location.startswith(b"/") and not location.startswith((b"//", b"/\\")), location
        assert b"\r" not in location and b"\n" not in location and b"\\" not in location
    # The server is still there for the next request.
    assert get(server, "/hello.txt").status_code == 200


# -- rewrites --------------------------------------------------------------------------------------

def rewrite_config(root: Path, capture: CaptureServer, rules: str) -> str:
    return f"""
[[vhost]]
names = ["site.test"]
root = "{root}"
{rules}

  [[vhost.route]]
  prefix = "/app/"
  fastcgi = "{capture.address}"
"""


def test_internal_rewrite_merges_queries_and_keeps_request_uri(frontd: Start, site: Path,
                                                               capture: CaptureServer) -> None:
    server = frontd(rewrite_config(site, capture, """
  [[vhost.rewrite]]
  match = '^/blog/(\\d+)$'
  to = "/app/index.php?p=$1"

  [[vhost.rewrite]]
  match = '^/tag/(?P<tag>[^/]+)/(.*)$'
  to = "/app/tags/$2?t=${tag}"

  [[vhost.rewrite]]
  match = '^/plain/(.*)$'
  to = "/app/$1"

  [[vhost.rewrite]]
  match = '^/drop/'
  to = "/app/dropped?"
"""))
    response = get(server, "/blog/42?utm=x")
    assert response.status_code == 200, response.text
    env = response.json()["env"]
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["REQUEST_URI"]) == ("/index.php", "p=42&utm=x", "/blog/42?utm=x")
    # Groups are decoded text, encoded again where they land: "&", "=" and "?" in a query value,
    # "?" and "%" in a path.
    env = get(server, "/tag/a%26b%3Dc%3F/x%3Fy%25z").json()["env"]
    assert env["QUERY_STRING"] == "t=a%26b%3Dc%3F"
    assert env["PATH_INFO"] == "/tags/x?y%z"
    assert env["REQUEST_URI"] == "/tag/a%26b%3Dc%3F/x%3Fy%25z"
    # Without a query in `to`, the client's is kept; a trailing "?" drops it.
    assert get(server, "/plain/p?a=1").json()["env"]["QUERY_STRING"] == "a=1"
    assert get(server, "/drop/x?a=1").json()["env"]["QUERY_STRING"] == ""
    # A path no rule matches is routed as it is.
    assert get(server, "/hello.txt").text == "hello\n"


def test_external_rewrite_is_no_open_redirect(frontd: Start, site: Path, capture: CaptureServer) -> None:
    server = frontd(rewrite_config(site, capture, """
  [[vhost.rewrite]]
  match = '^/x(.*)$'
  to = "/$1"
  status = 301

  [[vhost.rewrite]]
  match = '^/post/(\\d+)$'
  to = "https://blog.example.com/p/$1?from=old"
  status = 302
"""))
    status, location = raw_status_and_location(server, b"/x/evil.test/?q=1")
    assert (status, location) == (b"301", b"/evil.test/?q=1")
    response = get(server, "/post/7?a=b", headers={"Host": "evil.test"})
    assert (response.status_code, response.headers["location"]) == (302, "https://blog.example.com/p/7?from=old&a=b")


def test_rewrite_loop_stops_at_ten_with_500(frontd: Start, site: Path, capture: CaptureServer) -> None:
    server = frontd(rewrite_config(site, capture, """
  [[vhost.rewrite]]
  match = '^/loop/(.*)$'
  to = "/loop/$1"
"""))
    response = get(server, "/loop/a")
    assert response.status_code == 500
    server.wait_error_log(r"500: rewrite vhost\[0\]\.rewrite\[0\]: more than 10 internal redirects")
    assert get(server, "/hello.txt").status_code == 200


def test_rewrite_cannot_leave_the_root(frontd: Start, tmp_path: Path, site: Path, capture: CaptureServer) -> None:
    (tmp_path / "secret.txt").write_text("outside\n")
    server = frontd(rewrite_config(site, capture, """
  [[vhost.rewrite]]
  match = '^/up/(.*)$'
  to = "/../$1"

  [[vhost.rewrite]]
  match = '^/enc/(.*)$'
  to = "/sub/%2e%2e/%2e%2e/$1"

  [[vhost.rewrite]]
  match = '^/dots/(.*)$'
  to = "/sub/$1"
"""))
    for path in ("/up/secret.txt", "/enc/secret.txt"):
        response = get(server, path)
        assert response.status_code == 400, path
        assert "outside" not in response.text
    # A group never holds a dot segment: the client's path was normalised before matching.
    response = get(server, "/dots/%2e%2e/%2e%2e/secret.txt")
    assert response.status_code in (400, 404) and "outside" not in response.text
    server.wait_error_log(r"400: rewrite vhost\[0\]\.rewrite\[0\]: '/\.\./secret\.txt'")


def test_rewrite_input_bound(frontd: Start, site: Path, capture: CaptureServer) -> None:
    server = frontd(rewrite_config(site, capture, """
  [[vhost.rewrite]]
  match = '^/(\\w+)-x$'
  to = "/app/x?n=$1"
"""))
    assert get(server, "/" + "a" * 2045 + "-x").status_code == 200  # 2048 characters: matched
    assert get(server, "/" + "a" * 2046 + "-x").status_code == 414
    server.wait_error_log(r"414: path of 2049 characters: rewrite rules match at most 2048")


# -- try_files (static) ----------------------------------------------------------------------------

def test_try_files_on_vhost_root(frontd: Start, site: Path, capture: CaptureServer) -> None:
    (site / "fallback.html").write_text("fallback\n")
    (site / "app.php").write_text("<?php echo 'secret source';\n")
    server = frontd(f"""
[[vhost]]
root = "{site}"
try_files = ["$uri", "$uri/", "/fallback.html"]

  [[vhost.route]]
  prefix = "/php/"
  fastcgi = "{capture.address}"
  root = "{site}"
  index = ["index.php"]

  [[vhost.route]]
  prefix = "/strict/"
  static = "{site}"
  try_files = ["$uri", "=404"]
""")
    assert get(server, "/hello.txt").text == "hello\n"
    assert get(server, "/sub").text == "<h1>sub</h1>\n"  # "$uri/": the directory's index
    assert get(server, "/no/such/page").text == "fallback\n"
    assert get(server, "/.htpasswd").text == "fallback\n"  # a hidden file is never "found"
    # An existing script named by $uri is found, and then refused by the static root: its
    # source is never sent (it runs only under its script-mode route).
    response = get(server, "/app.php")
    assert response.status_code == 403 and "secret source" not in response.text
    assert get(server, "/php/app.php").json()["env"]["SCRIPT_FILENAME"].endswith("/app.php")
    assert get(server, "/strict/hello.txt").text == "hello\n"
    assert get(server, "/strict/missing").status_code == 404


# -- error pages -----------------------------------------------------------------------------------

@pytest.fixture
def pages_site(site: Path) -> Path:
    (site / "errors").mkdir()
    (site / "errors" / "404.html").write_text("custom 404\n")
    (site / "errors" / "403.html").write_text("custom 403\n")
    (site / "errors" / "50x.html").write_text("custom 50x\n")
    (site / "empty").mkdir()
    return site


def pages_config(root: Path, tmp_path: Path) -> str:
    cgi = tmp_path / "cgi"
    cgi.mkdir(exist_ok=True)
    return f"""
[[vhost]]
root = "{root}"
error_pages = {{ 404 = "/errors/404.html", 403 = "/errors/403.html", 502 = "/errors/50x.html", 503 = "/errors/50x.html" }}

  [[vhost.route]]
  prefix = "/down/"
  fastcgi = "unix:{tmp_path}/nobody-listens.sock"

  [[vhost.route]]
  prefix = "/busy/"
  cgi = "{cgi}"
  max_processes = 1

  [[vhost.route]]
  prefix = "/broken/"
  static = "{root}"
  error_pages = {{ 404 = "/errors/missing-page.html" }}
"""


def test_error_pages_keep_the_original_status(frontd: Start, pages_site: Path, tmp_path: Path) -> None:
    server = frontd(pages_config(pages_site, tmp_path))
    for path, status, body in (("/nothing", 404, "custom 404\n"), ("/empty/", 403, "custom 403\n"),
                               ("/down/x", 502, "custom 50x\n")):
        response = get(server, path)
        assert (response.status_code, response.text) == (status, body), path
        assert response.headers["content-type"].startswith("text/html")
        # The page file's validators are not the failed resource's.
        assert not {"etag", "last-modified", "accept-ranges"} & {name.lower() for name in response.headers}
    # A status without a page gets the built-in one, with the error's own fields.
    response = requests.post(server.url("/nothing"), data=b"x" * 10, timeout=10)
    assert response.status_code == 405
    assert "405 Method Not Allowed" in response.text and "Allow" in response.headers
    # HEAD: the status and the page's length, no body.
    head = requests.head(server.url("/nothing"), timeout=10)
    assert (head.status_code, head.headers["content-length"]) == (404, str(len("custom 404\n")))
    # Conditional fields of the request do not turn the page into a 304.
    response = get(server, "/nothing", headers={"If-Modified-Since": "Sun, 06 Nov 2050 08:49:37 GMT"})
    assert (response.status_code, response.text) == (404, "custom 404\n")
    server.wait_error_log(r"404: .*\(error page /errors/404\.html\)")


def test_error_page_for_503(frontd: Start, pages_site: Path, tmp_path: Path) -> None:
    # The only CGI slot is held by a script that waits for a file: the next request meets a full
    # table, a 503.
    cgi = tmp_path / "cgi"
    cgi.mkdir()
    gate, started = tmp_path / "gate", tmp_path / "started"
    (cgi / "wait.sh").write_text(f"#!/bin/sh\n: > {started}\nwhile [ ! -e {gate} ]; do sleep 0.02; done\n"
                                 "printf 'Content-Type: text/plain\\r\\n\\r\\ndone'\n")
    os.chmod(cgi / "wait.sh", 0o755)
    server = frontd(pages_config(pages_site, tmp_path))
    first: list[requests.Response] = []
    thread = threading.Thread(target=lambda: first.append(get(server, "/busy/wait.sh")))
    thread.start()
    try:
        wait_for(started.exists, 10, "the first script to start")
        response = get(server, "/busy/wait.sh")
        assert (response.status_code, response.text) == (503, "custom 50x\n")
    finally:
        gate.write_text("")
        thread.join(20)
    assert first and first[0].text == "done"


def test_failing_error_page_falls_back_to_built_in(frontd: Start, pages_site: Path, tmp_path: Path) -> None:
    server = frontd(pages_config(pages_site, tmp_path))
    response = get(server, "/broken/nothing")
    assert response.status_code == 404
    assert "<h1>404 Not Found</h1>" in response.text
    server.wait_error_log(r"error page /errors/missing-page\.html for 404 could not be served")
    # Still serving, and the vhost's pages still work.
    assert get(server, "/nothing").text == "custom 404\n"


def test_error_page_served_by_a_script(frontd: Start, pages_site: Path, capture: CaptureServer) -> None:
    server = frontd(f"""
[[vhost]]
root = "{pages_site}"
error_pages = {{ 404 = "/app/not-found" }}

  [[vhost.route]]
  prefix = "/app/"
  fastcgi = "{capture.address}"
""")
    response = requests.post(server.url("/missing?x=1"), data=b"body", timeout=10)
    assert response.status_code == 405  # static POST: no page for 405
    response = get(server, "/missing?x=1")
    assert response.status_code == 404
    env = response.json()["env"]
    assert (env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"]) == ("GET", "/not-found", "")
    assert env["REQUEST_URI"] == "/missing?x=1"


def status_app(server: CaptureServer, req: Captured) -> Answer:
    """Answers with the status named by the query ("s=404"), a Retry-After and a body."""
    status = req.env["QUERY_STRING"].partition("s=")[2] or "200"
    body = b"backend body " + status.encode()
    return Answer(b"Status: %s\r\nRetry-After: 7\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                  % (status.encode(), len(body), body))


def test_intercept_errors(frontd: Start, pages_site: Path) -> None:
    backend = CaptureServer("fastcgi", status_app)
    try:
        server = frontd(f"""
[[vhost]]
root = "{pages_site}"
error_pages = {{ 404 = "/errors/404.html", 503 = "/errors/50x.html" }}

  [[vhost.route]]
  prefix = "/caught/"
  fastcgi = "{backend.address}"
  intercept_errors = true

  [[vhost.route]]
  prefix = "/passed/"
  fastcgi = "{backend.address}"
""")
        # Without intercept_errors, the backend's own error response passes through.
        response = get(server, "/passed/x?s=404")
        assert (response.status_code, response.text) == (404, "backend body 404")
        # With it, statuses that have a page get the page, the original status and Retry-After.
        response = get(server, "/caught/x?s=404")
        assert (response.status_code, response.text) == (404, "custom 404\n")
        response = get(server, "/caught/x?s=503")
        assert (response.status_code, response.text, response.headers["retry-after"]) == (503, "custom 50x\n", "7")
        # Statuses without a page, and successes, pass through.
        assert get(server, "/caught/x?s=500").text == "backend body 500"
        assert get(server, "/caught/x?s=200").text == "backend body 200"
        assert len(backend.requests) == 5
    finally:
        backend.stop()


def test_intercept_errors_on_a_proxy_route(frontd: Start, pages_site: Path) -> None:
    def app(backend: Backend, req: Received, reply: Reply) -> None:
        status = int(req.target.partition("s=")[2] or 200)
        reply.send(status, b"backend body %d" % status, [("WWW-Authenticate", 'Basic realm="x"')])

    backend = Backend(app)
    try:
        server = frontd(f"""
[[vhost]]
root = "{pages_site}"
error_pages = {{ 401 = "/errors/403.html", 502 = "/errors/50x.html" }}

  [[vhost.route]]
  prefix = "/api/"
  proxy = "http://{backend.address}"
  intercept_errors = true
""")
        response = get(server, "/api/x?s=401")
        assert (response.status_code, response.text) == (401, "custom 403\n")
        assert response.headers["www-authenticate"] == 'Basic realm="x"'
        assert get(server, "/api/x?s=404").text == "backend body 404"  # no page for 404: passed through
        # The connection of the intercepted response is not reused, and the route keeps working.
        wait_for(lambda: backend.closed >= 1, 10, "the intercepted response's connection to close")
        assert get(server, "/api/x?s=200").text == "backend body 200"
    finally:
        backend.stop()


def test_error_page_for_413_closes_the_connection(frontd: Start, pages_site: Path, capture: CaptureServer) -> None:
    (pages_site / "errors" / "413.html").write_text("too big\n")
    server = frontd(f"""
[limits]
max_body_size = 1000

[[vhost]]
root = "{pages_site}"
error_pages = {{ 413 = "/errors/413.html" }}

  [[vhost.route]]
  prefix = "/app/"
  fastcgi = "{capture.address}"
""")
    # A chunked body goes over the limit while the gateway reads it: frontd's own 413, the page,
    # and the connection closed after it (the rest of the body is not read as a request).
    chunk = b"x" * 800
    request = (b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3 + b"0\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = server.raw(request)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower() and body == b"too big\n"
    assert answer.count(b"HTTP/1.1 ") == 1
