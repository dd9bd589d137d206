"""CGI attacks at the socket: what a client sends must never run, reveal or pose as anything.

httpoxy (CVE-2016-5385), header-name folding, query words as argv (CVE-2012-1823), Shellshock
(CVE-2014-6271), traversal out of the CGI directory in every spelling (CVE-2021-41773,
CVE-2021-42013), symlinks out, non-executable files and sources, directories, and response
heads a script could use to split or smuggle the client's response.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Frontd, stop_process
from tests.integration.test_cgi import Site, c_programs, env_of, send, start_site, write_script

__all__ = ["c_programs"]  # the session fixture, shared with test_cgi.py

MARK = "touch \"$STATE_DIR/ran-$(basename \"$0\")\""

EXTRA = {
    "shellshock.sh": "#!/bin/bash\nprintf 'Content-Type: text/plain\\n\\n'\nprintf 'UA=%s\\n' \"$HTTP_USER_AGENT\"\n",
    "secret.sh": "#!/bin/sh\n# SOURCE-SECRET: never sent\necho hi\n",  # made non-executable below
    ".hidden.sh": f"#!/bin/sh\n{MARK}\nprintf 'Content-Type: text/plain\\n\\nhidden\\n'\n",
    # Output a script must not be able to get past frontd (502 each).
    "bad-nohead.sh": "#!/bin/sh\nprintf 'just some text\\n'\n",
    "bad-noblank.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n'\n",
    "bad-cr.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\rSet-Cookie: evil=1\\n\\nLEAKED-BODY'\n",
    "bad-nul.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\000b\\n\\nLEAKED-BODY'\n",
    "bad-ctl.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\033b\\n\\nLEAKED-BODY'\n",
    "bad-fold.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-A: a\\n Set-Cookie: evil=1\\n\\nLEAKED-BODY'\n",
    "bad-name.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nBad Name: x\\n\\nLEAKED-BODY'\n",
    "bad-huge.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-Big: '\nhead -c 100000 /dev/zero | tr '\\000' a\n"
                   "printf '\\n\\nLEAKED-BODY'\n",
    "bad-status.sh": "#!/bin/sh\nprintf 'Status: 99 Odd\\nContent-Type: text/plain\\n\\nLEAKED-BODY'\n",
    "bad-status-text.sh": "#!/bin/sh\nprintf 'Status: abc\\nContent-Type: text/plain\\n\\nLEAKED-BODY'\n",
    "bad-twice.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Type: text/html\\n\\nLEAKED-BODY'\n",
    "bad-nocgi.sh": "#!/bin/sh\nprintf 'X-Only: 1\\n\\nLEAKED-BODY'\n",
    "bad-length.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 1x\\n\\nLEAKED-BODY'\n",
}


@pytest.fixture(scope="module")
def sec(tmp_path_factory: pytest.TempPathFactory, c_programs: dict[str, Path]) -> Iterator[tuple[Frontd, Site]]:
    server, site = start_site(tmp_path_factory, c_programs, "cgisec", EXTRA)
    (site.cgi / "secret.sh").chmod(0o644)
    # Scripts outside the CGI directory that must never run, and links that lead to them.
    outside = write_script(site.base, "outside.sh", f"#!/bin/sh\n# OUTSIDE-SOURCE\n{MARK}\n"
                           "printf 'Content-Type: text/plain\\n\\nOUTSIDE RAN\\n'\n")
    (site.cgi / "link-out").symlink_to(outside)
    (site.cgi / "dir-out").symlink_to(site.base)
    (site.cgi / "link-in.sh").symlink_to(site.cgi / "env.sh")
    try:
        yield server, site
    finally:
        stop_process(server.proc)


def ran(site: Site) -> list[str]:
    return sorted(p.name for p in site.state.glob("ran-*"))


@pytest.mark.parametrize("name", ["Proxy", "PROXY", "proxy", "pRoXy"])
@pytest.mark.parametrize("script", ["env", "env.sh"])
def test_httpoxy(sec: tuple[Frontd, Site], name: str, script: str) -> None:
    server, _ = sec
    env = env_of(send(server, f"/cgi-bin/{script}", headers=[(name, "http://evil.test:3128/")]))
    assert "HTTP_PROXY" not in env
    assert not any("evil.test" in v for v in env.values())


def test_header_names_that_fold_onto_others_are_dropped(sec: tuple[Frontd, Site]) -> None:
    server, _ = sec
    env = env_of(send(server, "/cgi-bin/env", headers=[
        ("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "10.0.0.1"), ("Remote_User", "admin"),
        ("Content_Length", "99"), ("X-Real.IP", "7.7.7.7")]))
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"  # the real one, alone
    assert "REMOTE_USER" not in env and "HTTP_REMOTE_USER" not in env
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert not any(v in ("6.6.6.6", "admin", "99", "7.7.7.7") for v in env.values())
    for name in ("x_forwarded_for", "remote_user", "content_length", "x-real.ip"):
        server.wait_error_log(rf"\[debug\] .*request header '{re.escape(name)}' left out of the gateway environment"
                              r".*client: 127\.0\.0\.1")


@pytest.mark.parametrize("query", ["-s", "-d+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input", "-n", "a+b+c"])
@pytest.mark.parametrize("script", ["env", "env.sh"])
def test_query_words_never_become_argv(sec: tuple[Frontd, Site], query: str, script: str) -> None:
    # CVE-2012-1823: php-cgi took "?-s" as its -s option. RFC 3875 §4.4 allows argv from an
    # "indexed" query; frontd never builds it.
    server, site = sec
    env = env_of(send(server, f"/cgi-bin/{script}?{query}"))
    assert env["ARGC"] == "1"
    assert env["ARGV0"] == f"{site.cgi}/{script}"
    assert env["QUERY_STRING"] == query


@pytest.mark.parametrize("script", ["shellshock.sh", "env.sh", "env"])
def test_shellshock_user_agent_runs_nothing(sec: tuple[Frontd, Site], script: str) -> None:
    server, site = sec
    if script == "shellshock.sh" and shutil.which("bash") is None:
        pytest.skip("no bash")
    agent = '() { :; }; echo; /bin/echo PWNED; /usr/bin/touch "$STATE_DIR/ran-shellshock"'
    answer = send(server, f"/cgi-bin/{script}", headers=[("User-Agent", agent), ("Referer", agent)])
    assert answer.status == 200
    lines = answer.body.decode().splitlines()
    assert "PWNED" not in lines  # the echo never ran: only the variable's own text shows
    assert any(line.endswith(agent) for line in lines)
    assert not (site.state / "ran-shellshock").exists()


TRAVERSALS = [
    "/cgi-bin/../outside.sh",
    "/cgi-bin/.%2e/.%2e/bin/sh",  # CVE-2021-41773
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/cgi-bin/%2e%2e/%2e%2e/outside.sh",
    "/cgi-bin/.%2e/outside.sh",
    "/cgi-bin/%%32%65%%32%65/outside.sh",  # CVE-2021-42013
    "/cgi-bin/.%%32%65/.%%32%65/bin/sh",
    "/cgi-bin/%252e%252e/%252e%252e/outside.sh",  # double encoding
    "/cgi-bin/..%2f..%2foutside.sh",
    "/cgi-bin/..%252f..%252foutside.sh",
    "/cgi-bin/..%5c..%5coutside.sh",
    "/cgi-bin/..\\..\\outside.sh",
    "/cgi-bin/%c0%ae%c0%ae/outside.sh",  # overlong UTF-8 "."
    "/cgi-bin/..;/outside.sh",
    "/cgi-bin/../../../../../../bin/sh",
    "/cgi-bin/link-out",  # symlink to a script outside DIR
    "/cgi-bin/link-out/extra",
    "/cgi-bin/dir-out/outside.sh",  # symlinked directory leaving DIR
    "/cgi-bin/.hidden.sh",
    "/cgi-bin/%2ehidden.sh",
    "/cgi-bin/env%00.sh",
    "/cgi-bin/env.sh%0a",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_nothing_outside_the_directory_runs(sec: tuple[Frontd, Site], target: str) -> None:
    server, site = sec
    answer = send(server, target)
    assert answer.status in (400, 403, 404), (target, answer.status, answer.body[:200])
    assert b"OUTSIDE" not in answer.body and b"#!/bin/sh" not in answer.body
    assert ran(site) == []


def test_symlink_inside_the_directory_runs(sec: tuple[Frontd, Site]) -> None:
    server, site = sec
    env = env_of(send(server, "/cgi-bin/link-in.sh/p"))
    assert env["SCRIPT_NAME"] == "/cgi-bin/link-in.sh" and env["PATH_INFO"] == "/p"
    assert env["SCRIPT_FILENAME"] == f"{site.cgi}/env.sh"


@pytest.mark.parametrize("target", ["/cgi-bin/secret.sh", "/cgi-bin/secret.sh/x", "/cgi-bin/secret.sh?q"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_non_executable_file_is_403_and_its_source_never_sent(sec: tuple[Frontd, Site], target: str,
                                                             method: str) -> None:
    server, _ = sec
    answer = send(server, target, method=method, body=b"x" if method == "POST" else None)
    assert answer.status == 403
    assert b"SOURCE-SECRET" not in answer.body


@pytest.mark.parametrize("target", ["/scripts/env.sh", "/scripts/secret.sh", "/scripts/%65nv.sh", "/scripts/",
                                    "/scripts/sub/inner.sh", "/scripts/env"])
def test_cgi_directory_inside_the_root_is_never_served_as_files(sec: tuple[Frontd, Site], target: str) -> None:
    server, _ = sec
    answer = send(server, target)
    assert answer.status in (403, 404), (target, answer.status)
    assert b"#!/bin/sh" not in answer.body and b"SOURCE-SECRET" not in answer.body and b"ELF" not in answer.body


@pytest.mark.parametrize("target,status", [
    ("/cgi-bin/", 403), ("/cgi-bin", 403), ("/cgi-bin/sub/", 403), ("/cgi-bin/sub", 403),
    ("/cgi-bin/missing", 404), ("/cgi-bin/missing/x", 404), ("/cgi-bin/sub/missing.sh", 404),
])
def test_directories_and_missing_names(sec: tuple[Frontd, Site], target: str, status: int) -> None:
    server, _ = sec
    answer = send(server, target)
    assert answer.status == status
    assert b"inner.sh" not in answer.body and b"env.sh" not in answer.body  # never a listing


@pytest.mark.parametrize("script", sorted(name for name in EXTRA if name.startswith("bad-")))
def test_malformed_output_is_502(sec: tuple[Frontd, Site], script: str) -> None:
    server, site = sec
    answer = send(server, f"/cgi-bin/{script}")
    assert answer.status == 502
    assert b"evil" not in answer.body and b"LEAKED-BODY" not in answer.body
    assert "set-cookie" not in answer.headers and "x-a" not in answer.headers
    server.wait_error_log(rf"\[error\] \d+: 502: cgi {re.escape(str(site.cgi))}/{re.escape(script)}: .*"
                          rf'request: "GET /cgi-bin/{re.escape(script)} HTTP/1.1"')
    # The worker is unharmed: the next request is served.
    assert send(server, "/cgi-bin/length.sh").body == b"hello\n"
