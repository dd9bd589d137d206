"""Looking at frontd's processes from outside: its workers (children of the master) and their state."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Frontd, wait_for


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc/PID/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None and info[1] == pid and info[0] != "Z":
                found.add(int(entry))
    return found


def wait_workers(master: int, count: int, *, not_in: set[int] | None = None, timeout: float = 10.0) -> set[int]:
    """Wait until the master has exactly `count` workers, none of them in `not_in`; their pids."""
    found: set[int] = set()

    def ready() -> bool:
        nonlocal found
        found = children(master)
        return len(found) == count and not found & (not_in or set())

    wait_for(ready, timeout, f"{count} worker(s) of {master}" + (f" other than {sorted(not_in)}" if not_in else ""))
    return found


def worker_of(server: Frontd) -> int:
    """The first worker of a running frontd (workers = 1)."""
    return int(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()[0])


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (listeners, clients, backends)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def resident(pid: int) -> int:
    """A process's resident memory in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def alive(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[0] != "Z"


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # real, effective, saved, fs: the effective one
    raise AssertionError(f"no Uid line for {pid}")


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET on a fresh connection (Connection: close): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "localhost", "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def frontd_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`frontd ARGS` to completion (for -t and -s), with the checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "frontd", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def chromium_dump_dom(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium loads `url` (and what the page asks for) and prints the DOM it built;
    skips the test when Debian's chromium is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (tests/run.sh installs Debian's chromium)")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr",
         f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result
