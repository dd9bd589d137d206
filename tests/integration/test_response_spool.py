"""The response buffer's temporary file (issue 13 §1 and Performance).

A buffered response that a client does not read as fast as the application writes it goes to
an unlinked temporary file. Its bytes were written there (pwrite) and then read back (pread)
and written to the client: two copies through Python. What waits there for a slow client now
leaves the file through sendfile, as static files do: frontd does not read it back. And when the file cannot be
written (a full disk), the response is not lost: the rest goes at the client's pace.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.conftest
from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient
from tests.integration.processes import bytes_by_call, syscalls
from tests.integration.test_static import process_tree

Start = Callable[..., Frontd]

NUMBERS = 1_200_000  # `seq 1200000`: 8.3 MB, far more than the socket buffers hold
SEQ = b"".join(b"%d\n" % n for n in range(1, NUMBERS + 1))


def cgi_site(frontd: Start, tmp_path: Path, output: str) -> Frontd:
    """A CGI route whose big.sh writes its pid to big.pid, then runs the command `output`."""
    scripts = tmp_path / "cgi-bin"
    scripts.mkdir()
    script = scripts / "big.sh"
    script.write_text("#!/bin/sh\necho $$ > big.pid\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                      f"exec {output}\n")
    script.chmod(0o755)
    return frontd(f'workers = 1\n[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
                  f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{scripts}"\n')


def read_late(server: Frontd, ready: Callable[[], object], what: str) -> bytes:
    """GET big.sh with a client that reads nothing until `ready()`, then all of it: the body."""
    with socket.socket() as sock:
        # A client that takes little (set before connecting: the window is agreed then).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /cgi-bin/big.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        wait_for(ready, 20, what)
        answer = RawClient(sock).read()
    assert answer.status == 200
    return answer.body


def exited(pid_file: Path) -> bool:
    """The script wrote its pid, and has exited and been reaped since."""
    text = pid_file.read_text().strip() if pid_file.exists() else ""
    return bool(text) and not os.path.exists(f"/proc/{text}")


def test_spooled_output_leaves_through_sendfile(frontd: Start, tmp_path: Path) -> None:
    server = cgi_site(frontd, tmp_path, f"seq {NUMBERS}")
    pid_file = tmp_path / "cgi-bin" / "big.pid"
    log = tmp_path / "strace.txt"
    # frontd's processes only, not the script's: the worker has no threads.
    with syscalls(process_tree(server.pid), "sendfile,pread64,read,pwrite64", log, children=False):
        # The client reads nothing until the script has written all its output and exited:
        # most of it then waits in the temporary file.
        body = read_late(server, lambda: exited(pid_file), "big.sh to exit and be reaped")
    # Whole and in order: sendfile(2) to a socket queues the file's pages, not copies, and a
    # part of the file written over before the client took it was sent with the new bytes.
    assert body == SEQ
    moved = bytes_by_call(log)
    spooled = moved.get("pwrite64", 0)
    assert spooled > len(SEQ) // 2, moved  # most of the output went through the file
    # What waited in the file for the slow client leaves through sendfile, not read back into
    # frontd; only a part of at most 1 MiB found there is copied out (pread and write).
    assert moved.get("sendfile", 0) + moved.get("pread64", 0) >= spooled, moved
    assert moved.get("sendfile", 0) >= spooled // 2, moved


FILE_LIMIT = 1 << 20  # RLIMIT_FSIZE of frontd: no file of its may grow past 1 MiB


def test_a_temporary_file_that_cannot_grow_slows_the_response_down(
        frontd: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a full disk: frontd runs with a 1 MiB RLIMIT_FSIZE, so the response buffer's file
    fails to grow (EFBIG) with most of an 8 MB output still to come. Before, the failed write
    ended the response with an error; now the rest goes at the client's pace, whole and in
    order, and the error log says so once."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    monkeypatch.setattr(tests.conftest, "frontd_command",
                        lambda: [prlimit, f"--fsize={FILE_LIMIT}", sys.executable, "-m", "frontd"])
    server = cgi_site(frontd, tmp_path, f"seq {NUMBERS}")
    warning = "response buffer: cannot write its temporary file"
    body = read_late(server, lambda: warning in server.errors(), "the file to fail")
    assert body == SEQ
    errors = server.errors()
    assert errors.count(warning) == 1 and "Traceback" not in errors, errors[-3000:]
    server.wait_access_log(r'"GET /cgi-bin/big\.sh HTTP/1\.1" 200 \d+ "-" "-"$')
