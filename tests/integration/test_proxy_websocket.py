"""WebSocket through a proxy route: the `websockets` package's echo server and client on each side."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve, unix_serve

from tests.conftest import Frontd

Start = Callable[..., Frontd]


def handler(ws: ServerConnection) -> None:
    """Echo every message; "headers?" answers with the handshake's headers, "bye" closes."""
    for message in ws:
        if message == "headers?":
            ws.send(json.dumps({k.lower(): v for k, v in ws.request.headers.raw_items()}))  # type: ignore[union-attr]
        elif message == "bye":
            ws.close()
        else:
            ws.send(message)


def deny(ws: ServerConnection, request: Request) -> Response | None:
    """Refuse the handshake on /deny with a plain 403 (a non-101 answer to an Upgrade request)."""
    if request.path.endswith("/deny"):
        return ws.respond(403, "no websocket here\n")
    return None


@pytest.fixture
def ws_servers() -> Iterator[Callable[..., Server]]:
    started: list[tuple[Server, threading.Thread]] = []

    def start(unix_path: str | None = None) -> Server:
        # No pings: the idle-timeout test needs a silent connection.
        server = (unix_serve(handler, unix_path, ping_interval=None, process_request=deny) if unix_path
                  else serve(handler, "127.0.0.1", 0, ping_interval=None, process_request=deny))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(10)


def config(url: str, extra: str = "") -> str:
    return f'[[vhost]]\nnames = ["example.test"]\n  [[vhost.route]]\n  prefix = "/ws/"\n  proxy = "{url}"\n{extra}'


def test_websocket_echo_over_tcp_and_unix(frontd: Start, ws_servers: Callable[..., Server],
                                          tmp_path: Path) -> None:
    tcp = ws_servers()
    ws_servers(unix_path=str(tmp_path / "ws.sock"))
    port = tcp.socket.getsockname()[1]
    server = frontd(config(f"http://127.0.0.1:{port}")
                    + f'  [[vhost.route]]\n  prefix = "/wsu/"\n  proxy = "http://unix:{tmp_path}/ws.sock"\n')
    for path in ("/ws/echo", "/wsu/echo"):
        with connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, ping_interval=None,
                     open_timeout=10) as ws:
            ws.send("hello through frontd")
            assert ws.recv(timeout=10) == "hello through frontd"
            blob = os.urandom(300_000)  # several reads and writes each way
            ws.send(blob)
            assert ws.recv(timeout=10) == blob
            ws.send("headers?")
            headers = json.loads(ws.recv(timeout=10))
            assert headers["upgrade"].lower() == "websocket"
            assert headers["connection"].lower() == "upgrade"
            assert headers["via"] == "1.1 frontd"
            assert headers["x-forwarded-for"] == "127.0.0.1"
    # One access-log line per tunnel once it closes: the 101 and the bytes relayed to the client.
    server.wait_access_log(r'"GET /ws/echo HTTP/1\.1" 101 [1-9][0-9]{5,} ')
    server.wait_access_log(r'"GET /wsu/echo HTTP/1\.1" 101 [1-9][0-9]{5,} ')


def test_websocket_backend_closes(frontd: Start, ws_servers: Callable[..., Server]) -> None:
    backend = ws_servers()
    server = frontd(config(f"http://127.0.0.1:{backend.socket.getsockname()[1]}"))
    with connect(f"ws://127.0.0.1:{server.port}/ws/", proxy=None, ping_interval=None) as ws:
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000  # a clean close


def test_websocket_refused_handshake_relayed(frontd: Start, ws_servers: Callable[..., Server]) -> None:
    backend = ws_servers()
    server = frontd(config(f"http://127.0.0.1:{backend.socket.getsockname()[1]}"))
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws/deny", proxy=None, open_timeout=10)
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"no websocket here\n"


def test_websocket_idle_tunnel_closed(frontd: Start, ws_servers: Callable[..., Server]) -> None:
    backend = ws_servers()
    server = frontd(config(f"http://127.0.0.1:{backend.socket.getsockname()[1]}", '  timeout = "1s"\n'))
    with connect(f"ws://127.0.0.1:{server.port}/ws/", proxy=None, ping_interval=None) as ws:
        ws.send("still there")
        assert ws.recv(timeout=10) == "still there"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert 0.5 < time.monotonic() - started < 5


def test_client_bytes_sent_with_the_handshake_reach_the_backend(
        frontd: Start, ws_servers: Callable[..., Server]) -> None:
    """A frame that arrives in the same packet as the handshake (the sink's leftover bytes)."""
    backend = ws_servers()
    server = frontd(config(f"http://127.0.0.1:{backend.socket.getsockname()[1]}"))
    payload = b"early frame"
    mask = b"\x01\x02\x03\x04"
    # RFC 6455 §5.2: FIN + text opcode, masked, 7-bit length; client frames are always masked.
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    handshake = (b"GET /ws/ HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(handshake + frame)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        # RFC 6455 §1.3: the accept value for the sample nonce of the RFC.
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        while len(rest) < 2 + len(payload):
            data = sock.recv(65536)
            assert data, rest
            rest += data
        assert rest[:2 + len(payload)] == bytes([0x81, len(payload)]) + payload  # echoed, unmasked
