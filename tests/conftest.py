"""Fixtures that start a real frontd process on 127.0.0.1:0 and stop it by PID."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll a condition until it is truthy or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Frontd:
    """A running frontd: its process, port, log files and a few helpers to talk to it."""

    def __init__(self, proc: subprocess.Popen[bytes], conf: Path, error_log: Path, access_log: Path) -> None:
        self.proc = proc
        self.conf = conf
        self.error_log = error_log
        self.access_log = access_log
        self.port = 0
        self.addresses: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def access(self) -> str:
        return self.access_log.read_text(errors="replace") if self.access_log.exists() else ""

    def wait_error_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)
        return wait_for(lambda: regex.search(self.errors()), timeout, f"error log line /{pattern}/")  # type: ignore[return-value]

    def wait_access_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)
        return wait_for(lambda: regex.search(self.access()), timeout, f"access log line /{pattern}/")  # type: ignore[return-value]

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send bytes, half-close, and read until the server closes."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return recv_all(sock)

    def stop(self) -> None:
        stop_process(self.proc)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM by PID, wait, then SIGKILL the process group it leads (its workers and children)."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def die_with_parent_by(signum: int) -> Callable[[], None]:
    """A preexec_fn: the child gets `signum` when the test process dies, so that a test run
    killed from outside (a timeout) leaves no process of its own behind. Only a libc call
    prepared here, in the parent, runs in the child."""

    def arm() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signum)

    return arm


# frontd gets SIGTERM: its master then stops its workers and their children.
die_with_parent = die_with_parent_by(signal.SIGTERM)


def frontd_command() -> list[str]:
    return [sys.executable, "-m", "frontd"]


def start_frontd(tmp_path: Path, config: str, *, top: str = "", name: str = "frontd.conf",
                 wait: bool = True) -> Frontd:
    """Write a config (logs to files in tmp_path, port 0) and start frontd from it."""
    error_log = tmp_path / f"{name}.error.log"
    access_log = tmp_path / f"{name}.access.log"
    conf = tmp_path / name
    head = ""
    if "listen" not in top:
        head += 'listen = ["127.0.0.1:0"]\n'
    if "error_log" not in top:
        head += f'error_log = "{error_log}"\n'
    if "access_log" not in top:
        head += f'access_log = "{access_log}"\n'
    if "log_level" not in top:
        head += 'log_level = "debug"\n'
    conf.write_text(head + top + "\n" + config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    stdout = open(tmp_path / f"{name}.stdout", "ab")
    stderr = open(tmp_path / f"{name}.stderr", "ab")
    proc = subprocess.Popen([*frontd_command(), "-c", str(conf)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True,
                            preexec_fn=die_with_parent)
    stdout.close()
    stderr.close()
    server = Frontd(proc, conf, error_log, access_log)
    if wait:
        try:
            wait_listening(server, tmp_path / f"{name}.stderr")
        except BaseException:
            server.stop()
            raise
    return server


def wait_listening(server: Frontd, stderr_path: Path) -> None:
    regex = re.compile(r"listening on (\S+)")
    started = re.compile(r"frontd \d+ started with \d+ worker")

    def ready() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"frontd exited with {server.proc.returncode}: "
                                 f"{stderr_path.read_text(errors='replace')}{server.errors()}")
        errors = server.errors()
        found = regex.findall(errors)
        # Listening comes first (the master binds), then the workers report ready: a test that
        # starts only after "started with" never meets a worker that is still starting.
        if not found or not started.search(errors):
            return False
        server.addresses = found
        for address in found:
            m = re.fullmatch(r"127\.0\.0\.1:(\d+)", address)
            if m:
                server.port = int(m.group(1))
                break
        return True

    wait_for(ready, START_TIMEOUT, "frontd to listen")


@pytest.fixture
def frontd(tmp_path: Path) -> Iterator[Callable[..., Frontd]]:
    """Start frontd servers from config text; every one is stopped at teardown."""
    started: list[Frontd] = []

    def start(config: str, **kwargs: object) -> Frontd:
        server = start_frontd(tmp_path, config, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small document root."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "hello.txt").write_text("hello\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (root / ".htpasswd").write_text("secret\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret\n")
    return root
