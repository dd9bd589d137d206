"""HTTPS at the front door: real TLS clients (Python's ssl, curl, openssl s_client) against frontd.

Certificates come from a throwaway trustme CA; each test starts frontd with a plain listener and a
TLS listener, both on port 0 (the TLS one is the second "listening on" line).
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import Server

from tests.conftest import Frontd, recv_all, wait_for
from tests.integration.proxy_backend import Backend, Backends, Received, Reply
from tests.integration.processes import children, wait_workers
from tests.integration.test_proxy_websocket import ws_servers  # noqa: F401 - the fixture

Start = Callable[..., Frontd]
NOW_UTC = datetime.datetime.now(datetime.timezone.utc)
TLS_TOP = 'listen = ["127.0.0.1:0", { address = "127.0.0.1:0", tls = true }]'


@dataclass
class Pki:
    """A test CA and certificates for a.test (also www.a.test) and b.test, as files."""

    ca: trustme.CA
    ca_pem: Path
    directory: Path

    def issue(self, name: str, *identities: str, **kw: object) -> tuple[Path, Path]:
        leaf = self.ca.issue_cert(*identities, **kw)  # type: ignore[arg-type]
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def client(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = trustme.CA()
    ca_pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    found = Pki(ca, ca_pem, directory)
    found.issue("a", "a.test", "www.a.test")
    found.issue("b", "b.test")
    return found


@pytest.fixture
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.stop()


def vhost(site: Path, name: str, *names: str, extra: str = "") -> str:
    listed = ", ".join(f'"{n}"' for n in names)
    return (f'[[vhost]]\nnames = [{listed}]\nroot = "{site}"\n'
            f'tls_certificate = "pki/{name}.pem"\ntls_key = "pki/{name}.key"\n{extra}\n')


def two_sites(site: Path, extra_a: str = "", extra_b: str = "") -> str:
    return (vhost(site, "a", "a.test", "www.a.test", extra="default = true\n" + extra_a)
            + vhost(site, "b", "b.test", extra=extra_b))


def tls_port(server: Frontd) -> int:
    """The TLS listener's port: the second "listening on" line."""
    found = wait_for(lambda: (lambda ports: ports if len(ports) >= 2 else None)(
        re.findall(r"listening on 127\.0\.0\.1:(\d+)", server.errors())), what="both listeners")
    return int(found[1])  # type: ignore[index]


def worker_pid(server: Frontd) -> int:
    return int(server.wait_error_log(r"worker (\d+) started").group(1))


class Client(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with `host` as the SNI name and the Host field."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, sni: str | None = None) -> None:
        super().__init__(host, port, context=context, timeout=10)
        self.sni = host if sni is None else sni

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni or None)  # type: ignore[attr-defined]

    def get(self, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.request("GET", path, headers=headers or {})
        response = self.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def peer_names(port: int, sni: str | None, context: ssl.SSLContext) -> list[str]:
    """The subjectAltName DNS names of the certificate frontd serves for `sni`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as sock:
            cert = sock.getpeercert()
            return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


def test_sni_picks_certificate_and_421_on_another_host(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    ctx = pki.client()
    assert peer_names(port, "a.test", ctx) == ["a.test", "www.a.test"]
    assert peer_names(port, "www.a.test", ctx) == ["a.test", "www.a.test"]
    assert peer_names(port, "b.test", ctx) == ["b.test"]
    # Unknown or missing SNI: the default vhost's certificate.
    unchecked = pki.client()
    unchecked.check_hostname = False
    assert peer_names(port, "unknown.test", unchecked) == ["a.test", "www.a.test"]
    assert peer_names(port, None, unchecked) == ["a.test", "www.a.test"]
    status, _, body = Client("b.test", port, ctx).get("/hello.txt")
    assert (status, body) == (200, b"hello\n")
    # The handshake was b.test's; a request for a.test on it is misdirected (RFC 9110 §15.5.20).
    conn = Client("b.test", port, ctx)
    status, _, _ = conn.get("/hello.txt", headers={"Host": "a.test"})
    assert status == 421
    server.wait_error_log(r"421: host 'a\.test' is not served by the certificate of SNI 'b\.test'")
    # The connection stays usable for its own vhost.
    assert conn.get("/hello.txt")[0] == 200


def test_tls_1_0_and_1_1_refused(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    for flag in ("-tls1", "-tls1_1"):
        # SECLEVEL=0 lets the client itself offer the old versions: the refusal must be frontd's.
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.test", flag,
             "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", str(pki.ca_pem)],
            input=b"", capture_output=True, timeout=20)
        assert result.returncode != 0, result.stdout[-500:]
    server.wait_error_log(r"TLS handshake failed: UNSUPPORTED_PROTOCOL, client: 127\.0\.0\.1")
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "b.test", flag,
             "-CAfile", str(pki.ca_pem), "-verify_return_error", "-alpn", "h2,http/1.1"],
            input=b"", capture_output=True, timeout=20)
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, out[-800:]
        assert f"Protocol  : {version}" in out or f"New, {version}" in out
        assert "subject=CN = " not in out or "b.test" in out
        assert "ALPN protocol: http/1.1" in out  # h2 is not offered yet
        assert "Verify return code: 0 (ok)" in out


def test_min_version_tls13(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd('[tls]\nmin_version = "TLSv1.3"\n' + two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    ctx = pki.client()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        peer_names(port, "a.test", ctx)
    assert peer_names(port, "a.test", pki.client()) == ["a.test", "www.a.test"]


def test_curl_large_file_and_plain_listener(frontd: Start, site: Path, pki: Pki) -> None:
    """A file body larger than the TLS chunk goes out whole and intact; plain HTTP still works."""
    data = os.urandom(3 * 1024 * 1024 + 7)
    (site / "big.bin").write_bytes(data)
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    out = site.parent / "big.out"
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", str(pki.ca_pem), "--resolve", f"a.test:{port}:127.0.0.1",
         "-o", str(out), "-w", "%{http_code} %{scheme} %{ssl_verify_result}", f"https://a.test:{port}/big.bin"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "200 HTTPS 0"
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    # A range and a HEAD inside TLS too.
    conn = Client("a.test", port, pki.client())
    status, headers, body = conn.get("/big.bin", headers={"Range": "bytes=1000000-1000009"})
    assert (status, body) == (206, data[1000000:1000010])
    plain = subprocess.run(["curl", "-sS", "--fail", f"http://127.0.0.1:{server.port}/hello.txt"],
                           capture_output=True, text=True, timeout=10)
    assert plain.stdout == "hello\n"


def test_strict_transport_security_only_over_tls(frontd: Start, site: Path, pki: Pki,
                                                  backends: Backends) -> None:
    """A backend's HSTS field reaches HTTPS clients and never plain-HTTP ones (RFC 6797 §7.2)."""

    def app(backend: Backend, req: Received, reply: Reply) -> None:
        reply.send(200, b"ok", [("strict-transport-security", "max-age=60")])

    hsts = backends.start(app)
    route = f'[[vhost.route]]\nprefix = "/app/"\nproxy = "{hsts.url}"\n'
    server = frontd(two_sites(site, extra_a=route), top=TLS_TOP)
    port = tls_port(server)
    status, headers, _ = Client("a.test", port, pki.client()).get("/app/")
    assert status == 200 and headers["strict-transport-security"] == "max-age=60"
    response = server.raw(b"GET /app/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200") and b"strict-transport-security" not in response.lower()


def test_gateway_sees_https(frontd: Start, site: Path, pki: Pki, tmp_path: Path) -> None:
    cgi = tmp_path / "cgi"
    cgi.mkdir()
    script = cgi / "env.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n")
    script.chmod(0o755)
    route = f'[[vhost.route]]\nprefix = "/cgi-bin/"\ncgi = "{cgi}"\n'
    server = frontd(two_sites(site, extra_b=route), top=TLS_TOP)
    port = tls_port(server)
    status, _, body = Client("b.test", port, pki.client()).get("/cgi-bin/env.sh")
    assert status == 200
    env = dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)
    assert env["HTTPS"] == "on" and env["REQUEST_SCHEME"] == "https"
    assert env["SERVER_PORT"] == str(port)
    assert env["SSL_PROTOCOL"] == "TLSv1.3" and env["SSL_CIPHER"].startswith("TLS_")
    assert env["SSL_TLS_SNI"] == "b.test"
    # Plain HTTP: none of them.
    plain = server.raw(b"GET /cgi-bin/env.sh HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n").decode()
    assert "REQUEST_SCHEME=http\n" in plain and "HTTPS=" not in plain and "SSL_" not in plain


def test_proxy_backend_sees_forwarded_proto(frontd: Start, site: Path, pki: Pki, backends: Backends) -> None:
    echo = backends.start()
    route = f'[[vhost.route]]\nprefix = "/app/"\nproxy = "{echo.url}"\n'
    server = frontd(two_sites(site, extra_a=route), top=TLS_TOP)
    port = tls_port(server)
    status, _, body = Client("a.test", port, pki.client()).get("/app/x")
    assert status == 200
    headers = dict(json.loads(body)["headers"])
    assert headers["x-forwarded-proto"] == "https"
    assert "proto=https" in headers["forwarded"]


def test_redirect_https(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd(two_sites(site, extra_a="redirect_https = true"), top=TLS_TOP)
    port = tls_port(server)
    response = server.raw(b"GET /sub/x%20y?a=1&b=2 HTTP/1.1\r\nHost: www.a.test\r\nConnection: close\r\n\r\n")
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 308 ")
    assert f"location: https://www.a.test:{port}/sub/x%20y?a=1&b=2\r\n" in head
    # HTTP/1.0 without Host: the vhost's first name; a POST is redirected with 308 (method kept).
    response = server.raw(b"POST /form HTTP/1.0\r\nContent-Length: 3\r\n\r\na=1")
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 308 ") and f"location: https://a.test:{port}/form\r\n" in head
    response = server.raw(b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert f"location: https://a.test:{port}/\r\n".encode() in response.split(b"\r\n\r\n", 1)[0]
    # The ACME http-01 path is never redirected (here: nothing there, so 404), nor is another vhost.
    response = server.raw(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a.test\r\n"
                          b"Connection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404")
    response = server.raw(b"GET /hello.txt HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200")
    # Over HTTPS the same vhost is served, not redirected again.
    assert Client("a.test", port, pki.client()).get("/hello.txt")[0] == 200


def test_handshake_stall_cut_at_header_timeout(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd('[limits]\nheader_timeout = "1s"\n' + two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        started = time.monotonic()
        assert recv_all(sock) == b""  # closed by frontd, without a byte of TLS
        elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 5, elapsed
    server.wait_error_log(r"\[info\] \d+: TLS handshake failed: not complete within header_timeout \(1s\), "
                          r"client: 127\.0\.0\.1")
    assert Client("a.test", port, pki.client()).get("/hello.txt")[0] == 200


def client_hello(sni: str) -> bytes:
    """A real ClientHello, as the first flight a TLS client sends."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def halfway_handshakes(port: int, hello: bytes, count: int) -> None:
    """`count` handshakes that stop halfway: every other one inside the ClientHello, the others
    after the whole ClientHello and the start of the server's answer."""
    for i in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if i % 2:
                sock.sendall(hello)
                sock.recv(1)  # the server's flight has started
            else:
                sock.sendall(hello[: len(hello) // 2])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_failed_handshakes_leak_nothing(frontd: Start, site: Path, pki: Pki) -> None:
    """1000 handshakes that stop halfway (after a whole ClientHello and the server's answer, or
    inside the ClientHello) leave the worker with the file descriptors it had, and serving."""
    server = frontd(two_sites(site), top=TLS_TOP + '\nlog_level = "info"')
    port = tls_port(server)
    pid = worker_pid(server)
    assert Client("a.test", port, pki.client()).get("/hello.txt")[0] == 200
    wait_for(lambda: open_fds(pid) <= 20, what="an idle worker")
    baseline = open_fds(pid)
    hello = client_hello("a.test")
    errors: list[BaseException] = []

    def run(count: int) -> None:
        try:
            halfway_handshakes(port, hello, count)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(250,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    wait_for(lambda: open_fds(pid) <= baseline, timeout=20, what=f"worker fds back to {baseline}")
    assert Client("b.test", port, pki.client()).get("/hello.txt")[0] == 200
    failed = re.findall(r"\[info\] \d+: TLS handshake failed: (.*), client: 127\.0\.0\.1\n", server.errors())
    assert len(failed) == 1000 and set(failed) == {"the client closed the connection"}, set(failed)
    assert "Traceback" not in server.errors()


def serial(port: int, sni: str, context: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as sock:
            der = sock.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def test_usr2_swaps_certificate_while_keepalive_connection_works(frontd: Start, site: Path, pki: Pki) -> None:
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    ctx = pki.client()
    before = serial(port, "a.test", ctx)
    kept = Client("a.test", port, ctx)
    assert kept.get("/hello.txt")[0] == 200
    pki.issue("a", "a.test", "www.a.test")  # new files in place
    os.kill(server.pid, signal.SIGUSR2)
    wait_for(lambda: serial(port, "a.test", ctx) != before, what="the new certificate served")
    assert kept.get("/hello.txt")[0] == 200 and kept.sock is not None  # the same connection
    # A bad certificate keeps the one serving, with an error line.
    (pki.directory / "a.pem").write_text("not a certificate\n")
    now = serial(port, "a.test", ctx)
    os.kill(server.pid, signal.SIGUSR2)
    server.wait_error_log(r"\[error\] \d+: certificate reload: vhost a\.test: certificate .*a\.pem: no PEM "
                          r"certificate in the file; still serving the previous one")
    assert serial(port, "a.test", ctx) == now
    assert kept.get("/hello.txt")[0] == 200


def test_reload_rereads_certificates_same_config(frontd: Start, site: Path, pki: Pki) -> None:
    """SIGHUP with the config text unchanged still picks up new certificate files; a bad one makes
    the reload fail and the old certificate keeps serving."""
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    ctx = pki.client()
    before = serial(port, "b.test", ctx)
    pki.issue("b", "b.test")
    old_workers = children(server.pid)
    os.kill(server.pid, signal.SIGHUP)
    # Once the old workers are gone, every connection meets the new generation.
    wait_workers(server.pid, len(old_workers), not_in=old_workers)
    current = serial(port, "b.test", ctx)
    assert current != before
    other_key = pki.directory / "other.key"
    pki.issue("other", "b.test")
    shutil.copy(other_key, pki.directory / "b.key")  # a key that is not the certificate's
    os.kill(server.pid, signal.SIGHUP)
    server.wait_error_log(r"configuration reload failed: vhost b\.test: key .*b\.key does not belong to "
                          r"certificate .*b\.pem; still running the previous configuration")
    assert serial(port, "b.test", ctx) == current


def test_internal_ca_trusted_by_curl(frontd: Start, site: Path, tmp_path: Path) -> None:
    storage = tmp_path / "state"
    config = (f'[acme]\nstorage = "{storage}"\n[[vhost]]\nnames = ["localhost", "127.0.0.1", "[::1]"]\n'
              f'root = "{site}"\ntls = "internal"\n')
    server = frontd(config, top=TLS_TOP)
    port = tls_port(server)
    ca = storage / "internal" / "ca.pem"
    server.wait_error_log(rf'local CA for tls = "internal": {re.escape(str(ca))}')
    for url in (f"https://localhost:{port}/hello.txt", f"https://127.0.0.1:{port}/hello.txt"):
        result = subprocess.run(["curl", "-sS", "--fail", "--cacert", str(ca), url],
                                capture_output=True, text=True, timeout=20)
        assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr
    assert oct(os.stat(storage / "internal" / "ca-key.pem").st_mode & 0o777) == "0o600"
    assert oct(os.stat(storage / "certificates" / "localhost" / "privkey.pem").st_mode & 0o777) == "0o600"
    # A restart reuses the CA and the certificate.
    ca_bytes = ca.read_bytes()
    leaf = (storage / "certificates" / "localhost" / "fullchain.pem").read_bytes()
    server.stop()
    again = frontd(config, top=TLS_TOP, name="again.conf")
    tls_port(again)
    assert ca.read_bytes() == ca_bytes
    assert (storage / "certificates" / "localhost" / "fullchain.pem").read_bytes() == leaf


def demo_config(tmp_path: Path) -> str:
    """conf/frontd.conf with its paths made absolute, both listeners on port 0, state in tmp_path."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "conf" / "frontd.conf").read_text()
    text = re.sub(r"(?m)^(listen|error_log|access_log) = .*$", "", text).replace('"../', f'"{repo}/')
    return text + f'\n[acme]\nstorage = "{tmp_path / "state"}"\n'


def chromium_dom(chromium: str, url: str, home: Path) -> subprocess.CompletedProcess[str]:
    profile = home / "profile"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(home)},
    )


def test_chromium_loads_demo_over_https_with_local_ca_trusted(frontd: Start, tmp_path: Path) -> None:
    """Chromium trusts the local CA from the NSS database in $HOME/.pki/nssdb (what a developer does
    with certutil): the demo's page loads over HTTPS; with an empty database it does not."""
    chromium, certutil = shutil.which("chromium"), shutil.which("certutil")
    if chromium is None or certutil is None:
        pytest.skip("chromium and certutil (libnss3-tools) are needed; tests/run.sh installs them")
    server = frontd(demo_config(tmp_path), top=TLS_TOP)
    port = tls_port(server)
    ca = tmp_path / "state" / "internal" / "ca.pem"
    url = f"https://localhost:{port}/"
    untrusted, trusted = tmp_path / "home-untrusted", tmp_path / "home-trusted"
    for home in (untrusted, trusted):
        nssdb = home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=30,
                       capture_output=True)
    subprocess.run([certutil, "-d", f"sql:{trusted / '.pki' / 'nssdb'}", "-A", "-t", "C,,", "-n", "frontd local CA",
                    "-i", str(ca)], check=True, timeout=30, capture_output=True)
    result = chromium_dom(chromium, url, trusted)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<h1>frontd works</h1>" in result.stdout, result.stderr[-2000:]
    # The page's stylesheet and images came over the same TLS listener.
    server.wait_access_log(r'"GET /style\.css HTTP/1\.1" 200')
    assert not re.search(r"net::ERR_CERT|CONSOLE.*(Uncaught|Error)|Failed to load resource", result.stderr)
    result = chromium_dom(chromium, url, untrusted)
    assert "<h1>frontd works</h1>" not in result.stdout
    assert "ERR_CERT_AUTHORITY_INVALID" in result.stderr


def test_status_page_lists_certificates(frontd: Start, site: Path, pki: Pki, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.test_status import STATUS, status

    soon = NOW_UTC + datetime.timedelta(days=5)
    pki.issue("b", "b.test", not_after=soon)
    storage = tmp_path / "state"
    config = (f'[acme]\nstorage = "{storage}"\n'
              + two_sites(site, extra_a=f'status = "{STATUS}"')
              + f'[[vhost]]\nnames = ["localhost"]\nroot = "{site}"\ntls = "internal"\n'
              + f'[[vhost]]\nnames = ["later.test"]\nroot = "{site}"\ntls = "acme"\n')
    server = frontd(config, top=TLS_TOP)
    tls_port(server)
    server.wait_error_log(r"HTTPS for later\.test waits for its certificate \(acme\)")
    doc = status(server)  # plain HTTP, Host 127.0.0.1: the default vhost (a.test) has the page
    by_vhost = {c["vhost"]: c for c in doc["certificates"]}
    assert set(by_vhost) == {"a.test", "b.test", "localhost", "later.test"}
    assert by_vhost["a.test"]["names"] == ["a.test", "www.a.test"] and by_vhost["a.test"]["source"] == "file"
    assert by_vhost["b.test"]["not_after"] == pytest.approx(soon.timestamp(), abs=1)
    assert by_vhost["localhost"]["source"] == "internal"
    assert by_vhost["localhost"]["issuer"].startswith("frontd local CA")
    assert by_vhost["later.test"]["error"] == "not issued yet" and by_vhost["later.test"]["not_after"] is None
    text = server.raw(f"GET {STATUS}?format=prometheus HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
                      .encode()).split(b"\r\n\r\n", 1)[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expiry = {s.labels["vhost"]: (s.labels["source"], s.value)
              for s in families["frontd_tls_certificate_expiry_timestamp_seconds"].samples}
    assert set(expiry) == {"a.test", "b.test", "localhost"}
    assert expiry["b.test"] == ("file", pytest.approx(soon.timestamp(), abs=1))
    page = server.raw(f"GET {STATUS} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode()).decode()
    assert '<table id="certificates">' in page and "not issued yet" in page


def resumed(port: int, context: ssl.SSLContext) -> bool:
    """Whether a second connection resumes the first one's session (TLS 1.3 tickets)."""
    session = None
    for attempt in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="a.test", session=session) as sock:
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                assert recv_all(sock).startswith(b"HTTP/1.1 200")  # tickets come after the handshake
                if attempt:
                    return sock.session_reused
                session = sock.session
    raise AssertionError("unreachable")


@pytest.mark.parametrize("tickets", [True, False])
def test_session_tickets(frontd: Start, site: Path, pki: Pki, tickets: bool) -> None:
    setting = "" if tickets else "[tls]\nsession_tickets = false\n"
    server = frontd(setting + two_sites(site), top=TLS_TOP)
    assert resumed(tls_port(server), pki.client()) is tickets


def test_non_ascii_sni_refused_without_traceback(frontd: Start, site: Path, pki: Pki, tmp_path: Path) -> None:
    """A ClientHello whose server name is not ASCII (RFC 6066 §3 wants A-labels): Python's ssl
    cannot decode it before frontd's callback runs; the handshake fails with one info line and no
    traceback on stderr, and the worker serves on."""
    server = frontd(two_sites(site), top=TLS_TOP)
    port = tls_port(server)
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "é.test"],
                            input=b"", capture_output=True, timeout=20)
    assert result.returncode != 0
    server.wait_error_log(r"\[info\] \d+: TLS handshake failed: CALLBACK_FAILED \(an SNI name that is not ASCII\), "
                          r"client: 127\.0\.0\.1")
    assert Client("a.test", port, pki.client()).get("/hello.txt")[0] == 200
    assert "Traceback" not in (tmp_path / "frontd.conf.stderr").read_text()


def test_websocket_through_tls(frontd: Start, site: Path, pki: Pki, ws_servers: Callable[..., Server]) -> None:
    """wss://: the tunnel after the 101 runs over the TLS connection (the detached streams)."""
    backend = ws_servers()
    url = f"http://127.0.0.1:{backend.socket.getsockname()[1]}"
    server = frontd(two_sites(site, extra_a=f'[[vhost.route]]\nprefix = "/ws/"\nproxy = "{url}"\n'), top=TLS_TOP)
    port = tls_port(server)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ws_connect(f"wss://a.test:{port}/ws/echo", sock=sock, ssl=pki.client(), server_hostname="a.test",
                    proxy=None, ping_interval=None, open_timeout=10) as ws:
        blob = os.urandom(300_000)
        ws.send(blob)
        assert ws.recv(timeout=10) == blob
        ws.send("headers?")
        headers = json.loads(ws.recv(timeout=10))
        assert headers["x-forwarded-proto"] == "https"
    server.wait_access_log(r'"GET /ws/echo HTTP/1\.1" 101 [1-9][0-9]{5,} ')
