"""CGI processes at the socket: timeouts, kills, reaping, max_processes, memory and stderr.

Scripts leave their pid in STATE_DIR so that a test can check the process (and what it
started) is gone, not merely that frontd answered.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest

from tests.conftest import Frontd, recv_all, stop_process, wait_for
from tests.http_client import parse_one
from tests.integration.test_cgi import Site, c_programs, send, start_site

__all__ = ["c_programs"]  # the session fixture, shared with test_cgi.py

GRACE = 1.0  # frontd.gateway.cgi.KILL_GRACE

EXTRA = {
    "silent.sh": "#!/bin/sh\necho $$ > \"$STATE_DIR/silent.pid\"\nexec sleep 8\n",
    "die.sh": "#!/bin/sh\necho 'dying now' >&2\nexit 3\n",
    "killed.sh": "#!/bin/sh\nkill -9 $$\n",
    "half.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n'\nexit 0\n",
    "ignore-term.sh": "#!/bin/sh\ntrap '' TERM\necho $$ > \"$STATE_DIR/ignore-term.pid\"\n"
                      "while :; do sleep 0.1; done\n",
    # A background child that let go of stdout: the response ends, the child dies with the group.
    "bg-detached.sh": "#!/bin/sh\nsleep 20 >/dev/null 2>&1 &\necho $! > \"$STATE_DIR/bg-detached.pid\"\n"
                      "printf 'Content-Type: text/plain\\n\\nstarted\\n'\n",
    # A background child that holds stdout: the output never ends, the timeout kills the group.
    "bg-holding.sh": "#!/bin/sh\nsleep 20 &\necho $! > \"$STATE_DIR/bg-holding.pid\"\n"
                     "printf 'Content-Type: text/plain\\n\\nstarted\\n'\n",
    # docs/cgi.md's advice for work that outlives the request: setsid. This job lets go of stdout
    # but keeps the script's stderr, the pipe to the worker.
    "bg-setsid.sh": "#!/bin/sh\nsetsid sh -c 'echo $$ >> \"$STATE_DIR/bg-setsid.pids\"; "
                    ": > \"$STATE_DIR/bg-setsid.$1\"; exec sleep 30' job $$ >/dev/null </dev/null &\n"
                    # Answer once the job is in its own session, or the group's kill takes it.
                    "while [ ! -e \"$STATE_DIR/bg-setsid.$$\" ]; do sleep 0.01; done\n"
                    "printf 'Content-Type: text/plain\\n\\nstarted\\n'\n",
    "stream.sh": "#!/bin/sh\necho $$ > \"$STATE_DIR/stream.pid\"\nprintf 'Content-Type: text/plain\\n\\n'\n"
                 "while :; do echo tick; sleep 0.02; done\n",
    "hold.sh": "#!/bin/sh\necho $$ > \"$STATE_DIR/hold.pid\"\n"
               "while [ ! -e \"$STATE_DIR/hold.release\" ]; do sleep 0.02; done\n"
               "printf 'Content-Type: text/plain\\n\\nreleased\\n'\n",
    "stderr-first.sh": "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\000' e >&2\n"
                       "printf 'Content-Type: text/plain\\n\\nafter stderr\\n'\n",
    "no-shebang.sh": "printf 'Content-Type: text/plain\\n\\nran\\n'\n",
    "bad-interpreter.sh": "#!/nonexistent/sh\nprintf 'Content-Type: text/plain\\n\\nran\\n'\n",
    # What the script holds open: its three pipes (or /dev/null), never the worker's sockets.
    "fds.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nls -l /proc/$$/fd\n",
    # Answers without reading its (large) body, and exits.
    "no-read.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nnot read\\n'\n",
    "exit-late.sh": "#!/bin/sh\necho $$ > \"$STATE_DIR/exit-late.pid\"\nprintf 'Content-Type: text/plain\\n\\nbye\\n'\n"
                    "exec >&- 2>&-\nsleep 0.3\n",
}


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory, c_programs: dict[str, Path]) -> Iterator[tuple[Frontd, Site]]:
    server, site = start_site(tmp_path_factory, c_programs, "cgiproc", EXTRA)
    try:
        yield server, site
    finally:
        stop_process(server.proc)


# -- /proc helpers ------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return data[data.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and fields[1] == str(pid):
                found.append(int(entry))
    return found


def gone(pid: int) -> bool:
    """No such process, not even a zombie: for frontd's own children, which frontd reaps."""
    return stat_fields(pid) is None


def dead(pid: int, server: Frontd) -> bool:
    """Not running: gone, or a zombie that is no longer frontd's child. A script's background
    child is orphaned when the script exits; reaping it is then init's business."""
    fields = stat_fields(pid)
    return fields is None or (fields[0] == "Z" and int(fields[1]) not in workers(server))


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def workers(server: Frontd) -> list[int]:
    return children(server.pid) or [server.pid]


def zombies(server: Frontd) -> list[int]:
    found = []
    for worker in workers(server):
        for child in children(worker):
            fields = stat_fields(child)
            if fields is not None and fields[0] == "Z":
                found.append(child)
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pid_from(site: Site, name: str) -> int:
    path = site.state / f"{name}.pid"
    wait_for(lambda: path.exists() and path.read_text().strip(), 10, f"{path}")
    return int(path.read_text())


# -- timeouts and dying scripts -------------------------------------------------------------------


def test_silent_script_is_504_and_killed(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    started = time.monotonic()
    answer = send(server, "/short/silent.sh")
    elapsed = time.monotonic() - started
    assert answer.status == 504
    assert 0.9 <= elapsed < 4, elapsed
    server.wait_error_log(rf"504: cgi {re.escape(str(site.cgi))}/silent\.sh: no output for 1s.*GET /short/silent\.sh")
    pid = pid_from(site, "silent")
    wait_for(lambda: gone(pid), 5, f"silent.sh ({pid}) to be killed and reaped")


@pytest.mark.parametrize("script,exit_log", [("die.sh", "exited with status 3"), ("killed.sh", "exited with signal 9"),
                                             ("half.sh", None)])
def test_script_dying_before_answering_is_502(proc: tuple[Frontd, Site], script: str, exit_log: str | None) -> None:
    server, site = proc
    answer = send(server, f"/cgi-bin/{script}")
    assert answer.status == 502
    # A script killed by a signal is reported as such, whatever it wrote (issue 13 §3).
    detail = r"killed by signal 9 \(SIGKILL\) before its output ended" if script == "killed.sh" else "response head: "
    server.wait_error_log(rf"502: cgi {re.escape(str(site.cgi))}/{script}: {detail}.*GET /cgi-bin/{script}")
    if exit_log:
        server.wait_error_log(rf"cgi {re.escape(str(site.cgi))}/{script} {exit_log}")
    if script == "die.sh":
        server.wait_error_log(r"die\.sh stderr: dying now, client: 127\.0\.0\.1")


def test_script_ignoring_sigterm_is_killed_after_the_grace(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    answer = send(server, "/short/ignore-term.sh")
    assert answer.status == 504
    answered = time.monotonic()
    pid = pid_from(site, "ignore-term")
    # SIGTERM was ignored: still there just after the 504 ...
    assert alive(pid) or time.monotonic() - answered > GRACE * 0.8
    # ... and gone (killed, reaped) once the grace is over.
    wait_for(lambda: gone(pid), GRACE + 4, f"ignore-term.sh ({pid}) to be SIGKILLed")
    assert time.monotonic() - answered >= GRACE * 0.5


def test_background_child_that_let_go_of_stdout_dies_with_the_group(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    answer = send(server, "/cgi-bin/bg-detached.sh")
    assert answer.status == 200 and answer.body == b"started\n"
    pid = pid_from(site, "bg-detached")
    wait_for(lambda: dead(pid, server), 5, f"the background sleep ({pid}) to be killed")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_setsid_job_holding_stderr_leaves_no_fd_in_the_worker(proc: tuple[Frontd, Site]) -> None:
    """Issue 13 §4: the stderr pipe and its loop reader were held for the job's lifetime
    (+20 fds for 20 requests); now they are closed a short drain after the script exits."""
    server, site = proc
    [worker] = workers(server)
    assert send(server, "/cgi-bin/env.sh").status == 200  # opens what a worker keeps (/dev/null)
    before = fd_count(worker)
    pids = site.state / "bg-setsid.pids"
    try:
        for _ in range(20):
            answer = send(server, "/cgi-bin/bg-setsid.sh")
            assert answer.status == 200 and answer.body == b"started\n"
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 20, 10, "20 setsid jobs")
        jobs = [int(p) for p in pids.read_text().split()]
        assert all(alive(pid) for pid in jobs)  # they outlive the request, as setsid asks
        wait_for(lambda: fd_count(worker) <= before, 10, f"the worker's fds back to {before}")
    finally:
        for pid in (int(p) for p in pids.read_text().split()) if pids.exists() else ():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_background_child_holding_stdout_is_killed_at_the_timeout(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    raw = server.raw(b"GET /short/bg-holding.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    # The head and the first bytes went out; then the output stalled, so the connection is closed
    # without the final chunk (the client can tell the response is incomplete).
    assert raw.startswith(b"HTTP/1.1 200 ") and b"started\n" in raw and not raw.endswith(b"0\r\n\r\n")
    pid = pid_from(site, "bg-holding")
    wait_for(lambda: dead(pid, server), GRACE + 4, f"the background sleep ({pid}) to be killed")
    server.wait_error_log(r"no output for 1s after the response started; closing.*GET /short/bg-holding\.sh")


def test_script_still_running_after_its_output_is_reaped(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    answer = send(server, "/cgi-bin/exit-late.sh")
    assert answer.body == b"bye\n"
    pid = pid_from(site, "exit-late")
    wait_for(lambda: gone(pid), 5, f"exit-late.sh ({pid}) to exit and be reaped")


def test_client_gone_kills_the_script(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    with server.connect() as sock:
        sock.sendall(b"GET /cgi-bin/stream.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"tick" not in data:
            data += sock.recv(4096)
        pid = pid_from(site, "stream")
        assert alive(pid)
    # The route's timeout is 10s: only the client's going away can end it this soon.
    wait_for(lambda: gone(pid), 5, f"stream.sh ({pid}) to be killed after the client left")


# -- limits ---------------------------------------------------------------------------------------


def test_max_processes_gives_503(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    release = site.state / "hold.release"
    first = server.connect()
    try:
        first.sendall(b"GET /one/hold.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        pid = pid_from(site, "hold")
        answer = send(server, "/one/env")
        assert answer.status == 503
        server.wait_error_log(r"503: cgi .*/env: max_processes \(1\) reached.*GET /one/env")
        # Other routes have their own count.
        assert send(server, "/cgi-bin/env").status == 200
        release.touch()
        assert parse_one(recv_all(first)).body == b"released\n"
    finally:
        release.touch()
        first.close()
    wait_for(lambda: gone(pid), 5, "hold.sh to be reaped")
    assert send(server, "/one/env").status == 200


def test_fifty_mib_output_streams_with_little_memory(proc: tuple[Frontd, Site]) -> None:
    server, _ = proc
    total = 50 * 1024 * 1024
    for _ in range(3):
        assert send(server, "/cgi-bin/length.sh").status == 200
    pids = workers(server)
    baseline = sum(rss_kib(p) for p in pids)
    peak = baseline
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /cgi-bin/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        received = 0
        status = 0
        stalled = False
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                if received >= 4 * 1024 * 1024 and not stalled:
                    # The client stops reading for a while: frontd must stop reading the script.
                    stalled = True
                    deadline = time.monotonic() + 0.5
                    while time.monotonic() < deadline:
                        peak = max(peak, sum(rss_kib(p) for p in pids))
                        time.sleep(0.05)
                data = sock.recv(65536)
                client.receive_data(data)
                # A slow client: a little at a time, memory sampled all along.
                if received < 12 * 1024 * 1024:
                    time.sleep(0.0005)
                    peak = max(peak, sum(rss_kib(p) for p in pids))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                received += len(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    assert status == 200
    assert received == total
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 8, f"frontd grew by {growth_mib:.1f} MiB while streaming 50 MiB"


def test_script_writing_a_mib_to_stderr_first_does_not_deadlock(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    started = time.monotonic()
    answer = send(server, "/cgi-bin/stderr-first.sh")
    assert answer.status == 200 and answer.body == b"after stderr\n"
    assert time.monotonic() - started < 8
    pattern = re.compile(rf"cgi {re.escape(str(site.cgi))}/stderr-first\.sh stderr: (e+), client: 127\.0\.0\.1")

    def logged() -> int:
        return sum(len(m.group(1)) for m in pattern.finditer(server.errors()))

    wait_for(lambda: logged() >= 1024 * 1024, 10, "1 MiB of stderr in the error log")
    assert b"eeee" not in answer.body


def test_script_holds_only_its_pipes_and_the_worker_keeps_its_directory(proc: tuple[Frontd, Site]) -> None:
    server, site = proc
    [worker] = workers(server)
    home = os.readlink(f"/proc/{worker}/cwd")
    answer = send(server, "/cgi-bin/fds.sh", method="POST", body=b"x" * 10)
    assert answer.status == 200, answer.body
    fds = {}
    for line in answer.body.decode().splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            fds[int(left.split()[-1])] = target
    # The worker's listeners and client sockets, other requests' pipes: none reach the script.
    assert not [t for t in fds.values() if t.startswith("socket:")], fds
    assert [fd for fd, t in fds.items() if t.startswith("pipe:")] == [0, 1, 2], fds
    # The script ran in its own directory; the worker is back in its own.
    assert os.readlink(f"/proc/{worker}/cwd") == home


def test_script_that_exits_before_reading_its_body_is_answered(proc: tuple[Frontd, Site]) -> None:
    server, _ = proc
    answer = send(server, "/cgi-bin/no-read.sh", method="POST", body=b"b" * (256 * 1024))  # four pipe buffers
    assert answer.status == 200 and answer.body == b"not read\n"
    wait_for(lambda: not zombies(server), 5, "no-read.sh to be reaped")


def test_many_concurrent_scripts_reaped_without_zombie_or_fd_leak(proc: tuple[Frontd, Site]) -> None:
    server, _ = proc
    [worker] = workers(server)
    assert send(server, "/cgi-bin/env.sh").status == 200  # what a worker keeps (/dev/null) is open
    before = fd_count(worker)
    socks = []
    for i in range(48):
        sock = server.connect()
        target = "/cgi-bin/no-read.sh" if i % 2 else "/cgi-bin/env.sh"
        body = b"p" * 70000 if i % 3 == 0 else b""
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        socks.append(sock)
    for sock in socks:
        sock.settimeout(20)
        assert recv_all(sock).startswith(b"HTTP/1.1 200 ")
        sock.close()
    wait_for(lambda: not zombies(server), 10, "every script to be reaped")
    wait_for(lambda: not children(worker), 10, "no script left under the worker")
    wait_for(lambda: fd_count(worker) <= before, 10, f"the worker's fds back to {before}")


def test_no_zombies_after_all_of_that(proc: tuple[Frontd, Site]) -> None:
    server, _ = proc
    for target in ("/cgi-bin/env", "/cgi-bin/die.sh", "/cgi-bin/local.sh", "/cgi-bin/nph-raw.sh",
                   "/cgi-bin/bg-detached.sh", "/cgi-bin/bad-missing", "/cgi-bin/length.sh"):
        send(server, target)
    wait_for(lambda: not zombies(server), 5, "every CGI child to be reaped")
    # Nothing is left running under the workers either: every script has exited.
    wait_for(lambda: not [c for w in workers(server) for c in children(w)], 10, "no CGI process left")


def test_stopping_frontd_kills_running_scripts(tmp_path_factory: pytest.TempPathFactory,
                                               c_programs: dict[str, Path]) -> None:
    server, site = start_site(tmp_path_factory, c_programs, "cgistop", EXTRA)
    try:
        sock = server.connect()
        sock.sendall(b"GET /cgi-bin/ignore-term.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        pid = pid_from(site, "ignore-term")
        assert alive(pid)
    finally:
        stop_process(server.proc)
    sock.close()
    # frontd's own process group is killed by the fixture; the script's session is not. It must
    # still be gone, and it ignores SIGTERM.
    wait_for(lambda: not alive(pid), 5, f"ignore-term.sh ({pid}) to be killed when frontd stopped")


@pytest.mark.parametrize("script,reason", [("no-shebang.sh", "Exec format error"),
                                           ("bad-interpreter.sh", "No such file or directory")])
def test_script_that_cannot_be_executed_is_502(proc: tuple[Frontd, Site], script: str, reason: str) -> None:
    server, site = proc
    answer = send(server, f"/cgi-bin/{script}")
    assert answer.status == 502 and b"ran" not in answer.body
    server.wait_error_log(rf"502: cgi {re.escape(str(site.cgi))}/{script}: cannot execute: {reason}")
