"""Workers as `nobody` lose clients mid-download without a traceback (issue 13 §4).

After the workers drop privileges, nothing may be imported lazily: a client that reset the
connection during a large download made `loop.sendfile()` fall back to a thread pool whose
module `nobody` could not import (ModuleNotFoundError tracebacks in the error log). Here frontd
runs as root with `user = "nobody"`, from a Python that `nobody` can read (else the test is
skipped), and clients reset their connections in the middle of a large static file and of a
large buffered CGI response (sent from the response buffer's temporary file): nothing but
"client gone" happens, no thread is started, and the same worker goes on serving.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tests.conftest
from tests.conftest import REPO, Frontd, start_frontd, wait_for, wait_listening
from tests.http_client import parse_one
from tests.integration.processes import uid_of
from tests.integration.test_operations import shared_dir  # noqa: F401 (a fixture: a directory nobody can read)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges to nobody needs root")

SIZE = 64 << 20  # far more than the socket buffers hold: the send blocks, then fails
CHECK = "import frontd.cli, frontd.server.worker, h11, cryptography, bcrypt"


def as_nobody(argv: list[str], pythonpath: str) -> bool:
    """Whether `argv` runs and succeeds as nobody, with this PYTHONPATH."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}
    try:
        done = subprocess.run(argv, user="nobody", group=pwd.getpwnam("nobody").pw_gid, extra_groups=[],
                              env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def python_for_nobody() -> tuple[str, str]:
    """A Python `nobody` can run with frontd and its dependencies importable: the one running
    the tests, or else the system's python3 of the same version given this one's packages (the
    same ABI); with the PYTHONPATH it needs. Skip the test when there is none."""
    packages = sysconfig.get_paths()["purelib"]
    pythonpath = f"{REPO}{os.pathsep}{packages}"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable]
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is not None and os.path.realpath(system) != os.path.realpath(sys.executable):
        candidates.append(system)
    for python in candidates:
        if as_nobody([python, "-c", CHECK], pythonpath):
            return python, pythonpath
    pytest.skip(f"nobody cannot run frontd with {' or '.join(candidates)} and {packages} "
                "(a directory above them not readable by others?)")


@pytest.fixture
def server(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Frontd]:
    python, pythonpath = python_for_nobody()
    monkeypatch.setattr(tests.conftest, "frontd_command", lambda: [python, "-m", "frontd"])
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    www = shared_dir / "www"
    www.mkdir(mode=0o755)
    with open(www / "big.bin", "wb") as f:
        f.truncate(SIZE)  # sparse: costs no disk
    (www / "big.bin").chmod(0o644)
    cgi = shared_dir / "cgi-bin"
    cgi.mkdir(mode=0o755)
    state = shared_dir / "state"
    state.mkdir()
    state.chmod(0o777)  # the scripts run as nobody too
    for name, text in {
        "big.sh": f"#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nhead -c {SIZE} /dev/zero\n"
                  f": > {state}/big.$$\n",
        "hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n",
    }.items():
        (cgi / name).write_text(text)
        (cgi / name).chmod(0o755)
    top = (f'workers = 1\nuser = "nobody"\nerror_log = "{shared_dir}/error.log"\n'
           f'access_log = "{shared_dir}/access.log"\n')
    started = start_frontd(shared_dir, f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{www}"\n'
                                       f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{cgi}"\n',
                           top=top, wait=False)
    started.error_log = shared_dir / "error.log"
    started.access_log = shared_dir / "access.log"
    try:
        wait_listening(started, shared_dir / "frontd.conf.stderr")
        yield started
    finally:
        started.stop()


def worker_of(server: Frontd) -> int:
    return int(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()[0])


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def reset_mid_response(server: Frontd, worker: int, target: str, ready: Callable[[], bool]) -> None:
    """GET `target` with a client that takes little; once `ready()` and the worker waits on its
    socket, reset the connection."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        wait_for(ready, 20, f"{target} to be ready")
        wait_for(lambda: Path(f"/proc/{worker}/wchan").read_text() in ("ep_poll", "do_epoll_wait"),
                 10, "the worker to wait on its socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_clients_gone_mid_download_leave_a_nobody_worker_serving(server: Frontd, shared_dir: Path) -> None:
    worker = worker_of(server)
    assert uid_of(worker) == pwd.getpwnam("nobody").pw_uid
    before = threads(worker)
    state = shared_dir / "state"
    for n in range(3):
        reset_mid_response(server, worker, "/big.bin", lambda: True)
        wait_for(lambda n=n: server.access().count('"GET /big.bin ') == n + 1, 10, "the download's log line")
        # Buffered (the default): the script writes all its output and exits while the client
        # reads little; the rest waits in the temporary file, sent with sendfile.
        reset_mid_response(server, worker, "/cgi-bin/big.sh",
                           lambda n=n: len(list(state.glob("big.*"))) == n + 1)
        wait_for(lambda n=n: server.access().count('"GET /cgi-bin/big.sh ') == n + 1, 10, "the script's log line")
    errors = server.errors()
    for sign in ("Traceback", "ModuleNotFoundError", "PermissionError", "Error"):
        assert sign not in errors, errors[-3000:]
    assert threads(worker) == before, "loop.sendfile fell back to a thread pool"
    # The same worker goes on serving, files and scripts.
    assert worker_of(server) == worker
    assert server.raw(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n"
                      ).startswith(b"HTTP/1.1 206 ")
    # Whole (h11 parses it to its end), whichever framing the output's timing gave it.
    answer = parse_one(server.raw(b"GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    assert (answer.status, answer.body) == (200, b"hello\n"), answer
