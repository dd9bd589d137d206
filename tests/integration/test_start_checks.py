"""What fails at start is found before: `frontd -t` checks every path frontd opens, a start that
cannot work ends with one line and status 1, and a reload never replaces working workers with
ones that cannot serve (issue 12, item 2)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Frontd, start_frontd, wait_for
from tests.integration.processes import children, frontd_cli, get, wait_workers
from tests.integration.test_reload import Client, roots, vhost  # noqa: F401  (roots is a fixture)

TOP = 'workers = 2\nshutdown_timeout = "3s"\n'
READY_TIMEOUT = 10.0  # master.py: how long a new generation has to report ready


def config_file(tmp_path: Path, top: str, root: Path) -> Path:
    conf = tmp_path / "check.conf"
    conf.write_text('listen = ["127.0.0.1:0"]\n' + top + vhost(root))
    return conf


@pytest.mark.parametrize("key", ["access_log", "error_log", "pid_file"])
def test_t_names_the_key_of_a_file_in_a_missing_directory(tmp_path: Path, roots: tuple[Path, Path],
                                                          key: str) -> None:
    conf = config_file(tmp_path, f'{key} = "noaccess/{key}.log"\n', roots[0])
    result = frontd_cli("-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f'frontd: {conf}: {key}: directory "{tmp_path}/noaccess" for the file does not '
                             "exist\n")
    # The same file does not start either: one line, status 1, nothing half-started.
    start = frontd_cli("-c", str(conf), cwd=tmp_path)
    assert start.returncode == 1 and start.stderr == result.stderr and start.stdout == ""
    assert not (tmp_path / "noaccess").exists()


def test_t_finds_a_socket_directory_frontd_cannot_write(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write to any directory")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    conf = config_file(tmp_path, "", roots[0])
    conf.write_text(conf.read_text().replace('"127.0.0.1:0"', f'"unix:{locked}/frontd.sock"'))
    result = frontd_cli("-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1 and f'directory "{locked}" is not writable' in result.stderr


@pytest.fixture
def hidden() -> Iterator[Path]:
    """A directory only root may enter (0700), under one everybody may."""
    outer = Path(tempfile.mkdtemp(prefix="frontd-hidden-"))
    outer.chmod(0o755)
    inner = outer / "private"
    inner.mkdir(mode=0o700)
    yield inner
    shutil.rmtree(outer, ignore_errors=True)


def test_t_finds_an_access_log_the_workers_user_cannot_reach(hidden: Path, roots: tuple[Path, Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("workers change user only when frontd runs as root")
    logs = hidden / "logs"
    logs.mkdir(mode=0o755)
    conf = config_file(hidden.parent, f'user = "nobody"\naccess_log = "{logs}/access.log"\n', roots[0])
    result = frontd_cli("-t", "-c", str(conf), cwd=hidden.parent)
    assert result.returncode == 1
    assert (f'access_log: the workers\' user "nobody" cannot reach "{logs}/access.log": no search permission '
            f'on "{hidden}"') in result.stderr
    hidden.chmod(0o711)  # search only: enough to open a file whose path is known
    assert frontd_cli("-t", "-c", str(conf), cwd=hidden.parent).returncode == 0


def failed_reload_keeps_serving(server: Frontd, text: str, failure: str, *, timeout: float = 10.0,
                                before: Callable[[], None] = lambda: None) -> None:
    """With a client running throughout: write `text`, call `before`, send HUP and wait for the
    log line `configuration reload failed: <failure>`; the old workers answer every request, before
    and after, with v1."""
    workers = wait_workers(server.pid, 2)
    client = Client(server.port)
    client.start()
    try:
        wait_for(lambda: client.count(b"v1\n") >= 10, what="requests before the reload")
        server.conf.write_text(text)
        before()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_error_log(rf"configuration reload failed: {failure}", timeout=timeout)
        mark = len(client.bodies)
        wait_for(lambda: len(client.bodies) >= mark + 10, what="requests after the failed reload")
    finally:
        client.stop()
    assert client.failures == []
    assert set(client.bodies) == {b"v1\n"}
    # Whatever the reload started is gone; the old workers are the master's only children.
    wait_for(lambda: children(server.pid) == workers, what="only the old workers")


def with_access_log(server: Frontd, old_root: Path, new_root: Path, access_log: Path) -> str:
    text = server.conf.read_text().replace(str(old_root), str(new_root))
    return text.replace(f'access_log = "{server.access_log}"', f'access_log = "{access_log}"')


def test_reload_to_a_log_in_a_vanished_directory_keeps_the_workers(frontd: Callable[..., Frontd],
                                                                   roots: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    v1, v2 = roots
    logs = tmp_path / "logs"
    logs.mkdir()
    server = frontd(vhost(v1), top=TOP)
    text = with_access_log(server, v1, v2, logs / "a.log")
    failed_reload_keeps_serving(server, text, rf".*access_log: directory \"{logs}\" for the file does not exist; "
                                "still running the previous configuration", before=lambda: shutil.rmtree(logs))
    result = frontd_cli("-s", "reload", "-c", str(server.conf), cwd=tmp_path)
    assert result.returncode == 1 and "access_log: directory" in result.stderr  # -s reads the file too


def fifo_log(tmp_path: Path) -> Path:
    """A FIFO as the access log, with no reader: a worker blocks opening it (open(2) waits for a
    reader), which no check can know ahead of time (a log collector may be about to read it)."""
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    return fifo


def test_reload_whose_workers_never_get_ready_keeps_the_old_ones(frontd: Callable[..., Frontd],
                                                                 roots: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    v1, v2 = roots
    server = frontd(vhost(v1), top=TOP)
    good = server.conf.read_text()
    text = with_access_log(server, v1, v2, fifo_log(tmp_path))
    # The reload also adds a listener: it is closed again with the rest of the failed reload.
    text = text.replace('listen = ["127.0.0.1:0"]', 'listen = ["127.0.0.1:0", "127.0.0.1:0"]')
    failed_reload_keeps_serving(server, text, r"worker [\d, ]+ did not report ready within 10s; still running the "
                                r"previous configuration with 2 worker\(s\)", timeout=READY_TIMEOUT + 10)
    ports = [int(p) for p in re.findall(r"\d+: listening on 127\.0\.0\.1:(\d+)", server.errors())]
    assert len(ports) == 2 and ports[0] == server.port
    assert f"no longer listening on 127.0.0.1:{ports[1]}" in server.errors()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ports[1]), timeout=2).close()
    assert frontd_cli("-t", "-c", str(server.conf), cwd=tmp_path).returncode == 0  # nothing a check can see
    assert re.search(r"worker \d+ killed by signal SIGKILL", server.errors())  # the stuck new ones
    # Fixed, the next reload goes through.
    server.conf.write_text(good.replace(str(v1), str(v2)))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log("configuration reloaded; 2 old worker")
    wait_for(lambda: get(server.port, "/v.txt") == (200, b"v2\n"), what="v2 to answer")
    assert "Traceback" not in server.errors()


def test_start_whose_workers_cannot_serve_fails_with_one_line(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    fifo = fifo_log(tmp_path)
    server = start_frontd(tmp_path, vhost(roots[0]), top=f'access_log = "{fifo}"\npid_file = "frontd.pid"\n',
                          wait=False)
    try:
        server.proc.wait(READY_TIMEOUT + 15)
    finally:
        server.stop()
    assert server.proc.returncode == 1
    stderr = (tmp_path / "frontd.conf.stderr").read_text()
    assert re.fullmatch(r"frontd: cannot start: worker \d+ did not report ready within 10s \(see the error log\)\n",
                        stderr), stderr
    assert "Traceback" not in server.errors()
    assert not (tmp_path / "frontd.pid").exists()
