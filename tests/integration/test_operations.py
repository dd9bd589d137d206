"""Running frontd like nginx: master and workers, signals, `-s`, the pid file, `-t`, dropping to a user."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Frontd, recv_all, start_frontd, stop_process, wait_for, wait_listening
from tests.http_client import RawClient
from tests.integration.processes import alive, frontd_cli, get, uid_of, wait_workers

VHOST = '[[vhost]]\nnames = ["localhost"]\nroot = "{root}"\n'
TOP = 'shutdown_timeout = "5s"\npid_file = "frontd.pid"\n'


def one_worker(server: Frontd) -> int:
    (pid,) = wait_workers(server.pid, 1)
    return pid


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- frontd -t and -s ---------------------------------------------------------------------------


def test_t_prints_configuration_ok_and_summary(tmp_path: Path, site: Path) -> None:
    conf = tmp_path / "t.conf"
    conf.write_text('listen = ["127.0.0.1:0"]\nworkers = 3\n' + VHOST.format(root=site))
    result = frontd_cli("-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"frontd: configuration file {conf}: configuration ok"
    assert "listen 127.0.0.1:0" in lines and "workers 3" in lines
    assert any(line.startswith("vhost[0] localhost") for line in lines)


def test_s_without_pid_file_fails_clearly(tmp_path: Path, site: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text('pid_file = "run.pid"\n' + VHOST.format(root=site))
    result = frontd_cli("-s", "reload", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"frontd: pid file {tmp_path / 'run.pid'} does not exist (is frontd running?)\n"

    (tmp_path / "run.pid").write_text(f"{dead_pid()}\n")
    result = frontd_cli("-s", "stop", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1 and "is stale" in result.stderr and "not a running frontd" in result.stderr

    (tmp_path / "run.pid").write_text("garbage\n")
    result = frontd_cli("-s", "quit", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1 and "holds no pid" in result.stderr

    conf.write_text(VHOST.format(root=site))
    result = frontd_cli("-s", "reopen", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1 and "no pid_file is set" in result.stderr


# -- processes and the pid file -----------------------------------------------------------------


def test_workers_are_children_of_a_master_that_serves_nothing(frontd: Callable[..., Frontd], site: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP + "workers = 2\n")
    workers = wait_workers(server.pid, 2)
    for pid in workers:
        server.wait_error_log(rf"\] {server.pid}: worker {pid} started")
    for _ in range(4):
        assert get(server.port, "/hello.txt") == (200, b"hello\n")


def test_term_stops_every_process_and_removes_the_pid_file(frontd: Callable[..., Frontd], site: Path,
                                                           tmp_path: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP + "workers = 2\n")
    pid_file = tmp_path / "frontd.pid"
    assert pid_file.read_text() == f"{server.pid}\n"
    workers = wait_workers(server.pid, 2)
    os.kill(server.pid, signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert not pid_file.exists()
    assert not any(alive(pid) for pid in workers)
    assert "exiting" in server.errors()


def test_live_pid_file_is_refused_and_stale_one_replaced(frontd: Callable[..., Frontd], site: Path,
                                                        tmp_path: Path) -> None:
    first = frontd(VHOST.format(root=site), top=TOP)
    pid_file = tmp_path / "frontd.pid"
    second = start_frontd(tmp_path, VHOST.format(root=site), top=TOP, name="second.conf", wait=False)
    try:
        assert second.proc.wait(10) == 1
    finally:
        stop_process(second.proc)
    stderr = (tmp_path / "second.conf.stderr").read_text()
    assert f"pid file {pid_file} is held by frontd process {first.pid}, which is running" in stderr
    assert pid_file.read_text() == f"{first.pid}\n"
    stop_process(first.proc)
    assert not pid_file.exists()

    pid_file.write_text(f"{dead_pid()}\n")  # left by a crash
    third = frontd(VHOST.format(root=site), top=TOP, name="third.conf")
    assert pid_file.read_text() == f"{third.pid}\n"


def test_master_death_stops_its_workers(frontd: Callable[..., Frontd], site: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP + "workers = 2\n")
    workers = wait_workers(server.pid, 2)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in workers), what="orphaned workers to exit")


# -- signals ------------------------------------------------------------------------------------


def test_killed_worker_is_replaced(frontd: Callable[..., Frontd], site: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP)
    worker = one_worker(server)
    os.kill(worker, signal.SIGKILL)
    server.wait_error_log(rf"worker {worker} killed by signal SIGKILL; starting a new one")
    (replacement,) = wait_workers(server.pid, 1, not_in={worker})
    server.wait_error_log(rf"worker {replacement} started")
    assert get(server.port, "/hello.txt") == (200, b"hello\n")


def test_worker_dying_at_start_is_restarted_with_back_off(frontd: Callable[..., Frontd], site: Path,
                                                          tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    server = frontd(VHOST.format(root=site), top=TOP + f'access_log = "{logs}/access.log"\n')
    worker = one_worker(server)
    # The access log's directory goes away: each replacement worker fails as it opens the log.
    shutil.rmtree(logs)
    os.kill(worker, signal.SIGKILL)
    server.wait_error_log(r"starting a new one in 0\.4s")
    # Immediately once, then 0.1s, 0.2s, 0.4s...: doubling, so a worker that always fails never spins.
    texts = re.findall(r"(?:killed by signal SIGKILL|exited with status 1); starting a new one( in \S+s)?",
                       server.errors())
    assert texts[:4] == ["", " in 0.1s", " in 0.2s", " in 0.4s"], texts
    # The worker said why it failed, in one line and without a traceback.
    assert re.search(r"worker cannot start: .*No such file or directory: .*/logs/access\.log'\n", server.errors())
    assert "Traceback" not in server.errors()
    assert server.proc.poll() is None


def test_quit_lets_a_slow_request_finish_and_closes_idle_ones(frontd: Callable[..., Frontd], site: Path,
                                                              tmp_path: Path) -> None:
    size = 16 << 20
    (site / "big.bin").write_bytes(os.urandom(1024) * (size // 1024))
    server = frontd(VHOST.format(root=site), top=TOP)
    idle = server.connect()
    idle.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert RawClient(idle).read("GET").status == 200  # now an idle keep-alive connection

    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server cannot get far ahead of us
    slow.settimeout(10)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += slow.recv(4096)
    head, _, body_start = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"content-length: {size}".encode() in head.lower()

    os.kill(server.pid, signal.SIGQUIT)
    server.wait_error_log("worker shutting down gracefully")
    wait_for(lambda: refused(server.port), what="new connections to be refused")
    idle.settimeout(5)
    assert recv_all(idle) == b""  # closed by the server, long before shutdown_timeout
    idle.close()

    body = body_start + recv_all(slow)
    slow.close()
    assert len(body) == size
    assert server.proc.wait(10) == 0
    assert "shutdown_timeout reached" not in server.errors()
    assert not (tmp_path / "frontd.pid").exists()


def test_s_quit_stop_and_reload_reach_the_master(frontd: Callable[..., Frontd], site: Path,
                                                 tmp_path: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP)
    worker = one_worker(server)
    assert frontd_cli("-s", "reload", "-c", str(server.conf), cwd=tmp_path).returncode == 0
    server.wait_error_log("configuration reloaded")
    wait_for(lambda: not alive(worker), what="the old worker to leave")
    assert frontd_cli("-s", "quit", "-c", str(server.conf), cwd=tmp_path).returncode == 0
    server.wait_error_log("graceful shutdown")
    assert server.proc.wait(10) == 0

    again = frontd(VHOST.format(root=site), top=TOP, name="again.conf")
    assert frontd_cli("-s", "stop", "-c", str(again.conf), cwd=tmp_path).returncode == 0
    assert again.proc.wait(10) == 0
    assert "fast shutdown" in again.errors()
    assert not (tmp_path / "frontd.pid").exists()


def test_reopen_writes_to_new_log_files(frontd: Callable[..., Frontd], site: Path, tmp_path: Path) -> None:
    server = frontd(VHOST.format(root=site), top=TOP)
    worker = one_worker(server)
    assert get(server.port, "/hello.txt?before")[0] == 200
    server.wait_access_log(r"GET /hello.txt\?before ")
    # What logrotate does: rename, then signal.
    rotated_access = server.access_log.rename(tmp_path / "access.log.1")
    rotated_error = server.error_log.rename(tmp_path / "error.log.1")
    assert frontd_cli("-s", "reopen", "-c", str(server.conf), cwd=tmp_path).returncode == 0
    server.wait_error_log(rf"\] {worker}: log files reopened")  # the new error log
    assert get(server.port, "/hello.txt?after")[0] == 200
    server.wait_access_log(r"GET /hello.txt\?after ")  # the new access log
    assert "?after" not in rotated_access.read_text()
    assert "?before" not in server.access()
    # The master announces the reopening in the old file, then writes to the new one.
    assert "reopening log files" in rotated_error.read_text() and "log files reopened" not in rotated_error.read_text()


# -- user ---------------------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user can read: pytest's tmp_path is private to root."""
    path = Path(tempfile.mkdtemp(prefix="frontd-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_master_runs_workers_as_user(frontd: Callable[..., Frontd], shared_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    (shared_dir / "www").mkdir(mode=0o755)
    (shared_dir / "www" / "hello.txt").write_text("hello\n")
    top = (TOP + 'user = "nobody"\n' + f'access_log = "{shared_dir}/access.log"\n'
           + f'error_log = "{shared_dir}/error.log"\n')
    server = frontd(VHOST.format(root=shared_dir / "www"), top=top, wait=False)
    server.error_log = shared_dir / "error.log"
    server.access_log = shared_dir / "access.log"
    wait_listening(server, server.conf.parent / "frontd.conf.stderr")
    worker = one_worker(server)
    assert uid_of(server.pid) == 0  # the master keeps root: it binds new listeners on reload
    assert uid_of(worker) == nobody.pw_uid
    assert get(server.port, "/hello.txt") == (200, b"hello\n")
    server.wait_access_log(r"GET /hello.txt ")
    assert (shared_dir / "access.log").stat().st_uid == nobody.pw_uid  # so the worker can reopen it
    assert "workers run as root" not in server.errors()
