"""CGI/1.1 at the socket (RFC 3875): meta-variables, bodies, responses, redirects, NPH, framing.

Scripts in shell and in C (compiled here with gcc) run under a real frontd. The helpers at the
top (`build_site`, `site_config`, `send`, `env_of`) are shared with test_cgi_security.py and
test_cgi_process.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Frontd, recv_all, start_frontd, stop_process, wait_for
from tests.http_client import Answer, RawClient, parse_one

# -- the site: scripts, C programs, config ------------------------------------------------------

ENV_C = r"""
/* Prints argv, the working directory, the environment and the body it was given. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
    char cwd[4096], buf[65536];
    printf("Content-Type: text/plain\n\n");
    printf("ARGC=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("ARGV%d=%s\n", i, argv[i]);
    if (getcwd(cwd, sizeof cwd))
        printf("CWD=%s\n", cwd);
    for (char **e = environ; *e; e++)
        printf("%s\n", *e);
    const char *cl = getenv("CONTENT_LENGTH");
    if (cl) {
        long left = atol(cl);
        printf("BODY=");
        while (left > 0) {
            size_t got = fread(buf, 1, left < (long)sizeof buf ? (size_t)left : sizeof buf, stdin);
            if (got == 0)
                break;
            fwrite(buf, 1, got, stdout);
            left -= (long)got;
        }
        printf("\n");
    }
    return 0;
}
"""

BIG_C = r"""
/* 50 MiB of output in 64 KiB writes, after a head with no Content-Length. */
#include <string.h>
#include <unistd.h>
int main(void)
{
    static char buf[65536];
    const char head[] = "Content-Type: application/octet-stream\n\n";
    memset(buf, 'x', sizeof buf);
    if (write(1, head, sizeof head - 1) < 0)
        return 1;
    for (int i = 0; i < 800; i++) {
        size_t off = 0;
        while (off < sizeof buf) {
            ssize_t n = write(1, buf + off, sizeof buf - off);
            if (n < 0)
                return 1;
            off += (size_t)n;
        }
    }
    return 0;
}
"""

C_PROGRAMS = {"env": ENV_C, "big": BIG_C}

ENV_SH = r"""#!/bin/sh
printf 'Content-Type: text/plain\n\n'
printf 'ARGC=%s\n' "$(($# + 1))"
printf 'ARGV0=%s\n' "$0"
i=1
for a in "$@"; do printf 'ARGV%s=%s\n' "$i" "$a"; i=$((i + 1)); done
printf 'CWD=%s\n' "$(pwd -P)"
env
if [ -n "${CONTENT_LENGTH+set}" ]; then printf 'BODY='; head -c "$CONTENT_LENGTH"; printf '\n'; fi
"""

SCRIPTS: dict[str, str] = {
    "env.sh": ENV_SH,
    "status.sh": "#!/bin/sh\nprintf 'Status: 404 Not Here\\nContent-Type: text/plain\\n\\nmissing\\n'\n",
    "local.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/env?from=local\\n\\n'\n",
    "loop.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/loop.sh\\n\\n'\n",
    "away.sh": "#!/bin/sh\nprintf 'Location: http://example.test/elsewhere\\n\\n'\n",
    "away-doc.sh": "#!/bin/sh\nprintf 'Status: 301 Moved\\nLocation: http://example.test/new\\n"
                   "Content-Type: text/html\\n\\n<a href=\"http://example.test/new\">moved</a>\\n'\n",
    "length.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 6\\nX-Extra: yes\\n\\nhello\\n'\n",
    "nph-raw.sh": "#!/bin/sh\nprintf 'HTTP/1.1 299 Raw Status\\r\\nX-Nph: yes\\r\\nContent-Type: text/plain\\r\\n"
                  "\\r\\nraw body\\n'\n",
    "stderr.sh": "#!/bin/sh\necho 'oops: something went wrong' >&2\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n",
    "sum.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nprintf 'CONTENT_LENGTH=%s\\n' "
              "\"${CONTENT_LENGTH-unset}\"\nhead -c \"${CONTENT_LENGTH:-0}\" | sha256sum\n",
    "crlf.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-A: b\\r\\n\\r\\ncrlf\\n'\n",
    # Writes a first line, then waits (at most 10 s) for the test to create $STATE_DIR/go-QUERY.
    "wait.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nfirst\\n'\ni=0\n"
               "while [ ! -e \"$STATE_DIR/go-$QUERY_STRING\" ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i + 1)); done\n"
               "printf 'second\\n'\n",
    "sub/inner.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nSCRIPT_NAME=%s\\nPATH_INFO=%s\\n' "
                    "\"$SCRIPT_NAME\" \"$PATH_INFO\"\n",
}


@dataclass
class Site:
    base: Path
    www: Path  # the vhost root
    cgi: Path  # the CGI DIR (inside the root, at www/scripts)
    state: Path  # where scripts leave pid files and markers
    interp: Path  # a CGI DIR for the interpreters route


def compile_c(source: str, out: Path) -> None:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True, capture_output=True, timeout=60)
    src.unlink()


def write_script(directory: Path, name: str, text: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C test programs, compiled once per session with gcc."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the CGI tests (tests/run.sh installs it)")
    out = tmp_path_factory.mktemp("cgi-c")
    built = {}
    for name, source in C_PROGRAMS.items():
        compile_c(source, out / name)
        built[name] = out / name
    return built


def build_site(base: Path, c_programs: dict[str, Path], extra: dict[str, str] | None = None) -> Site:
    www = base / "www"
    cgi = www / "scripts"
    state = base / "state"
    interp = base / "interp"
    for d in (www, cgi, state, interp):
        d.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("<h1>home</h1>\n")
    for name, text in {**SCRIPTS, **(extra or {})}.items():
        write_script(cgi, name, text)
    for name, binary in c_programs.items():
        shutil.copy2(binary, cgi / name)
    return Site(base, www, cgi.resolve(), state.resolve(), interp.resolve())


def site_config(site: Site, *, timeout: str = "10s", extra_routes: str = "") -> str:
    return f"""
[limits]
max_body_size = "256KiB"

[[vhost]]
names = ["localhost", "127.0.0.1"]
default = true
root = "{site.www}"

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{site.cgi}"
  timeout = "{timeout}"
  env = {{ STATE_DIR = "{site.state}", APP_MODE = "demo" }}

  [[vhost.route]]
  prefix = "/short/"
  cgi = "{site.cgi}"
  timeout = "1s"
  env = {{ STATE_DIR = "{site.state}" }}

  [[vhost.route]]
  prefix = "/noauth/"
  cgi = "{site.cgi}"
  pass_authorization = false

  [[vhost.route]]
  prefix = "/one/"
  cgi = "{site.cgi}"
  max_processes = 1
  env = {{ STATE_DIR = "{site.state}" }}

  [[vhost.route]]
  prefix = "/idx/"
  cgi = "{site.cgi}"
  index = ["env.sh"]

  [[vhost.route]]
  prefix = "/interp/"
  cgi = "{site.interp}"
  interpreters = {{ ".py" = "{sys.executable}" }}
{extra_routes}
"""


def start_site(tmp_path_factory: pytest.TempPathFactory, c_programs: dict[str, Path], name: str,
               extra: dict[str, str] | None = None, top: str = "") -> tuple[Frontd, Site]:
    """A site in a fresh directory and a frontd serving it; the caller stops it."""
    base = tmp_path_factory.mktemp(name)
    site = build_site(base, c_programs, extra)
    return start_frontd(base, site_config(site), top=top), site


# -- talking to it ----------------------------------------------------------------------------


def send(server: Frontd, target: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None,
         body: bytes | None = None, version: str = "1.1", raw_head: bytes = b"") -> Answer:
    """One request with `Connection: close`, the target sent exactly as given."""
    lines = [f"{method} {target} HTTP/{version}", "Host: localhost", "Connection: close"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body is not None and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n").encode("latin-1") + raw_head + b"\r\n" + (body or b"")
    return parse_one(server.raw(data), method)


def env_of(answer: Answer) -> dict[str, str]:
    assert answer.status == 200, (answer.status, answer.body[:300])
    env = {}
    for line in answer.body.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.replace("_", "").isalnum():
            env.setdefault(name, value)
    return env


@pytest.fixture(scope="module")
def cgi(tmp_path_factory: pytest.TempPathFactory, c_programs: dict[str, Path]) -> Iterator[tuple[Frontd, Site]]:
    # A variable of the test process: frontd has it, scripts must not.
    os.environ["FRONTD_LEAK_CHECK"] = "leaked"
    try:
        server, site = start_site(tmp_path_factory, c_programs, "cgi")
    finally:
        del os.environ["FRONTD_LEAK_CHECK"]
    try:
        yield server, site
    finally:
        stop_process(server.proc)


# -- meta-variables ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["env", "env.sh"])
def test_meta_variables(cgi: tuple[Frontd, Site], script: str) -> None:
    server, site = cgi
    env = env_of(send(server, f"/cgi-bin/{script}/some%20dir/x?a=1&b=%20", headers=[("User-Agent", "t/1")]))
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"].startswith("frontd/")
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SCRIPT_NAME"] == f"/cgi-bin/{script}"
    assert env["PATH_INFO"] == "/some dir/x"  # decoded (RFC 3875 §4.1.5)
    assert env["PATH_TRANSLATED"] == f"{site.www.resolve()}/some dir/x"
    assert env["SCRIPT_FILENAME"] == f"{site.cgi}/{script}"
    assert env["DOCUMENT_ROOT"] == str(site.www.resolve())
    assert env["REQUEST_URI"] == f"/cgi-bin/{script}/some%20dir/x?a=1&b=%20"
    assert env["REQUEST_SCHEME"] == "http"
    assert env["REDIRECT_STATUS"] == "200"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["HTTP_USER_AGENT"] == "t/1"
    assert env["HTTP_HOST"] == "localhost"
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    # The route's env and PATH, and the script's directory as the working directory (§7.2).
    assert env["STATE_DIR"] == str(site.state) and env["APP_MODE"] == "demo"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["CWD"] == str(site.cgi)
    # argv is the script alone.
    assert env["ARGC"] == "1"


def test_per_request_variables_follow_each_request_and_connection(cgi: tuple[Frontd, Site]) -> None:
    """What varies per request is never carried over from an earlier one on the same route:
    QUERY_STRING, HTTP_*, CONTENT_LENGTH per request, REMOTE_PORT per connection."""
    server, _ = cgi
    seen = []
    for _ in range(2):
        with server.connect() as sock:
            client = RawClient(sock)
            port = str(sock.getsockname()[1])
            client.send(b"GET /cgi-bin/env?one HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n\r\n")
            first = env_of(client.read())
            client.send(b"POST /cgi-bin/env?two HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi")
            second = env_of(client.read())
        assert (first["QUERY_STRING"], first["HTTP_X_A"], first["REQUEST_METHOD"]) == ("one", "1", "GET")
        assert "CONTENT_LENGTH" not in first
        assert (second["QUERY_STRING"], second["REQUEST_METHOD"], second["CONTENT_LENGTH"]) == ("two", "POST", "2")
        assert "HTTP_X_A" not in second
        assert first["REMOTE_PORT"] == second["REMOTE_PORT"] == port
        seen.append(port)
    assert seen[0] != seen[1]


def test_no_path_info_and_http_1_0(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/cgi-bin/env", version="1.0"))
    assert env["PATH_INFO"] == "" and "PATH_TRANSLATED" not in env  # §4.1.6: unset
    assert env["QUERY_STRING"] == ""  # §4.1.7: set even when empty
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_nested_script_and_trailing_slash_path_info(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/sub/inner.sh/a/b/")
    assert answer.status == 200
    assert b"SCRIPT_NAME=/cgi-bin/sub/inner.sh\nPATH_INFO=/a/b/\n" in answer.body


def test_frontd_environment_never_leaks(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/cgi-bin/env"))
    assert "FRONTD_LEAK_CHECK" not in env
    assert not any("leaked" in value for value in env.values())
    assert "HOME" not in env and "PYTHONPATH" not in env


def test_repeated_headers_merged(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/cgi-bin/env", headers=[
        ("Accept", "text/html"), ("X-Multi", "a"), ("Accept", "*/*"), ("X-Multi", "b"),
        ("Cookie", "a=1"), ("Cookie", "b=2")]))
    assert env["HTTP_ACCEPT"] == "text/html, */*"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_non_utf8_header_value_reaches_the_script(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/env", raw_head=b"X-Latin: caf\xe9\r\n")
    assert b"HTTP_X_LATIN=caf\xe9\n" in answer.body


def test_authorization_passed_or_withheld(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    auth = [("Authorization", "Basic dXNlcjpwYXNz")]
    assert env_of(send(server, "/cgi-bin/env", headers=auth))["HTTP_AUTHORIZATION"] == "Basic dXNlcjpwYXNz"
    env = env_of(send(server, "/noauth/env", headers=auth))
    assert "HTTP_AUTHORIZATION" not in env
    assert not any("dXNlcjpwYXNz" in v for v in env.values())


def test_interpreter_route(cgi: tuple[Frontd, Site]) -> None:
    server, site = cgi
    write_script(site.interp, "hello.py", "import os, sys\nsys.stdout.write('Content-Type: text/plain\\n\\n')\n"
                 "print('py', len(sys.argv), os.environ['SCRIPT_NAME'])\n", mode=0o644)
    write_script(site.interp, "plain.sh", "#!/bin/sh\necho SOURCE-OF-PLAIN\n", mode=0o644)
    answer = send(server, "/interp/hello.py?-c+import+os")
    assert answer.status == 200 and answer.body == b"py 1 /interp/hello.py\n"
    answer = send(server, "/interp/plain.sh")
    assert answer.status == 403 and b"SOURCE-OF-PLAIN" not in answer.body


# -- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["env", "env.sh"])
def test_post_with_content_length(cgi: tuple[Frontd, Site], script: str) -> None:
    server, _ = cgi
    env = env_of(send(server, f"/cgi-bin/{script}", method="POST", body=b"name=value&x=1",
                      headers=[("Content-Type", "application/x-www-form-urlencoded")]))
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "14"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["BODY"] == "name=value&x=1"


def test_post_empty_body_has_content_length_zero(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/cgi-bin/env", method="POST", body=b""))
    assert env["CONTENT_LENGTH"] == "0"


def chunked(data: bytes, size: int = 4000) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))
    return out + b"0\r\n\r\n"


def test_chunked_body_is_spooled_to_learn_its_length(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/cgi-bin/env", method="POST", body=chunked(b"hello chunked world", 5),
                      headers=[("Transfer-Encoding", "chunked")]))
    assert env["CONTENT_LENGTH"] == "19"  # after de-chunking (RFC 3875 §4.1.2)
    assert env["BODY"] == "hello chunked world"
    assert "HTTP_TRANSFER_ENCODING" not in env


def test_large_chunked_body_just_under_the_limit(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    data = os.urandom(256 * 1024)  # max_body_size exactly: spooled to a temporary file
    answer = send(server, "/cgi-bin/sum.sh", method="POST", body=chunked(data, 16384),
                  headers=[("Transfer-Encoding", "chunked")])
    assert answer.status == 200
    assert answer.body.decode().split() == ["CONTENT_LENGTH=262144", hashlib.sha256(data).hexdigest(), "-"]


def test_chunked_body_over_the_limit_is_413(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    head = (b"POST /cgi-bin/sum.sh HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")
    with server.connect() as sock:
        sock.sendall(head)
        try:
            for _ in range(17):  # 17 x 16 KiB > 256 KiB
                sock.sendall(b"4000\r\n" + b"z" * 16384 + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # frontd may close as soon as it has answered
        answer = parse_one(recv_all(sock))
    assert answer.status == 413
    server.wait_error_log(r"413: (chunked )?request body over max_body_size.*POST /cgi-bin/sum.sh")


def test_post_with_content_length_streams_a_large_body(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    data = os.urandom(200 * 1024)
    answer = send(server, "/cgi-bin/sum.sh", method="POST", body=data)
    assert answer.body.decode().split() == [f"CONTENT_LENGTH={len(data)}", hashlib.sha256(data).hexdigest(), "-"]


def test_expect_100_continue(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    with server.connect() as sock:
        sock.sendall(b"POST /cgi-bin/env HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")  # the interim response, before any body byte
        sock.sendall(b"hello")
        answer = parse_one(recv_all(sock))
    assert env_of(answer)["BODY"] == "hello"


# -- responses --------------------------------------------------------------------------------


def test_status_field(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/status.sh")
    assert (answer.status, answer.reason, answer.body) == (404, b"Not Here", b"missing\n")
    assert "status" not in {k.lower() for k in answer.headers}


def test_crlf_header_block(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/crlf.sh")
    assert answer.status == 200 and answer.body == b"crlf\n" and answer.headers["x-a"] == "b"
    # No Content-Length from the script: a script that has exited by the time its output is
    # read gets one from frontd; otherwise the body is chunked (next test).
    assert answer.headers.get("transfer-encoding") == "chunked" or answer.headers.get("content-length") == "5"


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_output_still_running_is_streamed_chunked_or_close_delimited(cgi: tuple[Frontd, Site],
                                                                     version: str) -> None:
    """A script that has written part of its output and goes on: its first line reaches the client
    at once, framed without a length (RFC 3875 §6.2.1: fitted to the client): chunked for
    HTTP/1.1, close-delimited for HTTP/1.0."""
    server, site = cgi
    name = version.replace(".", "")
    with server.connect() as sock:
        sock.sendall(f"GET /cgi-bin/wait.sh?{name} HTTP/{version}\r\nHost: localhost\r\n"
                     "Connection: close\r\n\r\n".encode())
        got = b""

        def first_line() -> bool:
            nonlocal got
            got += sock.recv(65536)
            return b"first\n" in got

        wait_for(first_line, what="the script's first line")
        (site.state / f"go-{name}").touch()
        got += recv_all(sock)
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-length" not in head.lower()
    if version == "1.1":
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"6\r\nfirst\n\r\n7\r\nsecond\n\r\n0\r\n\r\n"
    else:
        assert b"chunked" not in head.lower() and body == b"first\nsecond\n"


def test_script_content_length_kept_with_keep_alive(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    with server.connect() as sock:
        client = RawClient(sock)
        for _ in range(3):
            client.send(b"GET /cgi-bin/length.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = client.read()
            assert answer.status == 200 and answer.body == b"hello\n"
            assert answer.headers["content-length"] == "6" and answer.headers["x-extra"] == "yes"
            assert "transfer-encoding" not in answer.headers
        # HEAD on the same connection: head only, and the connection stays usable.
        client.send(b"HEAD /cgi-bin/length.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = client.read("HEAD")
        assert answer.status == 200 and answer.body == b"" and answer.headers["content-length"] == "6"
        client.send(b"GET /cgi-bin/length.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.read().body == b"hello\n"


def test_head_discards_the_body(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    raw = server.raw(b"HEAD /cgi-bin/env.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-type: text/plain" in head.lower()
    assert rest == b""


def test_local_redirect_is_served_as_get(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/local.sh?orig=1", method="POST", body=b"dropped")
    env = env_of(answer)  # the client sees env's output directly: no 3xx
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "from=local"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env"
    assert env["REQUEST_URI"] == "/cgi-bin/env?from=local"
    assert "CONTENT_LENGTH" not in env and "BODY" not in env
    assert "location" not in answer.headers


def test_local_redirect_loop_ends_in_500(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/loop.sh")
    assert answer.status == 500
    server.wait_error_log(r"500: more than \d+ local redirects.*GET /cgi-bin/loop.sh")


def test_client_redirect(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    answer = send(server, "/cgi-bin/away.sh")
    assert answer.status == 302 and answer.headers["location"] == "http://example.test/elsewhere"
    answer = send(server, "/cgi-bin/away-doc.sh")
    assert answer.status == 301 and answer.headers["location"] == "http://example.test/new"
    assert answer.headers["content-type"] == "text/html" and b"moved" in answer.body


def test_nph_output_passed_through_unchanged(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    raw = server.raw(b"GET /cgi-bin/nph-raw.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
    # Exactly the script's bytes: no Server or Date added, its own status line.
    assert raw == b"HTTP/1.1 299 Raw Status\r\nX-Nph: yes\r\nContent-Type: text/plain\r\n\r\nraw body\n"


def test_stderr_goes_to_the_error_log_tagged(cgi: tuple[Frontd, Site]) -> None:
    server, site = cgi
    answer = send(server, "/cgi-bin/stderr.sh")
    assert answer.status == 200 and answer.body == b"ok\n" and b"oops" not in answer.body
    server.wait_error_log(
        rf"\[error\] \d+: cgi {site.cgi}/stderr\.sh stderr: oops: something went wrong, client: 127\.0\.0\.1, "
        r'request: "GET /cgi-bin/stderr\.sh HTTP/1\.1"')


def test_many_requests_on_one_connection(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    with server.connect() as sock:
        client = RawClient(sock)
        for i in range(20):
            client.send(f"GET /cgi-bin/env?i={i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert env_of(client.read())["QUERY_STRING"] == f"i={i}"


def test_index_script_for_a_directory(cgi: tuple[Frontd, Site]) -> None:
    server, _ = cgi
    env = env_of(send(server, "/idx/?q=1"))
    assert env["SCRIPT_NAME"] == "/idx/env.sh" and env["PATH_INFO"] == "" and env["QUERY_STRING"] == "q=1"
    assert env_of(send(server, "/idx"))["SCRIPT_NAME"] == "/idx/env.sh"
    assert send(server, "/idx/sub/").status == 403  # no index there, and never a listing
