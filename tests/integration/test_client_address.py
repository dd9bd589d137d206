"""The real client address: `trusted_proxies` (Forwarded, X-Forwarded-For) and the PROXY protocol.

Two client addresses on one machine: a client bound to 127.0.0.1 is the trusted proxy, one bound to
127.0.0.2 is anybody else. A CGI program prints REMOTE_ADDR and REMOTE_PORT, a proxy backend
echoes the X-Forwarded-For and Forwarded frontd sends, and the access log shows who was logged.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.http_client import Answer, RawClient
from tests.integration.proxy_backend import Backends
from tests.integration.test_proxy import backends  # noqa: F401 - the fixture

Start = Callable[..., Frontd]
TRUSTED = "127.0.0.1"
OTHER = "127.0.0.2"
ENV_SH = '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\n%s %s\\n" "$REMOTE_ADDR" "$REMOTE_PORT"\n'


def site_config(tmp_path: Path, backend: str = "127.0.0.1:9") -> str:
    program = tmp_path / "env.sh"
    program.write_text(ENV_SH)
    program.chmod(0o755)
    return (f'[[vhost]]\nnames = ["example.test"]\n'
            f'  [[vhost.route]]\n  prefix = "/env"\n  cgi = "{program}"\n'
            f'  [[vhost.route]]\n  prefix = "/proxy/"\n  proxy = "http://{backend}"\n')


def connect(server: Frontd, source: str, port: int | None = None) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port or server.port), timeout=10, source_address=(source, 0))


def get(server: Frontd, source: str, path: str, fields: str = "", *, prefix: bytes = b"") -> Answer:
    """GET `path` from a client bound to `source`, with extra header lines, after `prefix` bytes."""
    with connect(server, source) as sock:
        sock.sendall(prefix + f"GET {path} HTTP/1.1\r\nHost: example.test\r\n{fields}Connection: close\r\n\r\n".encode())
        return RawClient(sock).read()


def remote(server: Frontd, source: str, fields: str = "", *, prefix: bytes = b"") -> str:
    answer = get(server, source, "/env", fields, prefix=prefix)
    assert answer.status == 200, answer
    return answer.body.decode().strip()


def test_x_forwarded_for_believed_from_trusted_peers_only(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site_config(tmp_path), top='trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]')
    chain = "X-Forwarded-For: 198.51.100.9, 203.0.113.7, 10.1.2.3\r\n"
    # The rightmost address that is not itself trusted: 10.1.2.3 is skipped (nginx's
    # real_ip_recursive on), 198.51.100.9 further left is whatever the client wrote.
    assert remote(server, TRUSTED, chain) == "203.0.113.7 0"
    # Several field lines are one list (RFC 9110 §5.3).
    assert remote(server, TRUSTED, "X-Forwarded-For: 203.0.113.8\r\nX-Forwarded-For: 10.0.0.1\r\n") == "203.0.113.8 0"
    assert remote(server, TRUSTED, "X-Forwarded-For: [2001:db8::5]:4711\r\n") == "2001:db8::5 4711"
    # Anybody else's fields are not believed.
    address, _ = remote(server, OTHER, chain).split()
    assert address == OTHER
    # Nothing an address: the peer stays the client.
    assert remote(server, TRUSTED, "X-Forwarded-For: unknown\r\n").split()[0] == TRUSTED
    # X-Real-IP is not read.
    assert remote(server, TRUSTED, "X-Real-IP: 203.0.113.9\r\n").split()[0] == TRUSTED
    server.wait_access_log(r'(?m)^203\.0\.113\.7 - - .*"GET /env HTTP/1\.1" 200')


def test_forwarded_comes_before_x_forwarded_for(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site_config(tmp_path), top='trusted_proxies = ["127.0.0.1"]')
    both = ('Forwarded: for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1\r\n'
            "X-Forwarded-For: 203.0.113.7\r\n")
    assert remote(server, TRUSTED, both) == "2001:db8:cafe::17 4711"
    # RFC 7239 §6.2, §6.3: "unknown" and obfuscated nodes are no address: nothing is believed.
    assert remote(server, TRUSTED, "Forwarded: for=unknown\r\nX-Forwarded-For: 203.0.113.7\r\n").split()[0] == TRUSTED
    assert remote(server, TRUSTED, 'Forwarded: for="_hidden"\r\n').split()[0] == TRUSTED
    # Malformed (no "="): not believed either.
    assert remote(server, TRUSTED, "Forwarded: 203.0.113.7\r\n").split()[0] == TRUSTED
    assert remote(server, OTHER, both).split()[0] == OTHER


def test_without_trusted_proxies_nothing_is_believed(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site_config(tmp_path))
    assert remote(server, TRUSTED, "X-Forwarded-For: 203.0.113.7\r\nForwarded: for=203.0.113.7\r\n").split()[0] == TRUSTED


def test_proxy_backends_get_the_chain_with_the_hop(frontd: Start, tmp_path: Path, backends: Backends) -> None:
    backend = backends.start()
    server = frontd(site_config(tmp_path, backend.address), top='trusted_proxies = ["127.0.0.1"]')

    def sent(source: str, fields: str) -> dict[str, str]:
        answer = get(server, source, "/proxy/x", fields)
        assert answer.status == 200, answer
        return {k: v for k, v in json.loads(answer.body)["headers"]}

    # From the trusted proxy: its chain goes on, with the proxy (the hop frontd received from)
    # appended, not the client a second time.
    got = sent(TRUSTED, "X-Forwarded-For: 203.0.113.7\r\n")
    assert got["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert got["forwarded"] == "for=203.0.113.7, for=127.0.0.1;proto=http;host=example.test"
    got = sent(TRUSTED, "Forwarded: for=203.0.113.7\r\n")
    assert got["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert got["forwarded"] == "for=203.0.113.7, for=127.0.0.1;proto=http;host=example.test"
    # From anybody else: the fields as they came, and the peer.
    got = sent(OTHER, "X-Forwarded-For: 203.0.113.7\r\n")
    assert got["x-forwarded-for"] == f"203.0.113.7, {OTHER}"
    assert got["forwarded"] == f"for={OTHER};proto=http;host=example.test"
