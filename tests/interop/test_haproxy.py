"""HAProxy in front of frontd, configured as docs/access.md shows: TCP mode with `send-proxy-v2`
(plain and TLS passed through) and health checks with `check-send-proxy`, HTTP mode with
`option forwardfor`. The client connects from 127.0.0.2; HAProxy reaches frontd from 127.0.0.1,
the trusted proxy; a CGI program shows that REMOTE_ADDR is the client's."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import requests

from tests.conftest import Frontd, recv_all, wait_for
from tests.http_client import parse_one
from tests.integration.test_client_address import ENV_SH
from tests.integration.test_tls import Pki, pki, vhost  # noqa: F401 - the fixture
from tests.interop.conftest import Peer, find_program, free_port

Start = Callable[..., Frontd]
CLIENT = "127.0.0.2"


def haproxy_config(tcp: int, tls: int, http: int, frontd_ports: list[int]) -> str:
    plain, proxied, proxied_tls = frontd_ports
    return f"""global
    maxconn 64

defaults
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend tcp_in
    mode tcp
    bind 127.0.0.1:{tcp}
    default_backend frontd_proxied

backend frontd_proxied
    mode tcp
    server frontd1 127.0.0.1:{proxied} send-proxy-v2 check check-send-proxy inter 200ms

frontend tls_in
    mode tcp
    bind 127.0.0.1:{tls}
    default_backend frontd_tls

backend frontd_tls
    mode tcp
    server frontd1 127.0.0.1:{proxied_tls} send-proxy-v2

frontend http_in
    mode http
    bind 127.0.0.1:{http}
    option forwardfor
    default_backend frontd_http

backend frontd_http
    mode http
    server frontd1 127.0.0.1:{plain}
"""


def get(port: int, pki: Pki | None = None) -> str:
    """REMOTE_ADDR as the CGI program saw it, for a request through HAProxy's `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT, 0)) as raw:
        sock = pki.client().wrap_socket(raw, server_hostname="a.test") if pki is not None else raw
        sock.sendall(b"GET /env HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        answer = parse_one(recv_all(sock))
    assert answer.status == 200, answer
    return answer.body.decode().split()[0]


def test_haproxy_in_front(frontd: Start, site: Path, pki: Pki, peers: Callable[..., Peer]) -> None:
    haproxy = find_program("haproxy")
    program = site / "env.sh"
    program.write_text(ENV_SH)
    program.chmod(0o755)
    top = ('listen = ["127.0.0.1:0", { address = "127.0.0.1:0", proxy_protocol = true },\n'
           '          { address = "127.0.0.1:0", tls = true, proxy_protocol = true }]\n'
           'trusted_proxies = ["127.0.0.1"]')
    config = (vhost(site, "a", "a.test", extra='default = true\nstatus = "/status"\nstatus_allow = ["127.0.0.1"]')
              + f'  [[vhost.route]]\n  prefix = "/env"\n  cgi = "{program}"\n')
    server = frontd(config, top=top)
    ports = [int(address.rsplit(":", 1)[1]) for address in server.addresses]
    tcp, tls, http = free_port(), free_port(), free_port()
    conf = site.parent / "haproxy.cfg"
    conf.write_text(haproxy_config(tcp, tls, http, ports))
    peers("haproxy", [haproxy, "-db", "-f", str(conf)], [f"127.0.0.1:{p}" for p in (tcp, tls, http)], site.parent)
    assert get(tcp) == CLIENT
    assert get(tls, pki) == CLIENT
    assert get(http) == CLIENT
    server.wait_access_log(rf"(?m)^{re.escape(CLIENT)} - - .*\"GET /env HTTP/1\.1\" 200")
    # HAProxy's health checks (every 200 ms) start with a PROXY header too: frontd's connection
    # count grows past the requests made (3, and one per status query), and none is refused.
    queries = [0]

    def checks() -> int:
        queries[0] += 1
        answer = requests.get(f"http://127.0.0.1:{ports[0]}/status?format=json", timeout=10)
        return int(answer.json()["totals"]["connections"]) - 3 - queries[0]

    wait_for(lambda: checks() >= 5, what="five health checks")
    assert "PROXY header refused" not in server.errors()
    assert "PROXY header: the client closed" not in server.errors()
