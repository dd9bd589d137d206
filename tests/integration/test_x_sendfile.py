"""X-Sendfile and X-Accel-Redirect from CGI scripts and proxied backends (docs/gateways.md).

One CGI shell script answers with the case file the query names (head, blank line, body) and
leaves a mark once it has written it all, so that a test sees whether the script ran to its
end. The files it names lie in `private/` (the route's x_sendfile directory) and `outside/`.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, start_frontd, wait_for
from tests.http_client import RawClient
from tests.integration.proxy_backend import Backends, Received, Reply

SCRIPT = """#!/bin/sh
cat "{cases}/$QUERY_STRING"
touch "{marks}/$QUERY_STRING"
"""
REPORT = bytes(range(256)) * 400  # 100 KiB, a pattern that shows where a range starts


@dataclass
class Site:
    server: Frontd
    root: Path
    private: Path
    outside: Path
    cases: Path
    marks: Path

    def case(self, name: str, head: str, body: bytes = b"") -> str:
        """A CGI answer for the script to give: `head` lines ("\\n"-separated), then `body`."""
        (self.cases / name).write_bytes(head.encode() + b"\n\n" + body)
        return name

    def get(self, prefix: str, case: str, method: str = "GET", **kwargs: object) -> requests.Response:
        return requests.request(method, self.server.url(f"{prefix}run.sh?{case}"), timeout=30,
                                **kwargs)  # type: ignore[arg-type]

    def error_lines(self, needle: str) -> list[str]:
        return [line for line in self.server.errors().splitlines() if needle in line]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("xs")
    private, outside, cases, marks, cgi, www = (root / name for name in
                                                ("private", "outside", "cases", "marks", "cgi", "www"))
    for directory in (private, outside, cases, marks, cgi, www, private / "docs"):
        directory.mkdir()
    (private / "report.pdf").write_bytes(REPORT)
    (private / "notes.txt").write_text("notes\n")
    (private / "docs" / "a.txt").write_text("a\n")
    (private / "inner-link.pdf").symlink_to(private / "report.pdf")
    (outside / "secret.txt").write_text("secret\n")
    (private / "leak.txt").symlink_to(outside / "secret.txt")
    (private / "out").symlink_to(outside)
    os.mkfifo(private / "fifo")
    (private / "loop").symlink_to(private / "loop")
    (www / "hello.txt").write_text("hello\n")
    script = cgi / "run.sh"
    script.write_text(SCRIPT.format(cases=cases, marks=marks))
    script.chmod(0o755)
    server = start_frontd(root, f"""
[[vhost]]
names = ["localhost", "127.0.0.1"]
default = true
root = "{www}"

  [[vhost.route]]
  prefix = "/cgi/"
  cgi = "{cgi}"
  x_sendfile = ["{private}"]
  headers = {{ "X-Route" = "cgi", "X-Removed" = "" }}

  [[vhost.route]]
  prefix = "/plain/"
  cgi = "{cgi}"

  [[vhost.route]]
  prefix = "/protected/"
  static = "{private}"
  internal = true
  headers = {{ "X-Route" = "protected", "X-Removed" = "" }}

  [[vhost.route]]
  prefix = "/files/"
  static = "{private}"
""")
    try:
        yield Site(server, root, private, outside, cases, marks)
    finally:
        server.stop()


def _etag(path: Path) -> str:
    st = path.stat()
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def test_the_file_is_sent_with_its_own_length_and_validators(site: Site) -> None:
    case = site.case("full", "Status: 200\nX-Sendfile: {}\nContent-Length: 11\nETag: \"app\"\nLast-Modified: "
                     "Thu, 01 Jan 1970 00:00:00 GMT\nContent-Disposition: attachment; filename=\"r.pdf\"\n"
                     "Cache-Control: private\nSet-Cookie: a=1\nSet-Cookie: b=2\nX-App: kept\nX-Removed: 1".format(
                         site.private / "report.pdf"), b"THE-APP-BODY")
    response = site.get("/cgi/", case)
    assert response.status_code == 200
    assert response.content == REPORT  # the application's body discarded
    headers = response.headers
    assert headers["Content-Length"] == str(len(REPORT))
    assert headers["Content-Type"] == "application/pdf"  # from the extension
    assert headers["ETag"] == _etag(site.private / "report.pdf")
    assert headers["Last-Modified"] == email.utils.formatdate((site.private / "report.pdf").stat().st_mtime,
                                                               usegmt=True)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == 'attachment; filename="r.pdf"'
    assert headers["Cache-Control"] == "private"
    assert headers["X-App"] == "kept"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert "X-Sendfile" not in headers
    # The route's output rules see the answer as sent: the application's fields included.
    assert headers["X-Route"] == "cgi" and "X-Removed" not in headers
    # The script was not cut short: it wrote all it had and went on to its last command.
    assert (site.marks / case).exists()


def test_the_applications_content_type_wins(site: Site) -> None:
    case = site.case("ctype", f"Content-Type: application/x-report\nX-Sendfile: {site.private / 'report.pdf'}")
    response = site.get("/cgi/", case)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-report"


def test_ranges_and_if_range(site: Site) -> None:
    case = site.case("range", f"Content-Type: application/pdf\nX-Sendfile: {site.private / 'report.pdf'}")
    response = site.get("/cgi/", case, headers={"Range": "bytes=300-309"})
    assert response.status_code == 206
    assert response.content == REPORT[300:310]
    assert response.headers["Content-Range"] == f"bytes 300-309/{len(REPORT)}"
    assert response.headers["Content-Type"] == "application/pdf"
    etag = _etag(site.private / "report.pdf")
    same = site.get("/cgi/", case, headers={"Range": "bytes=0-0", "If-Range": etag})
    assert same.status_code == 206 and same.content == REPORT[:1]
    changed = site.get("/cgi/", case, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == REPORT
    several = site.get("/cgi/", case, headers={"Range": "bytes=0-9,50000-50009"})
    assert several.status_code == 206
    assert several.headers["Content-Type"].startswith("multipart/byteranges; boundary=")


def test_conditionals_give_304_with_the_applications_fields(site: Site) -> None:
    case = site.case("cond", "Content-Type: text/plain\nCache-Control: private\n"
                     f"X-Sendfile: {site.private / 'notes.txt'}")
    first = site.get("/cgi/", case)
    assert first.status_code == 200 and first.text == "notes\n"
    by_etag = site.get("/cgi/", case, headers={"If-None-Match": first.headers["ETag"]})
    assert by_etag.status_code == 304 and by_etag.content == b""
    assert by_etag.headers["ETag"] == first.headers["ETag"]
    assert by_etag.headers["Cache-Control"] == "private"
    by_date = site.get("/cgi/", case, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert by_date.status_code == 304


def test_head_and_post(site: Site) -> None:
    case = site.case("head", f"Content-Type: text/plain\nX-Sendfile: {site.private / 'notes.txt'}", b"app body")
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=10) as sock:
        client = RawClient(sock)
        client.send(f"HEAD /cgi/run.sh?{case} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = client.read("HEAD")
        assert head.status == 200 and head.headers["content-length"] == "6" and head.body == b""
        # The same connection carries on: nothing of the file or the application's body was sent.
        client.send(f"GET /cgi/run.sh?{case} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert client.read().body == b"notes\n"
    posted = site.get("/cgi/", case, "POST", data=b"x" * 1000)
    assert posted.status_code == 200 and posted.text == "notes\n"


def test_a_symlink_that_stays_inside_is_followed(site: Site) -> None:
    case = site.case("inner", f"Content-Type: application/pdf\nX-Sendfile: {site.private / 'inner-link.pdf'}")
    response = site.get("/cgi/", case)
    assert response.status_code == 200 and response.content == REPORT


@pytest.mark.parametrize(("name", "path", "why"), [
    ("outside", "{outside}/secret.txt", "outside the route's x_sendfile directories"),
    ("dotdot", "{private}/../outside/secret.txt", "not a normalised path"),
    ("dot", "{private}/./notes.txt", "not a normalised path"),
    ("slashes", "{private}//notes.txt", "not a normalised path"),
    ("trailing", "{private}/docs/", "not a normalised path"),
    ("relative", "private/notes.txt", "not an absolute path"),
    ("symlink", "{private}/leak.txt", "outside the route's x_sendfile directories (it resolves to"),
    ("symlinked-dir", "{private}/out/secret.txt", "outside the route's x_sendfile directories (it resolves to"),
    ("directory", "{private}/docs", "not a regular file"),
    ("fifo", "{private}/fifo", "not a regular file"),
    ("loop", "{private}/loop", "cannot open it: Too many levels of symbolic links"),
    ("etc", "/etc/passwd", "outside the route's x_sendfile directories"),
])
def test_refused_paths_are_502_with_one_log_line(site: Site, name: str, path: str, why: str) -> None:
    path = path.format(private=site.private, outside=site.outside)
    case = site.case(f"refused-{name}", f"Content-Type: text/plain\nX-Sendfile: {path}", b"app body")
    response = site.get("/cgi/", case)
    assert response.status_code == 502
    assert b"secret" not in response.content and b"app body" not in response.content
    assert "Traceback" not in response.text
    needle = f"X-Sendfile {path!r} refused: {why}"
    wait_for(lambda: site.error_lines(needle), 10, f"the log line {needle!r}")
    lines = site.error_lines(needle)
    assert len(lines) == 1 and "route /cgi/" in lines[0] and "Traceback" not in site.server.errors()


def test_an_unreadable_file_is_refused(site: Site) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    locked = site.private / "locked.txt"
    locked.write_text("locked\n")
    locked.chmod(0)
    case = site.case("locked", f"Content-Type: text/plain\nX-Sendfile: {locked}")
    assert site.get("/cgi/", case).status_code == 502
    wait_for(lambda: site.error_lines(f"X-Sendfile {str(locked)!r} refused: cannot open it"), 10, "the log line")


def test_a_missing_file_inside_the_directories_is_404(site: Site) -> None:
    # lighttpd answers 404 too: the application named a file that is not there (yet).
    case = site.case("missing", f"Content-Type: text/plain\nX-Sendfile: {site.private / 'gone.pdf'}")
    assert site.get("/cgi/", case).status_code == 404
    under_a_file = site.case("missing2", f"Content-Type: text/plain\nX-Sendfile: {site.private / 'notes.txt'}/x")
    assert site.get("/cgi/", under_a_file).status_code == 404


def test_without_x_sendfile_the_fields_reach_the_client(site: Site) -> None:
    path = site.outside / "secret.txt"
    case = site.case("plain", f"Content-Type: text/plain\nX-Sendfile: {path}\nX-Accel-Redirect: /protected/notes.txt",
                     b"the app's own body\n")
    response = site.get("/plain/", case)
    assert response.status_code == 200
    assert response.text == "the app's own body\n"
    assert response.headers["X-Sendfile"] == str(path)
    assert response.headers["X-Accel-Redirect"] == "/protected/notes.txt"


def test_a_long_application_body_is_cut_and_the_file_still_sent(site: Site) -> None:
    case = site.case("long", f"Content-Type: text/plain\nX-Sendfile: {site.private / 'notes.txt'}", b"z" * (4 << 20))
    response = site.get("/cgi/", case)
    assert response.status_code == 200 and response.text == "notes\n"
    wait_for(lambda: site.error_lines("the body of an X-Sendfile answer not read to its end; aborted"), 10,
             "the log line of the aborted script")


def test_x_accel_redirect_is_served_by_an_internal_static_route(site: Site) -> None:
    case = site.case("accel", "Content-Type: application/x-report\nContent-Disposition: attachment\n"
                     "X-Removed: 1\nX-Accel-Redirect: /protected/report.pdf", b"app body")
    response = site.get("/cgi/", case, headers={"Range": "bytes=0-3"})
    assert response.status_code == 206 and response.content == REPORT[:4]
    assert response.headers["Content-Type"] == "application/x-report"
    assert response.headers["Content-Disposition"] == "attachment"
    assert "X-Accel-Redirect" not in response.headers
    assert response.headers["X-Route"] == "protected" and "X-Removed" not in response.headers
    head = site.get("/cgi/", case, "HEAD")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(REPORT))
    # The internal route is not there for clients.
    assert requests.get(site.server.url("/protected/report.pdf"), timeout=10).status_code == 404


def test_x_accel_redirect_elsewhere_is_refused(site: Site) -> None:
    to_public = site.case("accel-public", "Content-Type: text/plain\nX-Accel-Redirect: /files/notes.txt")
    assert site.get("/cgi/", to_public).status_code == 502
    wait_for(lambda: site.error_lines("X-Accel-Redirect to '/files/notes.txt' (from route /cgi/): not a static route "
                                             'with internal = true, client: 127.0.0.1, request: "GET /cgi/run.sh?'),
             10, "the log line")
    not_local = site.case("accel-url", "Content-Type: text/plain\nX-Accel-Redirect: http://example.test/x")
    assert site.get("/cgi/", not_local).status_code == 502
    both = site.case("both", f"Content-Type: text/plain\nX-Accel-Redirect: /protected/notes.txt\n"
                     f"X-Sendfile: {site.private / 'notes.txt'}")
    assert site.get("/cgi/", both).status_code == 502
    wait_for(lambda: site.error_lines("more than one file field in the answer (x-accel-redirect, x-sendfile)"),
             10, "the log line")


# -- proxy routes -------------------------------------------------------------------------------


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def test_proxy_route(frontd: Callable[..., Frontd], backends: Backends, tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    (private / "data.bin").write_bytes(REPORT)

    def app(backend: object, req: Received, reply: Reply) -> None:
        if req.target == "/big-body":
            body = b"y" * (1 << 20)
        else:
            body = b"proxied app body"
        reply.send(200, body, [("content-type", "application/octet-stream"), ("x-sendfile", str(private / "data.bin")),
                               ("etag", '"app"'), ("cache-control", "no-store")])

    backend = backends.start(app)
    server = frontd(f"""
[[vhost]]
names = ["example.test"]
default = true
  [[vhost.route]]
  prefix = "/"
  proxy = "{backend.url}"
  x_sendfile = ["{private}"]
""")
    with requests.Session() as session:
        for _ in range(3):
            response = session.get(server.url("/dl"), timeout=10)
            assert response.status_code == 200 and response.content == REPORT
            assert response.headers["ETag"] == _etag(private / "data.bin")
            assert response.headers["Cache-Control"] == "no-store"
        ranged = session.get(server.url("/dl"), headers={"Range": "bytes=-5"}, timeout=10)
        assert ranged.status_code == 206 and ranged.content == REPORT[-5:]
        # The answers' bodies were read away and the kept-alive connection reused each time.
        assert backend.accepted == 1
        cut = session.get(server.url("/big-body"), timeout=10)
        assert cut.status_code == 200 and hashlib.sha256(cut.content).digest() == hashlib.sha256(REPORT).digest()
        # One whose body goes on past the limit is closed instead: the next request needs another.
        assert session.get(server.url("/dl"), timeout=10).content == REPORT
        assert backend.accepted == 2
    wait_for(lambda: "X-Sendfile answer not read to its end; closed" in server.errors(), 10, "the log line")
