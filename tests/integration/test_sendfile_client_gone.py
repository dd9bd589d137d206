"""A client that leaves during a large static download (issue 13 §4).

`loop.sendfile()` takes a failed sendfile(2) at the start of a chunk (the client reset the
connection) for "sendfile not available" and, by default, falls back to reading the file in
the default thread pool. Workers that dropped privileges may not be able to import that
pool's module (ModuleNotFoundError tracebacks), and a thread pool per worker is not wanted
anyway: the fallback is off, and the error means the client is gone.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Frontd, wait_for
from tests.integration.processes import worker_of

Start = Callable[..., Frontd]

SIZE = 64 << 20  # much more than the socket buffers hold: the send blocks, then fails


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_client_reset_mid_download_is_a_client_gone_without_a_thread(frontd: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(SIZE)  # sparse: costs no disk
    server = frontd(f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{root}"\n')
    worker = worker_of(server)
    before = threads(worker)
    for n in range(5):
        with server.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            # Wait until the worker is blocked in the send, then reset the connection.
            wait_for(lambda: Path(f"/proc/{worker}/wchan").read_text() in ("ep_poll", "do_epoll_wait"),
                     10, "the worker to wait on its socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.wait_access_log(rf'"GET /big.bin HTTP/1.1" 200 (?:\d+)', 10)
        wait_for(lambda n=n: server.access().count("/big.bin") == n + 1, 10, "the access log line")
    errors = server.errors()
    assert "Traceback" not in errors and "Error" not in errors, errors
    assert threads(worker) == before, "loop.sendfile fell back to a thread pool"
    # And the worker still serves.
    assert server.raw(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n"
                      ).startswith(b"HTTP/1.1 206 ")
