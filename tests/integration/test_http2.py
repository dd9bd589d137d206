"""HTTP/2 at the front door: curl, nghttp, h2load and an h2 client against a real frontd.

One frontd serves the module: a plain listener, a TLS listener (ALPN h2) and a plain listener with
`http2 = true` (h2c with prior knowledge), in that order; vhost a.test with static files, CGI
scripts, SCGI, uwsgi and FastCGI capture backends and a proxy route. Tests that stop or reload
frontd start their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.errors
import h2.settings
import pytest
import trustme

from tests.conftest import Frontd, start_frontd, wait_for
from tests.integration.gateway_backends import CaptureServer
from tests.integration.h2_client import H2Client, Stream
from tests.integration.proxy_backend import Backends

TOP = ('listen = ["127.0.0.1:0", { address = "127.0.0.1:0", tls = true }, '
       '{ address = "127.0.0.1:0", http2 = true }]')
LIMITS = """
[limits]
send_timeout = "2s"
http2_max_streams = 32
max_header_size = "8KiB"
max_body_size = "1MiB"
"""
ENV_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "protocol=$SERVER_PROTOCOL"
echo "cookie=$HTTP_COOKIE"
echo "host=$HTTP_HOST"
echo "length=$CONTENT_LENGTH"
echo "body=$(wc -c | tr -d ' ')"
"""
# Answers once the test creates the file `go` beside the scripts; 504s if it never does.
SLOW_CGI = """#!/bin/sh
touch "$(dirname "$0")/started"
while [ ! -e "$(dirname "$0")/go" ]; do sleep 0.02; done
printf 'Content-Type: text/plain\\r\\n\\r\\nslow done\\n'
"""
NPH_CGI = """#!/bin/sh
printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nraw\\n'
"""


class Site:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.www = base / "www"
        self.cgi = base / "cgi"
        self.pki = base / "pki"
        self.ca_pem = self.pki / "ca.pem"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))


class H2Server:
    def __init__(self, server: Frontd, site: Site) -> None:
        self.server = server
        self.site = site
        ports = [int(p) for p in re.findall(r"listening on 127\.0\.0\.1:(\d+)", server.errors())]
        self.plain, self.tls, self.h2c = ports[:3]

    def client(self, **kw: object) -> H2Client:
        return H2Client(self.tls, context=self.site.client_context(), **kw)  # type: ignore[arg-type]

    def h2c_client(self, **kw: object) -> H2Client:
        return H2Client(self.h2c, **kw)  # type: ignore[arg-type]

    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(self.site.ca_pem),
                               "--resolve", f"a.test:{self.tls}:127.0.0.1", *args],
                              capture_output=True, text=True, timeout=30)

    def https(self, path: str) -> str:
        return f"https://a.test:{self.tls}{path}"


def build_site(base: Path) -> Site:
    site = Site(base)
    site.www.mkdir()
    (site.www / "hello.txt").write_text("hello\n")
    (site.www / "big.bin").write_bytes(bytes(range(256)) * 4096 * 4)  # 4 MiB
    site.cgi.mkdir()
    for name, text in (("env.cgi", ENV_CGI), ("slow.cgi", SLOW_CGI), ("nph-raw.cgi", NPH_CGI)):
        (site.cgi / name).write_text(text)
        (site.cgi / name).chmod(0o755)
    site.pki.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(site.ca_pem))
    leaf = ca.issue_cert("a.test")
    (site.pki / "a.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    (site.pki / "a.key").write_bytes(leaf.private_key_pem.bytes())
    return site


def site_config(site: Site, routes: str = "", limits: str = LIMITS) -> str:
    return (f'{limits}\n[[vhost]]\nnames = ["a.test"]\ndefault = true\nroot = "{site.www}"\n'
            f'tls_certificate = "{site.pki}/a.pem"\ntls_key = "{site.pki}/a.key"\nstatus = "/frontd-status"\n'
            f'[[vhost.route]]\nprefix = "/cgi-bin/"\ncgi = "{site.cgi}"\ntimeout = "1s"\n'
            f'[[vhost.route]]\nprefix = "/wait/"\ncgi = "{site.cgi}"\ntimeout = "20s"\n{routes}')


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def captures() -> Iterator[dict[str, CaptureServer]]:
    servers = {kind: CaptureServer(kind) for kind in ("fastcgi", "scgi", "uwsgi")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backends: Backends,
       captures: dict[str, CaptureServer]) -> Iterator[H2Server]:
    base = tmp_path_factory.mktemp("h2")
    site = build_site(base)
    echo = backends.start()
    routes = "".join(f'[[vhost.route]]\nprefix = "/{kind}/"\n{kind} = "{server.address}"\n'
                     for kind, server in captures.items())
    routes += f'[[vhost.route]]\nprefix = "/app/"\nproxy = "{echo.url}"\n'
    routes += '[[vhost.route]]\nprefix = "/dead/"\nproxy = "http://127.0.0.1:9"\n'
    server = start_frontd(base, site_config(site, routes), top=TOP)
    wait_for(lambda: len(re.findall(r"listening on", server.errors())) >= 3, what="three listeners")
    try:
        yield H2Server(server, site)
    finally:
        server.stop()


# -- real clients ----------------------------------------------------------------------------


def test_curl_over_tls_and_h2c_and_http11_beside_them(srv: H2Server) -> None:
    out = srv.curl("--http2", "-i", srv.https("/hello.txt"))
    assert out.stdout.startswith("HTTP/2 200") and out.stdout.endswith("hello\n"), out.stderr
    out = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", f"http://127.0.0.1:{srv.h2c}/hello.txt"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("HTTP/2 200") and out.stdout.endswith("hello\n"), out.stderr
    # The same h2c port still serves HTTP/1.1; the plain one without http2 is HTTP/1.1 only.
    for port in (srv.h2c, srv.plain):
        out = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{port}/hello.txt"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.startswith("HTTP/1.1 200"), out.stderr
    out = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", f"http://127.0.0.1:{srv.plain}/hello.txt"],
                         capture_output=True, text=True, timeout=30)
    assert not out.stdout.startswith("HTTP/2")
    # No h2c upgrade (RFC 9113 §3.1 deprecates it): curl's Upgrade: h2c gets HTTP/1.1.
    out = subprocess.run(["curl", "-sS", "-i", "--http2", f"http://127.0.0.1:{srv.h2c}/hello.txt"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("HTTP/1.1 200") and out.stdout.endswith("hello\n"), out.stderr
    srv.server.wait_access_log(r'"GET /hello.txt HTTP/2\.0" 200 6')


def test_nghttp_many_streams_on_one_connection(srv: H2Server) -> None:
    # nghttp checks no certificate; the default vhost answers for 127.0.0.1.
    base = f"https://127.0.0.1:{srv.tls}"
    out = subprocess.run(["nghttp", "-n", "-s", "-m", "10", "--timeout=20", f"{base}/hello.txt", f"{base}/big.bin",
                          f"{base}/nothing"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+(\S+) (\S+)$", out.stdout, re.M)
    assert sorted(set(rows)) == [("200", "4M", "/big.bin"), ("200", "6", "/hello.txt"),
                                 ("404", "124", "/nothing")], out.stdout
    assert len(rows) == 30


def test_nghttp_with_no_hpack_table_gets_the_size_update_first(srv: H2Server) -> None:
    """A client whose SETTINGS_HEADER_TABLE_SIZE is 0: the first response block after it starts
    with a dynamic table size update (RFC 7541 §4.2), which nghttp2 requires (COMPRESSION_ERROR
    otherwise); the blocks after it reference the static table only."""
    base = f"https://127.0.0.1:{srv.tls}"
    out = subprocess.run(["nghttp", "-n", "-s", "-c", "0", "-m", "5", "--timeout=20", f"{base}/hello.txt",
                          f"{base}/nothing"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+(\S+) (\S+)$", out.stdout, re.M)
    assert sorted(set(rows)) == [("200", "6", "/hello.txt"), ("404", "124", "/nothing")], out.stdout
    assert len(rows) == 10


def test_h2load_all_requests_succeed(srv: H2Server) -> None:
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", f"https://127.0.0.1:{srv.tls}/hello.txt"],
                         capture_output=True, text=True, timeout=120)
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr
    assert "Application protocol: h2" in out.stdout


# -- every handler over HTTP/2 ----------------------------------------------------------------


def test_static_range_conditional_head_and_404(srv: H2Server) -> None:
    with srv.client() as c:
        whole = c.get("/hello.txt")
        assert whole.status == 200 and bytes(whole.body) == b"hello\n"
        part = c.get("/hello.txt", [("range", "bytes=1-3")])
        assert part.status == 206 and bytes(part.body) == b"ell" and part.headers["content-range"] == "bytes 1-3/6"
        same = c.get("/hello.txt", [("if-none-match", whole.headers["etag"])])
        assert same.status == 304 and not same.body
        head = c.get("/hello.txt", method="HEAD")
        assert head.status == 200 and head.headers["content-length"] == "6" and not head.body
        missing = c.get("/nothing-here")
        assert missing.status == 404 and b"404" in missing.body
        big = c.get("/big.bin")
        assert big.status == 200 and bytes(big.body) == (srv.site.www / "big.bin").read_bytes()


def test_cgi_post_streamed_protocol_cookies_and_host(srv: H2Server) -> None:
    body = b"x" * 300_000  # several windows' worth: read as the script takes it
    with srv.client() as c:
        sid = c.request("/cgi-bin/env.cgi", "POST", [("cookie", "a=1"), ("cookie", "b=2"),
                                                      ("content-length", str(len(body)))], body)
        answer = c.response(sid)
    assert answer.status == 200
    text = answer.body.decode()
    assert "protocol=HTTP/2.0" in text
    assert "cookie=a=1; b=2" in text  # RFC 9113 §8.2.3
    assert "host=a.test" in text  # from :authority
    assert f"length={len(body)}" in text and f"body={len(body)}" in text


def test_cgi_post_without_content_length(srv: H2Server) -> None:
    with srv.client() as c:
        answer = c.get("/cgi-bin/env.cgi", method="POST", body=b"y" * 70_000)
    assert answer.status == 200 and "body=70000" in answer.body.decode()


@pytest.mark.parametrize("kind", ["fastcgi", "scgi", "uwsgi"])
def test_gateways_see_http2(srv: H2Server, captures: dict[str, CaptureServer], kind: str) -> None:
    with srv.client() as c:
        answer = c.get(f"/{kind}/x?q=1", method="POST", body=b"data",
                       headers=[("content-length", "4"), ("cookie", "a=1"), ("cookie", "b=2")])
    assert answer.status == 200, answer.body
    env = json.loads(answer.body)["env"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert env["HTTP_HOST"] == "a.test" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["QUERY_STRING"] == "q=1" and env["CONTENT_LENGTH"] == "4" and env["HTTPS"] == "on"


def test_proxy_backend_gets_http11(srv: H2Server) -> None:
    with srv.client() as c:
        answer = c.get("/app/x", method="POST", body=b"abc", headers=[("content-length", "3")])
    assert answer.status == 200
    seen = json.loads(answer.body)
    headers = dict(seen["headers"])
    assert seen["method"] == "POST" and seen["body_length"] == 3
    assert headers["host"] == "a.test" and headers["x-forwarded-proto"] == "https"
    assert headers["via"] == "2.0 frontd"  # RFC 9110 §7.6.3: the version the client used


def test_errors_on_their_stream_and_the_connection_goes_on(srv: H2Server) -> None:
    with srv.client() as c:
        assert c.get("/dead/").status == 502
        sid = c.request("/cgi-bin/env.cgi", "POST", [("content-length", str(2 * 1024 * 1024))], end=False)
        too_big = c.response(sid)
        assert too_big.status == 413 and too_big.ended
        c.wait(lambda: c.streams[sid].reset is not None, what="RST_STREAM after the 413")
        assert c.streams[sid].reset == h2.errors.ErrorCodes.NO_ERROR  # RFC 9113 §8.1: stop sending
        # A body over max_body_size without a Content-Length: 413 once the limit is passed.
        sid = c.request("/cgi-bin/env.cgi", "POST", end=False)
        c.send_body(sid, b"w" * (1024 * 1024 + 70_000))
        assert c.response(sid).status == 413
        assert c.get("/cgi-bin/slow.cgi").status == 504  # timeout = "1s", the script never answers
        nph = c.get("/cgi-bin/nph-raw.cgi")
        assert nph.status == 502
        assert c.get("/hello.txt").status == 200
    srv.server.wait_error_log(r"cannot be sent over HTTP/2")


def test_connect_and_extended_connect_refused(srv: H2Server) -> None:
    with srv.client() as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
        c.flush()
        c.streams[sid] = Stream()
        assert c.response(sid).status == 501
        assert c.get("/hello.txt").status == 200


def test_fast_streams_not_held_behind_a_slow_cgi(srv: H2Server) -> None:
    go = srv.site.cgi / "go"
    go.unlink(missing_ok=True)
    try:
        with srv.client() as c:
            slow = [c.request("/wait/slow.cgi") for _ in range(3)]
            fast = [c.request("/hello.txt") for _ in range(10)]
            for sid in fast:
                assert c.response(sid).status == 200
            assert not any(c.streams[sid].done for sid in slow)  # still waiting for `go`
            go.touch()
            for sid in slow:
                assert c.response(sid).status == 200 and bytes(c.streams[sid].body) == b"slow done\n"
    finally:
        go.unlink(missing_ok=True)


def test_streams_over_http2_max_streams_refused_alone(srv: H2Server) -> None:
    go = srv.site.cgi / "go"
    go.unlink(missing_ok=True)
    try:
        with srv.client() as c:
            # Sent at once, before the client could know the limit: the extra ones are refused
            # with REFUSED_STREAM, the connection goes on.
            sids = [c.request("/wait/slow.cgi") for _ in range(40)]
            c.wait(lambda: sum(c.streams[s].reset is not None for s in sids) == 8, what="8 refused streams")
            assert {c.streams[s].reset for s in sids[32:]} == {h2.errors.ErrorCodes.REFUSED_STREAM}
            go.touch()
            for sid in sids[:32]:
                assert c.response(sid).status == 200
            assert c.get("/hello.txt").status == 200
    finally:
        go.unlink(missing_ok=True)


# -- lifetime: timeouts, reload, quit ----------------------------------------------------------


def own_server(frontd: Callable[..., Frontd], tmp_path: Path, limits: str = LIMITS) -> H2Server:
    (tmp_path / "own").mkdir()
    site = build_site(tmp_path / "own")
    server = frontd(site_config(site, limits=limits), top=TOP)
    wait_for(lambda: len(re.findall(r"listening on", server.errors())) >= 3, what="three listeners")
    return H2Server(server, site)


def test_idle_connection_closed_after_keepalive_timeout(frontd: Callable[..., Frontd], tmp_path: Path) -> None:
    own = own_server(frontd, tmp_path, '[limits]\nkeepalive_timeout = "1s"\nheader_timeout = "1s"\n')
    with own.h2c_client() as c:
        assert c.get("/hello.txt").status == 200
        started = time.monotonic()
        c.wait_closed(timeout=10)
        assert time.monotonic() - started >= 0.9
        assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert c.goaway.last_stream_id == 1
    with own.h2c_client() as silent:  # no request at all: header_timeout
        silent.wait_closed(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_reload_and_quit_send_goaway_and_let_streams_finish(frontd: Callable[..., Frontd], tmp_path: Path,
                                                            signum: int) -> None:
    own = own_server(frontd, tmp_path)
    go = own.site.cgi / "go"
    with own.client() as c:
        assert c.get("/hello.txt").status == 200
        slow = c.request("/wait/slow.cgi")
        own.server.wait_access_log(r'"GET /hello.txt HTTP/2\.0" 200')
        wait_for((own.site.cgi / "started").exists, what="the script running")
        os.kill(own.server.pid, signum)
        c.wait(lambda: c.goaway is not None, what="GOAWAY")
        assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert c.goaway.last_stream_id == slow
        assert not c.streams[slow].done
        go.touch()
        answer = c.response(slow)
        assert answer.status == 200 and bytes(answer.body) == b"slow done\n"
        c.wait_closed()
    if signum == signal.SIGHUP:
        with own.client() as fresh:  # the new generation serves HTTP/2 as well
            assert fresh.get("/hello.txt").status == 200
    else:
        own.server.proc.wait(timeout=15)


def test_status_page_counts_http2_connections_and_streams(srv: H2Server) -> None:
    with srv.client() as c:
        for _ in range(3):
            assert c.get("/hello.txt").status == 200
        page = c.get("/frontd-status?format=json")
        assert page.status == 200, page.body
        totals = json.loads(page.body)["totals"]
        assert totals["http2"]["active_connections"] >= 1
        assert totals["http2"]["connections"] >= 1 and totals["http2"]["streams"] >= 4
        assert totals["connections"] >= totals["http2"]["connections"]
        metrics = c.get("/frontd-status?format=prometheus").body.decode()
        assert re.search(r"^frontd_http2_streams_total \d+", metrics, re.M)


def alpn(port: int, context: ssl.SSLContext) -> str | None:
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="a.test") as sock:
            return sock.selected_alpn_protocol()


def test_listener_http2_overrides_tls_http2(frontd: Callable[..., Frontd], tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    site = build_site(tmp_path / "own")
    top = ('listen = [{ address = "127.0.0.1:0", tls = true }, { address = "127.0.0.1:0", tls = true, http2 = true }]\n'
           '[tls]\nhttp2 = false\n')
    server = frontd(site_config(site), top=top)
    ports = [int(p) for p in wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        re.findall(r"listening on 127\.0\.0\.1:(\d+)", server.errors())), what="both listeners")]  # type: ignore[arg-type]
    assert alpn(ports[0], site.client_context()) == "http/1.1"
    assert alpn(ports[1], site.client_context()) == "h2"
    with H2Client(ports[1], context=site.client_context()) as c:
        assert c.get("/hello.txt").status == 200


def test_one_gib_file_in_bounded_memory(srv: H2Server) -> None:
    """A 1 GiB file (sparse) over HTTP/2 to curl: read in chunks as the window allows, so the
    worker's memory does not grow with the file."""
    huge = srv.site.www / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)
    pid = int(srv.server.wait_error_log(r"worker (\d+) started").group(1))

    def rss() -> int:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) * 1024

    before = rss()
    peak = [before]
    curl = subprocess.Popen(["curl", "-sS", "--http2", "--max-time", "120", "--cacert", str(srv.site.ca_pem),
                             "--resolve", f"a.test:{srv.tls}:127.0.0.1", "-o", "/dev/null",
                             "-w", "%{http_version} %{size_download}", srv.https("/huge.bin")],
                            stdout=subprocess.PIPE, text=True)
    try:
        def finished() -> bool:
            peak[0] = max(peak[0], rss())
            return curl.poll() is not None

        wait_for(finished, timeout=150, what="curl to download 1 GiB")
        assert curl.stdout is not None and curl.stdout.read() == f"2 {1 << 30}"
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
        huge.unlink()
    assert peak[0] - before < 32 * 1024 * 1024


def test_expect_100_continue(srv: H2Server) -> None:
    with srv.client() as c:
        sid = c.request("/cgi-bin/env.cgi", "POST", [("expect", "100-continue"), ("content-length", "5")], end=False)
        c.wait(lambda: any(type(e).__name__ == "InformationalResponseReceived" and e.stream_id == sid
                           for e in c.events), what="100 (Continue)")
        c.send_body(sid, b"12345")
        answer = c.response(sid)
        assert answer.status == 200 and "body=5" in answer.body.decode()


def test_client_connections_limit_answers_429_then_goaway(frontd: Callable[..., Frontd], tmp_path: Path) -> None:
    own = own_server(frontd, tmp_path, "[limits]\nclient_connections = 1\n")
    with own.h2c_client() as first:
        assert first.get("/hello.txt").status == 200
        with own.h2c_client() as second:
            answer = second.get("/hello.txt")
            assert answer.status == 429 and answer.headers.get("retry-after") == "1"
            second.wait_closed()
            assert second.goaway is not None and second.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert first.get("/hello.txt").status == 200


def test_small_windows_and_frames_follow_flow_control(srv: H2Server) -> None:
    """A client with a 1000-byte stream window: every DATA frame fits the windows it opens (h2 on
    the client side ends the connection with FLOW_CONTROL_ERROR otherwise) and the bytes arrive
    whole and in order."""
    with srv.client(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as c:
        answer = c.get("/big.bin", [("range", "bytes=1000-200999")])
        assert answer.status == 206 and not c.closed
        assert bytes(answer.body) == (srv.site.www / "big.bin").read_bytes()[1000:201000]
        sizes = [len(e.data) for e in c.events if type(e).__name__ == "DataReceived"]
        assert max(sizes) <= 1000 and sum(sizes) == 200_000
        assert c.get("/hello.txt").status == 200
