"""A worker on uvloop (`event_loop = "uvloop"`): the HTTP/1.1 connection, and a static body
larger than the socket buffers, whose continuation cannot use loop.sendfile (uvloop has none)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd, recv_all

Start = Callable[..., Frontd]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")

SIZE = 32 << 20  # more than loopback's socket buffers hold: the first sendfile(2) cannot send it all


def test_uvloop_worker_serves_small_and_large_files(frontd: Start, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    body = os.urandom(SIZE)
    (root / "big.bin").write_bytes(body)
    (root / "small.txt").write_bytes(b"small\n")
    server = frontd(f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{root}"\n',
                    top='event_loop = "uvloop"\n')
    server.wait_error_log(r"event loop: uvloop")
    with server.connect() as sock:
        # Two requests on one connection: the small one, then the large one.
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = recv_all(sock)
    first, _, rest = data.partition(b"\r\n\r\nsmall\n")
    assert first.startswith(b"HTTP/1.1 200 "), data[:200]
    head, _, got = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: %d" % SIZE in head.lower(), head
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest() and len(got) == SIZE
    assert "Traceback" not in server.errors()
