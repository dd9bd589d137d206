"""An application that dies in the middle of its output gives the client a cut response (issue 13 §3).

A CGI script killed by a signal after part of its body closes its stdout as one that finished
does: taken for the end of the output, a body without a Content-Length went to the client as a
complete chunked response (`0\\r\\n\\r\\n`). The client's connection must be closed without the
response's end, and the access log must say `cut`, with response buffering on and off. The same
for a FastCGI backend that closes its connection (an orderly close, not a reset) before
FCGI_END_REQUEST.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.http_client import RawClient
from tests.integration.gateway_backends import WAIT, Answer, CaptureServer, Captured

Start = Callable[..., Frontd]

HALF = b"h" * 50


def read_to_close(server: Frontd, target: str) -> bytes:
    """Everything frontd sends for one keep-alive GET until it closes the connection."""
    with server.connect() as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target.encode())
        sock.settimeout(WAIT)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:  # still open: the response looked complete
                return received
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data


def assert_cut(received: bytes, length: bool) -> None:
    """The head and the 50 bytes, then nothing: no chunked terminator, no padding."""
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), received[:200]
    if length:
        assert b"content-length: 100" in head.lower()
        assert body == HALF
    else:
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"32\r\n" + HALF + b"\r\n", body[-80:]


@pytest.mark.parametrize("buffering", ["true", "false"])
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_cgi_killed_by_a_signal_mid_output_looks_cut(frontd: Start, tmp_path: Path, buffering: str,
                                                     length: bool) -> None:
    scripts = tmp_path / "cgi-bin"
    scripts.mkdir()
    script = scripts / "dies.sh"
    fields = "Content-Type: text/plain\\n" + ("Content-Length: 100\\n" if length else "")
    # printf is built into the shell: each one is a write(2) of its own, and nothing is held.
    script.write_text(f"#!/bin/sh\nprintf '{fields}\\n'\nprintf '{HALF.decode()}'\nkill -9 $$\n")
    script.chmod(0o755)
    server = frontd(f'[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
                    f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{scripts}"\n'
                    f"  response_buffering = {buffering}\n")
    assert_cut(read_to_close(server, "/cgi-bin/dies.sh"), length)
    server.wait_error_log(r"cgi \S+dies\.sh: .*after the response started; closing")
    server.wait_access_log(r'"GET /cgi-bin/dies\.sh HTTP/1\.1" 200 50 "-" "-" cut$')
    if not length:
        assert re.search(r"cgi \S+dies\.sh: killed by signal 9", server.errors()), server.errors()[-2000:]


@pytest.mark.parametrize("ending", ["exit 3", "exec >&-; exec sleep 5"], ids=["exit-status", "closes-stdout"])
def test_cgi_output_that_ended_is_whole(frontd: Start, tmp_path: Path, ending: str) -> None:
    """Only a signal makes output cut: a script that exits with a failure status after its
    output, or closes its stdout and goes on working, answered in full."""
    scripts = tmp_path / "cgi-bin"
    scripts.mkdir()
    script = scripts / "ends.sh"
    script.write_text(f"#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n{HALF.decode()}'\n{ending}\n")
    script.chmod(0o755)
    server = frontd(f'[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
                    f'  [[vhost.route]]\n  prefix = "/cgi-bin/"\n  cgi = "{scripts}"\n')
    with server.connect() as sock:
        client = RawClient(sock)
        for _ in range(2):  # complete, on a connection that stays open
            client.send(b"GET /cgi-bin/ends.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = client.read()
            assert (answer.status, answer.body) == (200, HALF)
    assert " cut" not in server.access()


@pytest.fixture
def fastcgi_backend() -> Iterator[Callable[[Callable[[CaptureServer, Captured], Answer]], CaptureServer]]:
    started: list[CaptureServer] = []

    def start(app: Callable[[CaptureServer, Captured], Answer]) -> CaptureServer:
        server = CaptureServer("fastcgi", app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("buffering", ["true", "false"])
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_fastcgi_closed_before_end_request_looks_cut(
        frontd: Start, fastcgi_backend: Callable[[Callable[[CaptureServer, Captured], Answer]], CaptureServer],
        buffering: str, length: bool) -> None:
    fields = b"Content-Type: text/plain\r\n" + (b"Content-Length: 100\r\n" if length else b"")
    sent = threading.Event()

    def app(server: CaptureServer, req: Captured) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield fields + b"\r\n" + HALF
            sent.set()

        # FCGI_STDOUT with the head and half the body, then an orderly close (FIN), without
        # FCGI_END_REQUEST.
        return Answer(pieces=pieces(), end_request=False)

    backend = fastcgi_backend(app)
    server = frontd(f'[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
                    f'  [[vhost.route]]\n  prefix = "/app/"\n  fastcgi = "{backend.address}"\n'
                    f"  response_buffering = {buffering}\n")
    assert_cut(read_to_close(server, "/app/"), length)
    assert sent.is_set()
    server.wait_error_log(rf"fastcgi {re.escape(backend.address)}: .*after the response started; closing")
    server.wait_access_log(r'"GET /app/ HTTP/1\.1" 200 50 "-" "-" cut$')
