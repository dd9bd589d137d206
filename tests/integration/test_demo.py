"""The demo that README's first command starts: conf/frontd.conf with www/, cgi-bin/ and demo/.

A copy of the checkout's demo files in tmp_path, so that every relative path in the config
resolves as in the checkout, with three test changes to the config: it listens on 127.0.0.1:0,
logs to files, and spawns the WSGI application with this test's Python (which has flup) instead
of the checkout's .venv. Everything the front page links to must answer, the application must be
the process frontd spawned, and `frontd -s reload` / `-s quit` must work on it (issue 12, item 8).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, Frontd, start_frontd, wait_for
from tests.integration.processes import alive, frontd_cli, get
from tests.integration.test_cgi import compile_c

DEMO_PYTHON = '"../.venv/bin/python"'


def demo_config(tmp_path: Path) -> str:
    """The demo's files copied into tmp_path; the config text, changed for the test."""
    for name in ("www", "cgi-bin", "demo"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "hello"))
    compile_c((REPO / "cgi-bin" / "hello.c").read_text(), tmp_path / "cgi-bin" / "hello")
    (tmp_path / "conf").mkdir()
    (tmp_path / "run").mkdir()
    text = (REPO / "conf" / "frontd.conf").read_text()
    assert DEMO_PYTHON in text, "the demo spawns its application with the .venv's Python"
    text = text.replace(DEMO_PYTHON, f'"{sys.executable}"')
    # start_frontd puts its own listen (127.0.0.1:0), error_log and access_log (files) first.
    text, count = re.subn(r"(?ms)^(listen = \[.*?\]|error_log = \S+|access_log = \S+)\s*$", "", text)
    assert count == 3, "listen, error_log and access_log each once at the top of the demo config"
    return text


@dataclass
class Demo:
    server: Frontd
    app_pids: list[int] = field(default_factory=list)  # every application process seen

    def app_pid(self) -> int:
        """The pid of the WSGI process that answers /app/, from its page."""
        status, body = get(self.server.port, "/app/")
        assert status == 200, body
        match = re.search(rb"Process (\d+), started by frontd", body)
        assert match, body
        pid = int(match.group(1))
        self.app_pids.append(pid)
        return pid


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    pytest.importorskip("flup")
    running = Demo(start_frontd(tmp_path, demo_config(tmp_path), name="conf/frontd.conf"))
    try:
        yield running
    finally:
        running.server.stop()
        # The application runs in a session of its own; one that outlived frontd is killed by PID.
        for pid in running.app_pids:
            if alive(pid) and os.readlink(f"/proc/{pid}/cwd").startswith(str(tmp_path)):
                os.kill(pid, signal.SIGKILL)


def test_demo_serves_what_its_front_page_links_to(demo: Demo) -> None:
    port = demo.server.port
    status, page = get(port, "/")
    assert status == 200 and b"frontd works" in page
    links = re.findall(rb'href="(/[^"]*)"', page)
    for needed in (b"/cgi-bin/hello.sh", b"/cgi-bin/hello?", b"/app/"):
        assert any(link.startswith(needed) for link in links), (needed, links)
    for link in links:
        status, body = get(port, link.decode())
        assert status == 200, (link, body[:200])

    status, body = get(port, "/cgi-bin/hello.sh/extra?name=world")
    assert status == 200 and b"Hello from a shell CGI script." in body
    assert b"PATH_INFO=/extra" in body and b"QUERY_STRING=name=world" in body
    status, body = get(port, "/cgi-bin/hello?name=world")
    assert status == 200 and b"Hello from a C CGI program." in body and b"QUERY_STRING=name=world" in body

    status, body = get(port, "/app/hello?x=1")
    assert status == 200 and b"A WSGI application over FastCGI" in body
    for name, value in ((b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/hello"), (b"QUERY_STRING", b"x=1")):
        assert re.search(rb"<th>%s</th><td><code>%s</code>" % (name, value), body), name
    # The application is the process frontd spawned in demo/, not one started by hand.
    pid = demo.app_pid()
    assert os.readlink(f"/proc/{pid}/cwd") == str(demo.server.conf.parent.parent / "demo")


def test_demo_reload_and_quit(demo: Demo) -> None:
    server = demo.server
    base = server.conf.parent.parent
    pid_file = base / "run" / "frontd.pid"
    assert pid_file.read_text() == f"{server.pid}\n"
    before = demo.app_pid()

    result = frontd_cli("-s", "reload", "-c", "conf/frontd.conf", cwd=base)
    assert result.returncode == 0, result.stderr
    server.wait_error_log("configuration reloaded")
    # A reload replaces the spawned application as well.
    wait_for(lambda: demo.app_pid() != before, 20, "a new application process")
    after = demo.app_pids[-1]
    assert get(server.port, "/cgi-bin/hello.sh")[0] == 200 and get(server.port, "/")[0] == 200

    result = frontd_cli("-s", "quit", "-c", "conf/frontd.conf", cwd=base)
    assert result.returncode == 0, result.stderr
    assert server.proc.wait(20) == 0
    assert not pid_file.exists()
    wait_for(lambda: not alive(before) and not alive(after), 10, "the application to stop")


def test_demo_redirect_and_error_page(demo: Demo) -> None:
    answer = demo.server.raw(b"GET /manual/index.html?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 301 ") and b"\r\nlocation: /docs/index.html?x=1\r\n" in answer
    status, body = get(demo.server.port, "/no/such/page")
    assert status == 404 and b"<h1>Nothing here</h1>" in body
