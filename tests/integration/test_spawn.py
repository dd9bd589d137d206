"""Spawned backends (`spawn = [...]`): real applications started by frontd on the socket it creates.

flup's FastCGI server on fd 0, flup's SCGI server and a small HTTP server on the inherited fd 3
(LISTEN_FDS), uWSGI on fd 0; a killed process comes back, a crashing one backs off, a reload
replaces every process under a running client without a failed request, and after a stop no
process of theirs is left. Every application's argv holds this test's tmp_path, which is how the
teardown finds (in /proc) and kills by PID whatever would have survived.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Frontd, wait_for
from tests.integration.processes import alive, frontd_cli, get, uid_of

Start = Callable[..., Frontd]
PY = sys.executable

# One WSGI application for every kind: it tells which process answered and what it was given.
COMMON = r'''
import os, sys

def application(environ, start_response):
    body = (f"{os.environ.get('APP_KIND')} pid={os.getpid()} version={os.environ.get('APP_VERSION')} "
            f"path={environ.get('PATH_INFO')} fd={os.environ.get('FRONTD_SOCKET_FD')} "
            f"listen_fds={os.environ.get('LISTEN_FDS')} args={' '.join(sys.argv[1:])}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# FastCGI 1.0 §2.2: no bindAddress, so flup takes the listening socket on fd 0.
FCGI_APP = r'''
from flup.server.fcgi import WSGIServer
from common import application
WSGIServer(application).run()
'''

# flup's SCGI server binds its own address; this one takes the inherited descriptor instead.
SCGI_APP = r'''
import os, socket
from flup.server.scgi import WSGIServer
from common import application

class InheritedSocketServer(WSGIServer):
    def _setupSocket(self):
        return socket.socket(fileno=int(os.environ["FRONTD_SOCKET_FD"]))

InheritedSocketServer(application).run()
'''

# An HTTP server on systemd's socket-activation descriptor; SIGTERM lets requests in flight finish.
HTTP_APP = r'''
import os, signal, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

assert os.environ["LISTEN_PID"] == str(os.getpid()) and os.environ["LISTEN_FDS"] == "1"

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if "slow" in self.path:  # tell the test it is here, then take a while
            open("slow.started", "w").close()
            time.sleep(1.0)
        body = (f"http pid={os.getpid()} version={os.environ.get('APP_VERSION')} path={self.path} "
                f"fd={os.environ['FRONTD_SOCKET_FD']} uid={os.getuid()}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight

server = Server(("", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
if os.environ.get("GRACEFUL") != "no":  # else SIGTERM kills it at once, whatever it is doing
    signal.signal(signal.SIGTERM, lambda *args: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.server_close()
'''

CRASH_APP = ("import sys\nprint('crash app: starting')\nprint('crash app: giving up', file=sys.stderr)\n"
             "sys.exit(3)\n")


@pytest.fixture(autouse=True)
def apps(tmp_path: Path) -> Iterator[Path]:
    """The applications in tmp_path/apps; at teardown (after frontd's: autouse fixtures are set up
    first), any process still running one of them is killed by PID."""
    directory = tmp_path / "apps"
    directory.mkdir()
    for name, text in (("common.py", COMMON), ("fcgi_app.py", FCGI_APP), ("scgi_app.py", SCGI_APP),
                       ("http_app.py", HTTP_APP), ("crash_app.py", CRASH_APP)):
        (directory / name).write_text(text)
    yield directory
    for pid in running(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


def route(prefix: str, kind: str, argv: list[str], extra: str = "") -> str:
    quoted = ", ".join(f'"{arg}"' for arg in argv)
    return f"""
  [[vhost.route]]
  prefix = "{prefix}"
  {kind} = true
  spawn = [{quoted}]
  {extra}
"""


def site(*routes: str) -> str:
    return '[[vhost]]\nnames = ["localhost"]\n' + "".join(routes)


def answer(server: Frontd, path: str) -> dict[str, str]:
    """GET path: the application's "kind key=value ..." line as a dict (kind under "kind")."""
    status, body = get(server.port, path)
    assert status == 200, body
    kind, *pairs = body.decode().split()
    fields = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    fields["kind"] = kind
    fields["line"] = body.decode()
    return fields


def started_pids(server: Frontd, label: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{re.escape(label)}: process (\d+) started", server.errors())]


TOP = 'user = "root"\nrun_dir = "run"\n' if os.geteuid() == 0 else 'run_dir = "run"\n'


def test_flup_fastcgi_on_fd0_and_nothing_left_after_stop(frontd: Start, apps: Path, tmp_path: Path) -> None:
    env = 'processes = 2\n  env = { APP_KIND = "fastcgi", APP_VERSION = "v1" }\n  cwd = "apps"'
    server = frontd(site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")], env)), top=TOP)
    fields = answer(server, "/app/hello")
    assert fields["kind"] == "fastcgi" and fields["fd"] == "0" and fields["path"] == "/hello"
    assert fields["listen_fds"] == "None"  # fd 0 is FastCGI's convention, not systemd's
    pids = set(started_pids(server, "fastcgi localhost/app/"))
    assert len(pids) == 2 and int(fields["pid"]) in pids
    assert set(running(str(apps))) == pids
    # The socket: in run_dir (created 0700), only for frontd's user (0660).
    run = tmp_path / "run"
    sock = run / "localhost_app.sock"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o660
    # The processes are in sessions of their own, not in the master's.
    assert all(os.getsid(pid) == pid for pid in pids)

    server.stop()
    assert server.proc.returncode == 0
    assert running(str(apps)) == []
    assert re.search(r"fastcgi localhost/app/: process \d+ exited with status 0", server.errors())
    assert not sock.exists() and not run.exists()


def test_flup_scgi_on_inherited_fd_with_placeholders(frontd: Start, apps: Path) -> None:
    argv = [PY, str(apps / "scgi_app.py"), "{socket}", "{address}", "{fd}"]
    server = frontd(site(route("/scgi/", "scgi", argv, 'env = { APP_KIND = "scgi" }\n  cwd = "apps"')), top=TOP)
    fields = answer(server, "/scgi/x/y")
    path = str(server.conf.parent / "run" / "localhost_scgi.sock")
    assert fields["kind"] == "scgi" and fields["path"] == "/x/y"
    assert fields["fd"] == "3" and fields["listen_fds"] == "1"
    assert fields["line"].rstrip().endswith(f"args={path} unix:{path} 3")


def test_uwsgi_on_fd0(frontd: Start, apps: Path) -> None:
    uwsgi = shutil.which("uwsgi")
    if uwsgi is None or not any(Path(d).glob("python3*_plugin.so") for d in ("/usr/lib/uwsgi/plugins",)):
        pytest.skip("uwsgi with its python3 plugin is not installed (tests/run.sh installs them)")
    argv = ["uwsgi", "--plugin", "python3", "--wsgi-file", str(apps / "common.py"), "--need-app",
            "--die-on-term", "--master", "--processes", "2", "--disable-logging"]
    server = frontd(site(route("/wsgi/", "uwsgi", argv, 'env = { APP_KIND = "uwsgi" }')), top=TOP)
    fields = answer(server, "/wsgi/z")
    assert fields["kind"] == "uwsgi" and fields["path"] == "/z" and fields["fd"] == "0"
    assert server.wait_error_log(r"\] \d+: uwsgi localhost/wsgi/: process \d+: uwsgi socket 0 inherited UNIX address "
                                 r".*localhost_wsgi\.sock fd 0")
    # uWSGI's banner: each line with the error log's prefix and its source.
    assert server.wait_error_log(r"\n\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[warning\] \d+: uwsgi localhost/wsgi/: process \d+: "
                                 r"\*\*\* Starting uWSGI")
    assert len(running(str(apps))) == 3  # uWSGI's master and its two workers

    server.stop()
    assert running(str(apps)) == []


def test_http_app_on_tcp_socket(frontd: Start, apps: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    extra = f'socket = "127.0.0.1:{port}"\n  env = {{ APP_VERSION = "v1" }}\n  cwd = "apps"'
    server = frontd(site(route("/web/", "proxy", [PY, str(apps / "http_app.py")], extra)), top=TOP)
    fields = answer(server, "/web/page?q=1")
    assert fields["kind"] == "http" and fields["path"] == "/web/page?q=1" and fields["fd"] == "3"
    # frontd created the socket: the application reached on it directly answers as well.
    status, body = get(port, "/direct")
    assert status == 200 and body.startswith(b"http pid=")


def spawned_backend(server: Frontd) -> dict[str, object]:
    """The status page's entry for the spawned backend (its JSON view)."""
    status, body = get(server.port, "/frontd-status?format=json")
    assert status == 200, body
    backends = [b for b in json.loads(body)["backends"] if b["kind"] == "fastcgi"]
    assert len(backends) == 1
    return backends[0]  # type: ignore[no-any-return]


def test_killed_process_comes_back(frontd: Start, apps: Path) -> None:
    env = 'env = { APP_KIND = "fastcgi" }\n  cwd = "apps"'
    text = site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")], env))
    server = frontd(text.replace('names = ["localhost"]\n', 'names = ["localhost"]\nstatus = "/frontd-status"\n'),
                    top=TOP)
    first = int(answer(server, "/app/")["pid"])
    backend = spawned_backend(server)
    assert (backend["processes"], backend["restarts"]) == (1, 0)
    assert str(backend["address"]).endswith("/run/localhost_app.sock")
    os.kill(first, signal.SIGKILL)
    server.wait_error_log(rf"fastcgi localhost/app/: process {first} killed by signal SIGKILL; starting a new one\n")
    wait_for(lambda: len(started_pids(server, "fastcgi localhost/app/")) == 2, what="the new process")
    second = started_pids(server, "fastcgi localhost/app/")[1]
    assert int(answer(server, "/app/")["pid"]) == second
    # The master took it for an application process, not a worker: no worker was replaced.
    assert f"worker {first}" not in server.errors()
    assert len(re.findall(r"worker \d+ started", server.errors())) == 1
    backend = spawned_backend(server)
    assert (backend["processes"], backend["restarts"]) == (1, 1)


def test_crashing_app_backs_off(frontd: Start, apps: Path) -> None:
    server = frontd(site(route("/app/", "fastcgi", [PY, str(apps / "crash_app.py")],
                               'cwd = "apps"\n  timeout = "1s"')), top=TOP)
    server.wait_error_log(r"process \d+ exited with status 3; starting a new one\n")
    server.wait_error_log(r"process \d+ exited with status 3; starting a new one in 0\.1s")
    server.wait_error_log(r"process \d+ exited with status 3; starting a new one in 0\.2s")
    # Its output is in the error log, each line with the log's prefix and its source (issue 12,
    # item 9): standard output at info, standard error at warning.
    stamp = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"
    for level, text in (("info", "crash app: starting"), ("warning", "crash app: giving up")):
        found = re.findall(rf"^{stamp} \[{level}\] (\d+): fastcgi localhost/app/: process (\d+): {text}$",
                           server.errors(), re.MULTILINE)
        assert found, server.errors()
        assert all(int(master) == server.pid for master, _ in found)
        assert {int(pid) for _, pid in found} <= set(started_pids(server, "fastcgi localhost/app/"))
    assert not re.search(r"^crash app", server.errors(), re.MULTILINE)  # no bare line
    status, _ = get(server.port, "/app/", timeout=10)
    # While it waits out its back-off, 503 at once; in the moment a process runs, nobody accepts
    # and the request waits in the backlog until the route's timeout.
    assert status in (503, 504)
    assert server.proc.poll() is None


def test_exec_failure_is_logged_and_requests_get_503_at_once(frontd: Start, apps: Path) -> None:
    script = apps / "broken.py"
    script.write_text(f"#!{PY}\n" + CRASH_APP)
    script.chmod(0o755)
    server = frontd(site(route("/app/", "fastcgi", [str(script)], 'cwd = "apps"\n  timeout = "20s"')), top=TOP)
    server.wait_error_log(r"process \d+ exited with status 3; starting a new one")
    # Broken after the check at start: the next start fails in execve, which the log names.
    script.write_text("#!/nonexistent/interpreter\n")
    server.wait_error_log(rf"fastcgi localhost/app/: cannot start {re.escape(str(script))}: "
                          rf"executing {re.escape(str(script))}: No such file or directory")
    server.wait_error_log(r"process \d+ exited with status 127; starting a new one")
    # No process can accept, and none will: a request is answered 503 at once, not after the
    # route's timeout (issue 12, item 7), with one log line.
    started = time.monotonic()
    status, body = get(server.port, "/app/", timeout=30)
    assert status == 503 and time.monotonic() - started < 5, (status, body)
    assert b"Traceback" not in body
    server.wait_error_log(r"the spawned application is not running \(it failed and waits to be restarted")


class Client(threading.Thread):
    """GETs `path` on a fresh connection after another until stopped; keeps every outcome."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = get(self.port, self.path, timeout=15)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"{status} {body[:200]!r}")
            self.bodies.append(body.decode(errors="replace"))

    def versions(self) -> list[str]:
        return [m.group(1) for b in list(self.bodies) if (m := re.search(r"version=(\S+)", b))]

    def stop(self) -> None:
        self.halt.set()
        self.join(20)


def test_reload_replaces_every_process_without_a_failed_request(frontd: Start, apps: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fcgi = 'processes = 2\n  env = { APP_KIND = "fastcgi", APP_VERSION = "v1" }\n  cwd = "apps"'
    http = f'processes = 2\n  socket = "127.0.0.1:{port}"\n  env = {{ APP_VERSION = "v1" }}\n  cwd = "apps"'
    server = frontd(site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")], fcgi),
                         route("/web/", "proxy", [PY, str(apps / "http_app.py")], http)),
                    top=TOP + 'shutdown_timeout = "5s"\n')
    wait_for(lambda: len(running(str(apps))) == 4, what="the 4 processes")
    old = set(running(str(apps)))
    clients = [Client(server.port, "/app/x"), Client(server.port, "/app/y"), Client(server.port, "/web/z")]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: all(len(c.bodies) >= 10 for c in clients), what="requests before the reload")
        server.conf.write_text(server.conf.read_text().replace('"v1"', '"v2"'))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_error_log("fastcgi localhost/app/: the new processes took over")
        wait_for(lambda: not set(running(str(apps))) & old, timeout=15, what="the old processes to exit")
        marks = [len(c.bodies) for c in clients]
        wait_for(lambda: all(len(c.bodies) >= m + 10 for c, m in zip(clients, marks)),
                 what="requests after the old processes left")
    finally:
        for client in clients:
            client.stop()
    for client in clients:
        assert client.failures == [], client.failures
        assert client.versions()[0] == "v1" and client.versions()[-1] == "v2"
    new = set(running(str(apps)))
    assert len(new) == 4 and not new & old
    assert "proxy localhost/web/: replacing 2 process(es) one at a time" in server.errors()
    assert "killing" not in server.errors()  # every old process stopped on SIGTERM


def test_reload_with_an_app_that_does_not_start_keeps_the_old(frontd: Start, apps: Path) -> None:
    env = 'env = { APP_KIND = "fastcgi" }\n  cwd = "apps"'
    server = frontd(site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")], env)), top=TOP)
    before = answer(server, "/app/")["pid"]
    server.conf.write_text(server.conf.read_text().replace("fcgi_app.py", "crash_app.py"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log(r"new process \d+ exited with status 3 before it took over; the running processes "
                          r"carry on")
    assert answer(server, "/app/")["pid"] == before


def test_runs_as_the_route_user_not_root(frontd: Start, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} (readable by nobody) is not installed")
    # tmp_path is private to root: the application lives where nobody can read it.
    shared = Path(tempfile.mkdtemp(prefix="frontd-spawn-"))
    try:
        shared.chmod(0o755)
        (shared / "http_app.py").write_text(HTTP_APP)
        extra = f'user = "nobody"\n  cwd = "{shared}"'
        server = frontd(site(route("/web/", "proxy", [python, str(shared / "http_app.py")], extra)),
                        top='run_dir = "run"\n')
        fields = answer(server, "/web/")
        nobody = __import__("pwd").getpwnam("nobody").pw_uid
        assert fields["uid"] == str(nobody) and uid_of(int(fields["pid"])) == nobody
        server.stop()
        assert running(str(shared)) == []
    finally:
        for pid in running(str(shared)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(shared, ignore_errors=True)


def test_refuses_to_run_as_root_unless_told(frontd: Start, apps: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the check applies when frontd runs as root")
    conf = tmp_path / "root.conf"
    conf.write_text('listen = ["127.0.0.1:0"]\n' + site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")])))
    result = frontd_cli("-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"root\.conf: vhost\[0\]\.route\[0\]\.spawn: frontd runs as root and would run this "
                     r'command as root: set user .* or user = "root"', result.stderr)


def test_reload_during_a_reload_and_dropped_routes(frontd: Start, apps: Path, tmp_path: Path) -> None:
    fcgi = 'env = { APP_KIND = "fastcgi", APP_VERSION = "v1" }\n  cwd = "apps"'
    scgi = 'env = { APP_KIND = "scgi" }\n  cwd = "apps"'
    server = frontd(site(route("/app/", "fastcgi", [PY, str(apps / "fcgi_app.py")], fcgi),
                         route("/old/", "scgi", [PY, str(apps / "scgi_app.py")], scgi)), top=TOP)
    assert answer(server, "/old/")["kind"] == "scgi"
    old_socket = tmp_path / "run" / "localhost_old.sock"
    assert old_socket.exists()
    text = server.conf.read_text()
    # v2 drops /old/ and adds /new/; v3 follows before v2's new processes took over.
    v2 = text.replace('"v1"', '"v2"').replace('"/old/"', '"/new/"')
    server.conf.write_text(v2)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log("fastcgi localhost/app/: starting 1 new process")
    server.conf.write_text(v2.replace('"v2"', '"v3"'))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.errors().count("configuration reloaded") == 2, what="both reloads")
    server.wait_error_log("fastcgi localhost/app/: the new processes took over")
    wait_for(lambda: answer(server, "/app/")["version"] == "v3", what="v3 to answer")
    assert answer(server, "/new/")["kind"] == "scgi"
    server.wait_error_log("scgi localhost/old/: no longer in the configuration; stopping its processes")
    wait_for(lambda: not old_socket.exists(), what="the dropped route's socket to go")
    assert "reload failed" not in server.errors()
    wait_for(lambda: len(running(str(apps))) == 2, what="one process per route left")


def test_graceful_stop_lets_the_application_finish_first(frontd: Start, apps: Path) -> None:
    # An application that dies on SIGTERM: the request succeeds only if it is told after the worker is done.
    extra = 'cwd = "apps"\n  env = { GRACEFUL = "no" }'
    server = frontd(site(route("/web/", "proxy", [PY, str(apps / "http_app.py")], extra)), top=TOP)
    assert answer(server, "/web/")["kind"] == "http"
    outcome: list[tuple[int, bytes]] = []
    request = threading.Thread(target=lambda: outcome.append(get(server.port, "/web/slow", timeout=10)))
    request.start()
    wait_for(lambda: (apps / "slow.started").exists(), what="the slow request to reach the application")
    server.proc.send_signal(signal.SIGQUIT)
    request.join(10)
    assert outcome and outcome[0][0] == 200 and b"path=/web/slow" in outcome[0][1]
    server.proc.wait(10)
    errors = server.errors()
    # The worker first (its request needed the application), then the application.
    worker = re.search(r"worker \d+ exited with status 0", errors)
    app = re.search(r"proxy localhost/web/: process \d+ killed by signal SIGTERM", errors)
    assert worker and app and worker.start() < app.start()
    assert running(str(apps)) == []


def uwsgi_argv(apps: Path) -> list[str]:
    uwsgi = shutil.which("uwsgi")
    if uwsgi is None or not any(Path(d).glob("python3*_plugin.so") for d in ("/usr/lib/uwsgi/plugins",)):
        pytest.skip("uwsgi with its python3 plugin is not installed (tests/run.sh installs them)")
    return ["uwsgi", "--plugin", "python3", "--wsgi-file", str(apps / "common.py"), "--need-app",
            "--die-on-term", "--master", "--processes", "1", "--disable-logging"]


@pytest.mark.parametrize("kind", ["fastcgi", "fastcgi-tcp", "scgi", "proxy", "proxy-tcp", "uwsgi"])
def test_reload_retires_every_old_process_at_once(frontd: Start, apps: Path, kind: str) -> None:
    """Issue 12, item 6: with processes = 2, one old process stayed until the kill 30s later."""
    programs = {"fastcgi": [PY, str(apps / "fcgi_app.py")], "fastcgi-tcp": [PY, str(apps / "fcgi_app.py")],
                "scgi": [PY, str(apps / "scgi_app.py")], "proxy": [PY, str(apps / "http_app.py")],
                "proxy-tcp": [PY, str(apps / "http_app.py")]}
    argv = uwsgi_argv(apps) if kind == "uwsgi" else programs[kind]
    extra = 'processes = 2\n  env = { APP_KIND = "x", APP_VERSION = "v1" }\n  cwd = "apps"'
    if kind.endswith("-tcp"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            extra += f'\n  socket = "127.0.0.1:{probe.getsockname()[1]}"'
    server = frontd(site(route("/app/", kind.split("-")[0], argv, extra)), top=TOP)
    old = set(running(str(apps)))
    for _ in range(5):  # each wakes both processes: one accepts, the other may be left blocked in accept(2)
        assert answer(server, "/app/")["version"] == "v1"
    server.conf.write_text(server.conf.read_text().replace('"v1"', '"v2"'))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: answer(server, "/app/")["version"] == "v2", timeout=15, what="v2 to answer")
    # shutdown_timeout is 30s: well before that, every old process is gone, none of them killed.
    wait_for(lambda: not set(running(str(apps))) & old, timeout=10, what="the old processes to exit")
    assert "did not exit after SIGTERM" not in server.errors()


# An HTTP server on the inherited fd 3 whose two threads each block in accept(2), as threaded
# servers do. Told to stop, each thread ends at its next connection, and the process exits when
# both have: it needs two wake-up connections, which frontd cannot know.
THREADED_APP = r'''
import os, signal, socket, threading

sock = socket.socket(fileno=3)
stopping = threading.Event()

def serve():
    while True:
        conn, _ = sock.accept()
        if stopping.is_set():
            conn.close()
            return
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        if data:
            body = f"threaded pid={os.getpid()} version={os.environ['APP_VERSION']}\n".encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        conn.close()

signal.signal(signal.SIGTERM, lambda *args: stopping.set())
threads = [threading.Thread(target=serve) for _ in range(2)]
for thread in threads:
    thread.start()
while not stopping.is_set():
    signal.pause()
for thread in threads:
    thread.join()
'''


def test_reload_wakes_an_old_process_that_missed_its_wake_up(frontd: Start, apps: Path) -> None:
    """Issue 12, item 6: one round of wake-up connections, one per old process, left a process
    with a thread still blocked in accept(2) until the kill after shutdown_timeout."""
    (apps / "threaded_app.py").write_text(THREADED_APP)
    extra = 'processes = 2\n  env = { APP_VERSION = "v1" }\n  cwd = "apps"'
    server = frontd(site(route("/app/", "proxy", [PY, str(apps / "threaded_app.py")], extra)), top=TOP)
    wait_for(lambda: len(running(str(apps))) == 2, what="the 2 processes")
    old = set(running(str(apps)))
    assert answer(server, "/app/")["version"] == "v1"
    server.conf.write_text(server.conf.read_text().replace('"v1"', '"v2"'))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log("proxy localhost/app/: the new processes took over")
    # shutdown_timeout is 30s: well before that, both old processes are gone, neither killed.
    wait_for(lambda: not set(running(str(apps))) & old, timeout=10, what="the old processes to exit")
    assert answer(server, "/app/")["version"] == "v2"
    assert "did not exit after SIGTERM" not in server.errors()
    for pid in old:
        server.wait_error_log(rf"proxy localhost/app/: process {pid} exited with status 0")


def test_t_refuses_a_command_its_user_cannot_execute(tmp_path: Path) -> None:
    """Issue 12, item 7: a program under a directory private to root, run as nobody, passed -t
    and then failed at every start, for ever."""
    if os.geteuid() != 0:
        pytest.skip("runs the command as another user: needs root")
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("/usr/bin/python3 (executable by nobody) is not installed")
    shared = Path(tempfile.mkdtemp(prefix="frontd-spawn-t-"))
    try:
        shared.chmod(0o755)
        private = shared / "venv"  # like a virtualenv under /root
        (private / "bin").mkdir(parents=True, mode=0o755)
        private.chmod(0o700)
        python = private / "bin" / "python"
        python.symlink_to("/usr/bin/python3")
        script = shared / "app.py"  # readable by all, its interpreter is not
        script.write_text(f"#!{python}\n")
        script.chmod(0o755)
        conf = shared / "frontd.conf"
        for program, message in (
                (python, rf'"{python}" is not executable by user "nobody" \(no search permission on "{private}"\)'),
                (script, rf'the interpreter "{python}" of "{script}" is not executable by user "nobody" '
                         rf'\(no search permission on "{private}"\)')):
            conf.write_text('user = "nobody"\n' + site(route("/app/", "fastcgi", [str(program)])))
            result = frontd_cli("-t", "-c", str(conf), cwd=shared)
            assert result.returncode == 1
            assert re.fullmatch(rf"frontd: {conf}: vhost\[0\]\.route\[0\]\.spawn\[0\]: {message}\n", result.stderr)
        private.chmod(0o755)
        assert frontd_cli("-t", "-c", str(conf), cwd=shared).returncode == 0
        # The working directory too: the process could not enter it.
        (shared / "home").mkdir(mode=0o700)
        conf.write_text('user = "nobody"\n' + site(route("/app/", "fastcgi", [str(script)], 'cwd = "home"')))
        result = frontd_cli("-t", "-c", str(conf), cwd=shared)
        assert result.returncode == 1 and f'cwd: user "nobody" cannot enter "{shared}/home"' in result.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
