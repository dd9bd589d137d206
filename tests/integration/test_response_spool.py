"""The response buffer's temporary file is sent with sendfile(2) (issue 13, Performance).

A buffered response that a client does not read as fast as the application writes it goes to
an unlinked temporary file. Its bytes were written there (pwrite) and then read back (pread)
and written to the client: two copies through Python. They now leave the file through
sendfile, as static files do: frontd never reads them back.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Frontd, wait_for
from tests.http_client import RawClient
from tests.integration.processes import bytes_by_call, syscalls
from tests.integration.test_static import process_tree

Start = Callable[..., Frontd]

SIZE = 8 << 20  # far more than the socket buffers and the buffer's 64 KiB of memory hold


def test_spooled_output_leaves_through_sendfile(frontd: Start, tmp_path: Path) -> None:
    scripts = tmp_path / "cgi-bin"
    scripts.mkdir()
    script = scripts / "big.sh"
    script.write_text("#!/bin/sh\necho $$ > big.pid\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                      f"exec head -c {SIZE} /dev/urandom\n")
    script.chmod(0o755)
    server = frontd(f'workers = 1\n[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
                    f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{scripts}"\n')
    pid_file = scripts / "big.pid"
    log = tmp_path / "strace.txt"
    with syscalls(process_tree(server.pid), "sendfile,pread64,read,pwrite64", log):
        with socket.socket() as sock:
            # A client that takes little (set before connecting: the window is agreed then).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /cgi-bin/big.sh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            # The client reads nothing until the script has written all its output and exited:
            # most of it then waits in the temporary file.
            wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "big.sh to start")
            pid = int(pid_file.read_text())
            wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, "big.sh to exit and be reaped")
            answer = RawClient(sock).read()
    assert answer.status == 200 and len(answer.body) == SIZE
    moved = bytes_by_call(log)
    spooled = moved.get("pwrite64", 0)
    assert spooled > SIZE // 2, moved  # most of the output went through the file
    # What went to the file leaves through sendfile, not read back into frontd (a tail smaller
    # than 64 KiB may go out with one pread and write).
    assert moved.get("sendfile", 0) >= spooled - 64 * 1024, moved
    assert moved.get("pread64", 0) < 64 * 1024, moved
