"""Reload (SIGHUP, `frontd -s reload`): a new generation of workers, no request lost, a bad file refused."""

from __future__ import annotations

import re
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd, wait_for
from tests.integration.processes import children, frontd_cli, get, wait_workers

TOP = 'workers = 2\nshutdown_timeout = "3s"\npid_file = "frontd.pid"\n'


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """Two document roots whose /v.txt differ: which one answers tells the configuration in use."""
    made = []
    for version in ("v1", "v2"):
        root = tmp_path / version
        root.mkdir()
        (root / "v.txt").write_text(f"{version}\n")
        made.append(root)
    return made[0], made[1]


def vhost(root: Path) -> str:
    return f'[[vhost]]\nnames = ["localhost"]\nroot = "{root}"\n'


class Client(threading.Thread):
    """Requests /v.txt on a fresh connection after another, until stopped; keeps every outcome."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.bodies: list[bytes] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = get(self.port, "/v.txt")
            except OSError as exc:  # refused, reset, timed out: all count as failures
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"status {status}")
            self.bodies.append(body)

    def count(self, body: bytes) -> int:
        return sum(1 for b in list(self.bodies) if b == body)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def rewrite_root(server: Frontd, old: Path, new: Path) -> None:
    text = server.conf.read_text()
    assert str(old) in text
    server.conf.write_text(text.replace(str(old), str(new)))


def exited(server: Frontd, pids: set[int]) -> Callable[[], bool]:
    return lambda: all(re.search(rf"worker {pid} exited with status 0", server.errors()) for pid in pids)


def test_reload_under_load_loses_no_request(frontd: Callable[..., Frontd], roots: tuple[Path, Path]) -> None:
    v1, v2 = roots
    server = frontd(vhost(v1), top=TOP)
    old_workers = wait_workers(server.pid, 2)
    client = Client(server.port)
    client.start()
    try:
        wait_for(lambda: client.count(b"v1\n") >= 20, what="requests served before the reload")
        rewrite_root(server, v1, v2)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_error_log("reloading configuration")
        wait_for(lambda: client.count(b"v2\n") >= 1, what="the new configuration to answer")
        wait_for(exited(server, old_workers), what="the old workers to finish")
        after = len(client.bodies)
        wait_for(lambda: len(client.bodies) >= after + 20, what="requests after the old workers left")
    finally:
        client.stop()
    assert client.failures == []
    assert client.bodies[after:] and set(client.bodies[after:]) == {b"v2\n"}
    wait_workers(server.pid, 2, not_in=old_workers)
    assert server.proc.poll() is None


def test_broken_config_on_reload_keeps_serving(frontd: Callable[..., Frontd], roots: tuple[Path, Path]) -> None:
    v1, _ = roots
    server = frontd(vhost(v1), top=TOP)
    workers = wait_workers(server.pid, 2)
    good = server.conf.read_text()
    server.conf.write_text(good + "\nworkerz = 3\n")
    result = frontd_cli("-s", "reload", "-c", str(server.conf), cwd=server.conf.parent)
    # -s reads the file too, so a bad file is reported before any signal is sent...
    assert result.returncode == 1 and 'unknown key "workerz"' in result.stderr
    server.conf.write_text(good + "\n[[[ not toml\n")
    server.proc.send_signal(signal.SIGHUP)  # ...and a HUP from elsewhere finds it at reload
    server.wait_error_log(r"configuration reload failed: .*frontd\.conf.*invalid TOML.*previous configuration")
    assert get(server.port, "/v.txt") == (200, b"v1\n")
    assert children(server.pid) == workers
    # Fixed again (and with another worker count), the next reload goes through.
    server.conf.write_text(good.replace("workers = 2", "workers = 3"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log("configuration reloaded; 2 old worker")
    wait_workers(server.pid, 3, not_in=workers)
    assert get(server.port, "/v.txt") == (200, b"v1\n")


def test_reload_adds_and_closes_listeners(frontd: Callable[..., Frontd], roots: tuple[Path, Path]) -> None:
    v1, _ = roots
    server = frontd(vhost(v1), top=TOP)
    text = server.conf.read_text()
    # A second "127.0.0.1:0" is a second listener on another port chosen by the kernel.
    server.conf.write_text(text.replace('listen = ["127.0.0.1:0"]', 'listen = ["127.0.0.1:0", "127.0.0.1:0"]'))
    result = frontd_cli("-s", "reload", "-c", str(server.conf), cwd=server.conf.parent)
    assert result.returncode == 0, result.stderr
    server.wait_error_log("configuration reloaded")
    ports = [int(p) for p in re.findall(r"listening on 127\.0\.0\.1:(\d+)", server.errors())]
    assert len(ports) == 2 and ports[0] == server.port  # the kept listener was not bound again
    added = ports[1]
    assert get(added, "/v.txt") == (200, b"v1\n")
    assert get(server.port, "/v.txt") == (200, b"v1\n")

    server.conf.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log(rf"no longer listening on 127\.0\.0\.1:{added}")

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", added), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, what="the removed listener to be closed")
    assert get(server.port, "/v.txt") == (200, b"v1\n")
