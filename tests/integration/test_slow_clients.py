"""Slow clients against a CGI route with few process slots, with slowhttptest (issue 13 §1).

Before request buffering, 128 slow uploads (slowhttptest -B) each held a CGI process that
waited for its body, so every slot of the route was taken and other visitors got 503 for as
long as the attack lasted. With request buffering (the default) a body is received whole before
the script is spawned: the slow uploads hold only their connections and a spool, and a normal
client's requests keep succeeding throughout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient
from tests.integration.processes import open_sockets, resident, worker_of

Start = Callable[..., Frontd]

SLOW_CONNECTIONS = 100  # of slowhttptest; at most 128, as the brief for these tests says
ATTACK_SECONDS = 8  # slowhttptest's own bound (-l); it is stopped by PID at the end anyway
NORMAL_REQUESTS = 40

pytestmark = pytest.mark.skipif(shutil.which("slowhttptest") is None, reason="slowhttptest not installed")


def site(tmp_path: Path, extra: str = "", max_processes: int = 4) -> str:
    scripts = tmp_path / "cgi-bin"
    scripts.mkdir()
    for name, text in {
        # A form handler: it reads its whole body, as scripts do.
        "read.sh": "#!/bin/sh\ncat >/dev/null\nprintf 'Content-Type: text/plain\\n\\nread\\n'\n",
        "hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n",
        # 32 MiB of output, far more than the pipes and socket buffers hold.
        "big.sh": "#!/bin/sh\necho $$ > big.pid\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                  "exec head -c 33554432 /dev/zero\n",
        # 4 MiB, each run leaving a line in done.log once all of it was written.
        "large.sh": "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                    "head -c 4194304 /dev/zero\necho $$ >> done.log\n",
    }.items():
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)
    return (f'workers = 1\n[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
            f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{scripts}"\n  max_processes = {max_processes}\n'
            f"{extra}\n")


def normal_client_during_slow_body(server: Frontd, tmp_path: Path, read: str = "/cgi-bin/read.sh",
                                   hello: str = "/cgi-bin/hello.sh") -> tuple[int, int, int]:
    """Run slowhttptest -B at `read` (a script that reads its body, then answers "read") and a
    normal client beside it, at `read` and `hello` (answers "hello"); return the normal client's
    successes, its requests, and the slow connections the worker held at the end."""
    def on(attacker: int) -> bool:
        # Its uploads are connected (they wait for their bodies), or the route refuses them for
        # want of a process slot.
        return (open_sockets(attacker) >= SLOW_CONNECTIONS * 3 // 4
                or server.access().count(f'POST {read} HTTP/1.1" 503') >= SLOW_CONNECTIONS // 4)

    return normal_client_during_attack(
        server, tmp_path, ["-B", "-s", "65536", "-x", "10", "-u", server.url(read)], on, read, hello)


def normal_client_during_attack(server: Frontd, tmp_path: Path, attack: list[str], on: Callable[[int], bool],
                                read: str, hello: str) -> tuple[int, int, int]:
    """Run slowhttptest with the mode arguments `attack` and, once `on(its PID)`, a normal client
    beside it, at `read` and `hello` (see normal_client_during_slow_body)."""
    worker = worker_of(server)
    idle_sockets = open_sockets(worker)
    with open(tmp_path / "slowhttptest.out", "wb") as out:
        attacker = subprocess.Popen(
            ["slowhttptest", "-c", str(SLOW_CONNECTIONS), "-r", str(SLOW_CONNECTIONS), "-i", "1",
             "-l", str(ATTACK_SECONDS), "-p", "2", *attack],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: on(attacker.pid), 10, "slowhttptest's connections")
        ok = 0
        for n in range(NORMAL_REQUESTS):
            try:
                if n % 2:
                    response = requests.get(server.url(hello), timeout=5)
                    ok += response.status_code == 200 and response.text == "hello\n"
                else:
                    response = requests.post(server.url(read), data=b"a=1" * 100, timeout=5)
                    ok += response.status_code == 200 and response.text == "read\n"
            except requests.RequestException:
                pass  # no answer within 5 s: a failure, counted as such
        held = open_sockets(worker) - idle_sockets
    finally:
        attacker.terminate()
        try:
            attacker.wait(5)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait()
    return ok, NORMAL_REQUESTS, held


def test_slow_uploads_hold_no_cgi_process(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site(tmp_path))
    started = time.monotonic()
    ok, total, held = normal_client_during_slow_body(server, tmp_path)
    assert time.monotonic() - started < ATTACK_SECONDS + 15
    assert ok == total, f"{ok}/{total} normal CGI requests succeeded during the slow-body attack"
    # The attack was still on when the normal client finished: its uploads were connected.
    assert held >= SLOW_CONNECTIONS // 2, held
    assert "max_processes (4) reached" not in server.errors()


@pytest.mark.parametrize("buffering", ["true", "false"])
def test_timeout_is_the_scripts_silence_not_the_upload(frontd: Start, tmp_path: Path, buffering: str) -> None:
    """Issue 13 §1: a 2 s upload to a script that reads as it comes, on a route with a 1 s
    timeout, got a 504 when streamed: the time spent waiting for the client counted as the
    script's silence. Buffered, the script starts once the body is here."""
    server = frontd(site(tmp_path, f'  timeout = "1s"\n  request_buffering = {buffering}'))
    pieces = 8
    with server.connect() as sock:
        sock.sendall(b"POST /cgi-bin/read.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % (pieces * 1000))
        for _ in range(pieces):
            time.sleep(0.25)  # the slow client itself, not a wait for the server
            sock.sendall(b"a" * 1000)
        answer = RawClient(sock).read()
    assert (answer.status, answer.body) == (200, b"read\n"), server.errors()[-2000:]


def gone(pid: int) -> bool:
    """Exited and reaped (frontd reaps its scripts): no /proc entry at all."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize("buffering", ["true", "false"])
def test_a_slow_reader_does_not_hold_the_script(frontd: Start, tmp_path: Path, buffering: str) -> None:
    """Issue 13 §1 (response buffering): a client that reads nothing held the CGI process (and
    its max_processes slot) until it read the output. Buffered, the script's output is read as
    fast as it comes, the script exits and is reaped while the client has read nothing, and
    the client then gets the whole body."""
    server = frontd(site(tmp_path, f"  response_buffering = {buffering}"))
    pid_file = tmp_path / "cgi-bin" / "big.pid"
    with server.connect() as sock:
        sock.sendall(b"GET /cgi-bin/big.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "big.sh to start")
        pid = int(pid_file.read_text())
        if buffering == "true":
            wait_for(lambda: gone(pid), 10, f"big.sh ({pid}) to exit before its client read anything")
        else:
            # Streamed: the script is blocked on its full stdout pipe, its slot held.
            wait_for(lambda: "pipe" in Path(f"/proc/{pid}/wchan").read_text(), 10,
                     "big.sh to block writing its output")
            assert not gone(pid)
        answer = RawClient(sock).read()
    assert answer.status == 200 and answer.body == bytes(32 << 20)
    wait_for(lambda: gone(pid), 10, f"big.sh ({pid}) to be reaped")


def test_slow_readers_hold_no_cgi_process(frontd: Start, tmp_path: Path) -> None:
    """Issue 13 §1: slowhttptest -X (slow read, a tiny receive window) at a route's 4 MiB output.
    Streamed, each slow reader held a CGI process until it had read the output, so four of them
    took every slot and other visitors got 503; buffered, the scripts exit at once and the
    output waits in a spool for the reader."""
    server = frontd(site(tmp_path))
    done = tmp_path / "cgi-bin" / "done.log"

    def answered() -> int:
        """The attack's requests whose script wrote all its output, or that were refused."""
        return ((len(done.read_text().split()) if done.exists() else 0)
                + server.access().count('GET /cgi-bin/large.sh HTTP/1.1" 503'))

    def on(attacker: int) -> bool:
        # The attack's first burst is over: every request was answered but for at most one
        # per process slot, which may still hold it (streamed) or be about to exit (buffered).
        if answered() < SLOW_CONNECTIONS - 4:
            return False
        try:
            wait_for(lambda: answered() >= SLOW_CONNECTIONS, 2, "the last scripts of the burst")
        except AssertionError:
            pass  # streamed: four scripts wait for their readers
        return True

    started = time.monotonic()
    ok, total, held = normal_client_during_attack(
        server, tmp_path, ["-X", "-k", "1", "-w", "1", "-y", "512", "-n", "1", "-z", "32",
                           "-u", server.url("/cgi-bin/large.sh")], on, "/cgi-bin/read.sh", "/cgi-bin/hello.sh")
    assert time.monotonic() - started < ATTACK_SECONDS + 15
    assert ok == total, f"{ok}/{total} normal CGI requests succeeded during the slow-read attack"
    assert held >= SLOW_CONNECTIONS // 2, held


MANY_READERS = 100
LARGE = 4 << 20  # large.sh's output
RSS_BOUND = 64 << 20  # growth of the worker's resident memory: a sixth of the output it holds


def test_many_slow_readers_spool_to_disk(frontd: Start, tmp_path: Path) -> None:
    """Issue 13 §1 (memory): many clients that read nothing of a large CGI output. Buffered, every
    script writes all its output and exits while its client reads nothing, and the worker keeps
    it on disk: its resident memory grows by far less than the 400 MiB it holds. Streamed, the
    scripts stay blocked on their pipes."""
    server = frontd(site(tmp_path, max_processes=MANY_READERS))
    worker = worker_of(server)
    done = tmp_path / "cgi-bin" / "done.log"
    before = resident(worker)
    clients: list[socket.socket] = []
    try:
        for _ in range(MANY_READERS):
            sock = socket.socket()
            sock.settimeout(30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that takes little
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /cgi-bin/large.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            clients.append(sock)
        wait_for(lambda: done.exists() and len(done.read_text().split()) == MANY_READERS, 40,
                 "every large.sh to write its whole output while its client reads nothing")
        grown = resident(worker) - before
        assert grown < RSS_BOUND, f"the worker's RSS grew by {grown >> 20} MiB"
        # The spools are whole: a client reads the full body.
        answer = RawClient(clients.pop()).read()
        assert answer.status == 200 and answer.body == bytes(LARGE)
    finally:
        for sock in clients:
            sock.close()
