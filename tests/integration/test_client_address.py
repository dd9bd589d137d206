"""The real client address: `trusted_proxies` (Forwarded, X-Forwarded-For) and the PROXY protocol.

Two client addresses on one machine: a client bound to 127.0.0.1 is the trusted proxy, one bound to
127.0.0.2 is anybody else. A CGI program prints REMOTE_ADDR and REMOTE_PORT, a proxy backend
echoes the X-Forwarded-For and Forwarded frontd sends, and the access log shows who was logged.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd, recv_all
from tests.http_client import Answer, RawClient, parse_one
from tests.integration.proxy_backend import Backends
from tests.integration.test_proxy import backends  # noqa: F401 - the fixture
from tests.integration.test_tls import Pki, pki, vhost  # noqa: F401 - the fixture

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


# -- the PROXY protocol ---------------------------------------------------------------------------

PROXY_TOP = 'listen = ["127.0.0.1:0", { address = "127.0.0.1:0", proxy_protocol = true }]'
SIG = b"\r\n\r\n\x00\r\nQUIT\n"  # proxy-protocol.txt §2.2
V1_TCP4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"  # §2.1
V1_TCP6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
# \x21 PROXY, \x11 TCP over IPv4, 12 address bytes: 192.0.2.1:56324 -> 192.0.2.2:443.
V2_TCP4 = SIG + b"\x21\x11\x00\x0c\xc0\x00\x02\x01\xc0\x00\x02\x02\xdc\x04\x01\xbb"
# \x21 PROXY, \x21 TCP over IPv6: [2001:db8::7]:4711 -> [2001:db8::8]:80.
V2_TCP6 = (SIG + b"\x21\x21\x00\x24" + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x07"
           + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x08" + b"\x12\x67\x00\x50")
# §2.2.7 TLVs after the addresses: PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.test".
TLVS = b"\x01\x00\x02h2\x02\x00\x0cexample.test"
V2_TCP4_TLVS = SIG + b"\x21\x11" + (12 + len(TLVS)).to_bytes(2, "big") + V2_TCP4[16:] + TLVS
V2_LOCAL = SIG + b"\x20\x00\x00\x00"  # a balancer's health check


def proxy_port(server: Frontd) -> int:
    """The PROXY listener's port: the second "listening on" address."""
    return int(server.addresses[1].rsplit(":", 1)[1])


def via_proxy(server: Frontd, header: bytes, *, source: str = TRUSTED, split: bool = False) -> str:
    """REMOTE_ADDR and REMOTE_PORT for a request sent after `header` on the PROXY listener
    (`split`: the header in two pieces, the request in a third send)."""
    request = b"GET /env HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    with connect(server, source, proxy_port(server)) as sock:
        if split:
            sock.sendall(header[:7])
            sock.sendall(header[7:])
            sock.sendall(request)
        else:
            sock.sendall(header + request)
        answer = RawClient(sock).read()
    assert answer.status == 200, answer
    return answer.body.decode().strip()


@pytest.mark.parametrize(("header", "expected"), [
    (V1_TCP4, "192.168.0.1 56324"),
    (V1_TCP6, "2001:db8::1 4711"),
    (V2_TCP4, "192.0.2.1 56324"),
    (V2_TCP6, "2001:db8::7 4711"),
    (V2_TCP4_TLVS, "192.0.2.1 56324"),
], ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6", "v2-tcp4-tlvs"])
def test_proxy_header_names_the_client(frontd: Start, tmp_path: Path, header: bytes, expected: str) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP)
    assert via_proxy(server, header) == expected
    assert via_proxy(server, header, split=True) == expected
    server.wait_access_log(rf"(?m)^{re.escape(expected.split()[0])} - - .*\"GET /env HTTP/1\.1\" 200")


@pytest.mark.parametrize("header", [V1_UNKNOWN, V2_LOCAL], ids=["v1-unknown", "v2-local"])
def test_unknown_and_local_keep_the_peer(frontd: Start, tmp_path: Path, header: bytes) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP)
    assert via_proxy(server, header).split()[0] == TRUSTED


@pytest.mark.parametrize("data", [
    b"GET /env HTTP/1.1\r\nHost: example.test\r\n\r\n",  # no header at all
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\nGET / HTTP/1.1\r\n\r\n",  # a port missing
    SIG + b"\x22\x11\x00\x00GET / HTTP/1.1\r\n\r\n",  # an unassigned command
], ids=["no-header", "v1-port-missing", "v2-command-2"])
def test_no_valid_header_closes_with_one_log_line(frontd: Start, tmp_path: Path, data: bytes) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP)
    with connect(server, TRUSTED, proxy_port(server)) as sock:
        sock.sendall(data)
        assert RawClient(sock).closed_by_peer()
    server.wait_error_log(r"PROXY header refused: .*, client: 127\.0\.0\.1")
    assert server.errors().count("PROXY header refused") == 1
    # The listener still serves.
    assert via_proxy(server, V1_TCP4).startswith("192.168.0.1 ")


def test_incomplete_header_times_out(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP + '\n[limits]\nheader_timeout = "500ms"')
    with connect(server, TRUSTED, proxy_port(server)) as sock:
        sock.sendall(b"PROXY TCP4 192.168")
        assert RawClient(sock).closed_by_peer()
    server.wait_error_log(r"PROXY header not complete within header_timeout \(0\.5s\), client: 127\.0\.0\.1")


@pytest.mark.parametrize("header", [V1_TCP4, V2_TCP4], ids=["v1", "v2"])
def test_header_on_a_plain_listener_is_a_400(frontd: Start, tmp_path: Path, header: bytes) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP)
    answer = get(server, TRUSTED, "/env", prefix=header)
    assert answer.status == 400


def test_header_believed_only_from_trusted_proxies(frontd: Start, tmp_path: Path) -> None:
    server = frontd(site_config(tmp_path), top=PROXY_TOP + '\ntrusted_proxies = ["127.0.0.1"]')
    assert via_proxy(server, V1_TCP4, source=TRUSTED).startswith("192.168.0.1 ")
    assert via_proxy(server, V1_TCP4, source=OTHER).split()[0] == OTHER
    server.wait_error_log(r"PROXY header from 127\.0\.0\.2 not believed")
    # The header must still be there and valid, believed or not.
    with connect(server, OTHER, proxy_port(server)) as sock:
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: example.test\r\n\r\n")
        assert RawClient(sock).closed_by_peer()


def test_x_forwarded_for_after_a_proxy_header(frontd: Start, tmp_path: Path) -> None:
    """The client a PROXY header names is the peer that trusted_proxies is checked against."""
    server = frontd(site_config(tmp_path), top=PROXY_TOP + '\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]')
    header = b"PROXY TCP4 10.0.0.9 10.0.0.1 40000 80\r\n"
    request = b"GET /env HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n"
    with connect(server, TRUSTED, proxy_port(server)) as sock:
        sock.sendall(header + request)
        assert RawClient(sock).read().body.decode().split()[0] == "203.0.113.7"


@pytest.mark.parametrize("header", [V1_TCP4, V2_TCP4_TLVS, V2_LOCAL], ids=["v1-tcp4", "v2-tlvs", "v2-local"])
def test_proxy_header_before_tls(frontd: Start, site: Path, pki: Pki, header: bytes) -> None:
    program = site / "env.sh"
    program.write_text(ENV_SH)
    program.chmod(0o755)
    top = 'listen = ["127.0.0.1:0", { address = "127.0.0.1:0", tls = true, proxy_protocol = true }]'
    config = (vhost(site, "a", "a.test", extra="default = true")
              + f'  [[vhost.route]]\n  prefix = "/env"\n  cgi = "{program}"\n')
    server = frontd(config, top=top)
    with connect(server, TRUSTED, proxy_port(server)) as raw:
        raw.sendall(header)
        with pki.client().wrap_socket(raw, server_hostname="a.test") as sock:
            sock.sendall(b"GET /env HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            answer = parse_one(recv_all(sock))
    assert answer.status == 200
    expected = TRUSTED if header == V2_LOCAL else header_client(header)
    assert answer.body.decode().split()[0] == expected
    # Without the header the TLS listener closes: the ClientHello is no PROXY header.
    with connect(server, TRUSTED, proxy_port(server)) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            pki.client().wrap_socket(raw, server_hostname="a.test")
    server.wait_error_log(r"PROXY header refused: .*signature")


def header_client(header: bytes) -> str:
    return "192.168.0.1" if header.startswith(b"PROXY") else "192.0.2.1"


def test_proxy_header_on_a_unix_listener(frontd: Start, tmp_path: Path) -> None:
    """A balancer on the same host connects over a Unix socket: "unix:" in trusted_proxies
    believes its PROXY header, and its X-Forwarded-For after an UNKNOWN one."""
    path = tmp_path / "in.sock"
    top = (f'listen = ["127.0.0.1:0", {{ address = "unix:{path}", proxy_protocol = true }}]\n'
           'trusted_proxies = ["127.0.0.1", "unix:"]')
    server = frontd(site_config(tmp_path), top=top)
    request = b"GET /env HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(V1_TCP4 + request)
        assert RawClient(sock).read().body.decode().strip() == "192.168.0.1 56324"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(V1_UNKNOWN + request.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"))
        assert RawClient(sock).read().body.decode().split()[0] == "203.0.113.7"


def test_status_allow_sees_the_real_client(frontd: Start, tmp_path: Path) -> None:
    config = site_config(tmp_path).replace('names = ["example.test"]\n', 'names = ["example.test"]\n'
                                           'status = "/status"\nstatus_allow = ["203.0.113.0/24"]\n')
    server = frontd(config, top='trusted_proxies = ["127.0.0.1"]')
    named = "X-Forwarded-For: 203.0.113.7\r\n"
    assert get(server, TRUSTED, "/status", named).status == 200
    assert get(server, TRUSTED, "/status").status == 403
    assert get(server, OTHER, "/status", named).status == 403
