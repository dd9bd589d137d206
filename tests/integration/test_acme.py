"""Automatic certificates end to end: a real frontd gets its certificates from a real ACME CA (Pebble)."""

from __future__ import annotations

import http.server
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509

from tests.conftest import Frontd, recv_all, wait_for
from tests.integration import processes
from tests.integration.test_status import SCHEMA as STATUS_SCHEMA
from tests.integration.test_tls import halfway_handshakes
from tests.unit.test_client_hello import openssl_hello
from tests.integration.acme_ca import Pebble, free_port, start_pebble

NAMES = ("www.frontd.test", "frontd.test")


@pytest.fixture
def ports() -> tuple[int, int]:
    """Fixed ports for frontd's plain and TLS listeners: Pebble validates challenges on them."""
    return free_port(), free_port()


@pytest.fixture
def pebble(tmp_path: Path, ports: tuple[int, int]) -> Iterator[Callable[..., Pebble]]:
    started: list[Pebble] = []

    def start(**kwargs: object) -> Pebble:
        ca = start_pebble(tmp_path, *ports, **kwargs)  # type: ignore[arg-type]
        started.append(ca)
        return ca

    yield start
    for ca in started:
        ca.stop()


def acme_config(ca: Pebble, storage: Path, *, challenge: str = "http-01", directory: str | None = None,
                redirect_https: bool = False) -> str:
    return f"""
[acme]
email = "admin@frontd.test"
directory = "{directory or ca.directory}"
ca_bundle = "{ca.ca_bundle}"
storage = "{storage}"
challenge = "{challenge}"

[[vhost]]
names = {json.dumps(list(NAMES))}
root = "{storage.parent / 'www'}"
tls = "acme"
redirect_https = {str(redirect_https).lower()}
"""


def first_certificate(frontd: Callable[..., Frontd], ca: Pebble, storage: Path, ports: tuple[int, int]) -> Frontd:
    """A frontd ("first.conf") that has obtained its certificate from `ca`."""
    server = frontd(acme_config(ca, storage), top=listen(ports), name="first.conf")
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    return server


def unreachable_ca(storage: Path) -> str:
    """An [acme] table whose CA is not there: every attempt fails, for tests that need no CA."""
    return f'[acme]\ndirectory = "https://127.0.0.1:{free_port()}/dir"\nstorage = "{storage}"\n\n'


def chain(storage: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((storage / "certificates" / NAMES[0] / "fullchain.pem").read_bytes())


def issued(storage: Path) -> bool:
    return (storage / "certificates" / NAMES[0] / "fullchain.pem").exists()


def listen(ports: tuple[int, int]) -> str:
    return f'listen = ["127.0.0.1:{ports[0]}", {{ address = "127.0.0.1:{ports[1]}", tls = true }}]\n'


def https_get(port: int, root_pem: bytes, name: str = NAMES[0], path: str = "/") -> tuple[bytes, x509.Certificate]:
    """GET over TLS, verified against `root_pem` for `name`; (response, the certificate served)."""
    context = ssl.create_default_context(cadata=root_pem.decode("ascii"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
            return recv_all(tls), served


def try_https(port: int, root_pem: bytes, name: str = NAMES[0], path: str = "/") -> tuple[bytes, x509.Certificate] | None:
    """`https_get`, or None while the handshake fails (the certificate not loaded yet by the
    worker that took the connection: workers load it just after the master logs it)."""
    try:
        return https_get(port, root_pem, name, path)
    except (ssl.SSLError, OSError):
        return None


def wait_https(port: int, root_pem: bytes, name: str = NAMES[0], path: str = "/") -> tuple[bytes, x509.Certificate]:
    """The first HTTPS response once a worker serves the vhost's certificate (from `root_pem`)."""
    return wait_for(lambda: try_https(port, root_pem, name, path), 10, f"HTTPS for {name}")  # type: ignore[return-value]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("secure home\n")
    return root


def test_http01_issuance(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble], ports: tuple[int, int],
                         tmp_path: Path, www: Path) -> None:
    ca = pebble(chain_length=4)  # four intermediates: the whole chain must be stored and sent
    storage = tmp_path / "certs"
    server = frontd(acme_config(ca, storage, redirect_https=True), top=listen(ports))
    plain = b"GET /?q=1 HTTP/1.1\r\nHost: www.frontd.test\r\nConnection: close\r\n\r\n"
    # Until the certificate arrives, plain HTTP serves the vhost normally, redirect_https or not.
    assert b"secure home" in server.raw(plain)
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    server.wait_error_log(r"HTTPS for .*www\.frontd\.test.* starts")
    wait_for(lambda: server.raw(plain).startswith(b"HTTP/1.1 308"), 10, "redirect_https once HTTPS works")
    assert f"location: https://www.frontd.test:{ports[1]}/?q=1".encode() in server.raw(plain).lower()
    leaf, *intermediates = chain(storage)
    assert len(intermediates) == 4, [c.subject.rfc4514_string() for c in intermediates]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    root = x509.load_pem_x509_certificate(ca.root())
    # The chain leads to the root of this Pebble run: each certificate is signed by the next one.
    for child, parent in zip([leaf, *intermediates], [*intermediates, root]):
        child.verify_directly_issued_by(parent)
    key = storage / "certificates" / NAMES[0] / "privkey.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    state = json.loads((storage / "state" / f"{NAMES[0]}.json").read_text())
    assert state["state"] == "valid" and state["last_error"] is None
    # Every step was one log line; the challenge files are gone once validated.
    log = server.errors()
    for step in ("account https://", "order https://", "http-01 challenge for www.frontd.test ready",
                 "www.frontd.test validated by http-01", "frontd.test validated by http-01", "finalized"):
        assert step in log, step
    assert not list((storage / "challenges" / "http-01").iterdir())
    assert "Traceback" not in log
    # HTTPS with the new certificate, verified against Pebble's root, for both names.
    for name in NAMES:
        response, served = wait_https(ports[1], ca.root(), name)
        assert response.startswith(b"HTTP/1.1 200") and b"secure home" in response
        assert served.serial_number == leaf.serial_number


def test_tls_alpn01_issuance(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble], ports: tuple[int, int],
                             tmp_path: Path, www: Path) -> None:
    ca = pebble()
    storage = tmp_path / "certs"
    server = frontd(acme_config(ca, storage, challenge="tls-alpn-01"), top=listen(ports))
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    for name in NAMES:
        # The worker logs after the handshake, which the CA may have acted on already.
        server.wait_error_log(rf"tls-alpn-01 challenge certificate presented for {re.escape(name)}, ")
        assert f"acme: {name} validated by tls-alpn-01" in server.errors()
    log = server.errors()
    assert "http-01 challenge" not in log
    assert not list((storage / "challenges" / "tls-alpn-01").iterdir())
    response, _ = wait_https(ports[1], ca.root())
    assert b"secure home" in response
    # An ordinary client (ALPN http/1.1) on the same listener is unaffected by the ClientHello peek.
    assert "Traceback" not in server.errors()


def test_restart_reuses_account_and_certificate(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                               ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    ca = pebble()
    storage = tmp_path / "certs"
    first = first_certificate(frontd, ca, storage, ports)
    # After the issuance the process looks for renewal information once (Pebble has none), then rests.
    wait_for(lambda: json.loads((storage / "state" / f"{NAMES[0]}.json").read_text()).get("ari_check_at"),
             10, "the renewal information check")
    serial = chain(storage)[0].serial_number
    first.stop()
    requests_before = ca.log.read_text().count("calling handler")
    second = frontd(acme_config(ca, storage), top=listen(ports), name="second.conf")
    second.wait_error_log(r"acme: certificate for www\.frontd\.test valid until \S+, renewal from")
    second.wait_error_log(r"HTTPS for .*www\.frontd\.test.* starts")
    response, served = https_get(ports[1], ca.root())
    assert b"secure home" in response and served.serial_number == serial
    # Nothing was asked of the CA: no account, no order, not even the directory.
    assert ca.log.read_text().count("calling handler") == requests_before
    assert ca.orders() == 1
    assert "acme: obtaining" not in second.errors() and "acme: account" not in second.errors()


def test_renewal_of_a_short_lived_certificate(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                              ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    ca = pebble(validity=15)  # renewed 10 s after issuance, when a third of its life remains
    storage = tmp_path / "certs"
    server = frontd(acme_config(ca, storage), top=listen(ports))
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    _, old = wait_https(ports[1], ca.root())
    server.wait_error_log(r"acme: renewing a certificate for www\.frontd\.test", timeout=30)
    wait_for(lambda: server.errors().count("acme: certificate for www.frontd.test stored") == 2, 30, "the renewal")
    # The workers were told (SIGUSR2): new connections get the new certificate.
    wait_for(lambda: (lambda got: got is not None and got[1].serial_number != old.serial_number)(
        try_https(ports[1], ca.root())), 10, "the renewed certificate to be served")
    assert ca.orders() == 2
    assert "Traceback" not in server.errors()


def test_refusing_ca_keeps_the_old_certificate(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                               ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    ca = pebble()
    storage = tmp_path / "certs"
    config = acme_config(ca, storage)
    first = first_certificate(frontd, ca, storage, ports)
    root, serial = ca.root(), chain(storage)[0].serial_number
    first.stop()
    ca.stop()  # the CA is gone: every request to it is refused
    state_file = storage / "state" / f"{NAMES[0]}.json"
    state = json.loads(state_file.read_text())
    state["renew_at"] = 1  # due long ago
    state_file.write_text(json.dumps(state))
    server = frontd(config + 'status = "/status"\n', top=listen(ports), name="second.conf")
    line = server.wait_error_log(r"\[error\] \d+: acme: renewing for www\.frontd\.test failed: (.*)", timeout=30)
    assert "Connection refused" in line.group(1) and "the current certificate keeps serving" in line.group(1)
    state = json.loads(state_file.read_text())
    assert state["state"] == "failed" and "Connection refused" in state["last_error"] and state["failures"] == 1
    assert state["retry_at"] > state["renew_at"]
    # The old certificate keeps serving.
    response, served = https_get(ports[1], root)
    assert b"secure home" in response and served.serial_number == serial
    # The status page shows the state and the error (JSON, HTML, Prometheus).
    page = server.raw(b"GET /status?format=json HTTP/1.1\r\nHost: www.frontd.test\r\nConnection: close\r\n\r\n")
    doc = json.loads(page.split(b"\r\n\r\n", 1)[1])
    jsonschema.validate(doc, STATUS_SCHEMA, cls=jsonschema.Draft202012Validator)
    [entry] = doc["certificates"]
    assert entry["source"] == "acme" and entry["not_after"] and sorted(entry["names"]) == sorted(NAMES)
    acme = entry["acme"]
    assert acme["state"] == "failed" and acme["failures"] == 1 and "Connection refused" in acme["last_error"]
    assert entry["not_after"] > acme["retry_at"]
    html = server.raw(b"GET /status HTTP/1.1\r\nHost: www.frontd.test\r\nConnection: close\r\n\r\n").decode()
    assert "failed</span>" in html and "Connection refused" in html
    metrics = server.raw(b"GET /status?format=prometheus HTTP/1.1\r\nHost: www.frontd.test\r\n"
                         b"Connection: close\r\n\r\n").decode()
    assert 'frontd_acme_failures{vhost="www.frontd.test"} 1' in metrics
    assert "Traceback" not in server.errors()


def test_acme_process_is_restarted_and_stops_with_the_master(frontd: Callable[..., Frontd], tmp_path: Path,
                                                             www: Path) -> None:
    storage = tmp_path / "certs"
    config = unreachable_ca(storage) + f"""
[[vhost]]
names = ["www.frontd.test"]
root = "{www}"
tls = "acme"
"""
    server = frontd(config)
    first = int(server.wait_error_log(r"acme process (\d+) started").group(1))
    server.wait_error_log(r"acme: obtaining for www\.frontd\.test failed: .*Connection refused")
    assert processes.alive(first) and first in processes.children(server.pid)
    os.kill(first, signal.SIGKILL)
    server.wait_error_log(rf"acme process {first} killed by signal SIGKILL; starting a new one in 1s")
    second = int(server.wait_error_log(rf"acme process (?!{first}\b)(\d+) started").group(1))
    # Plain HTTP is served meanwhile, and the challenge path of an unknown token is a 404.
    assert b"secure home" in server.raw(b"GET / HTTP/1.1\r\nHost: www.frontd.test\r\nConnection: close\r\n\r\n")
    response = server.raw(b"GET /.well-known/acme-challenge/unknown HTTP/1.1\r\nHost: www.frontd.test\r\n"
                          b"Connection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404")
    os.kill(server.pid, signal.SIGTERM)
    server.proc.wait(10)
    wait_for(lambda: not processes.alive(second), 5, "the ACME process to stop with the master")


def test_http01_responder(frontd: Callable[..., Frontd], tmp_path: Path, www: Path) -> None:
    storage = tmp_path / "certs"
    token = "-Tok_en0"  # base64url: may start with "-" or "_"
    challenges = storage / "challenges" / "http-01"
    challenges.mkdir(parents=True)
    (challenges / token).write_text(f"{token}.thumbprint")
    (challenges / "other.txt").write_text("not a token")
    tls_port = free_port()
    config = unreachable_ca(storage) + f"""
[[vhost]]
names = ["www.frontd.test"]
tls = "acme"
redirect_https = true
allow = []                          # nobody: the CA is let through all the same

  [[vhost.rewrite]]                 # would send the challenge path elsewhere: not the CA's request
  match = '^/\\.well-known/(.*)$'
  to = "/elsewhere/$1"

  [[vhost.route]]
  prefix = "/"
  proxy = "http://127.0.0.1:{free_port()}"

[[vhost]]
names = ["plain.frontd.test"]
root = "{www}"
"""
    server = frontd(config, top=f'listen = ["127.0.0.1:0", {{ address = "127.0.0.1:{tls_port}", tls = true }}]\n')

    def get(path: str, host: str = "www.frontd.test", method: str = "GET") -> bytes:
        return server.raw(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())

    # Before the rewrite, the access rules, the route (a proxy to nothing) and redirect_https.
    response = get(f"/.well-known/acme-challenge/{token}")
    assert response.startswith(b"HTTP/1.1 200")
    head, body = response.split(b"\r\n\r\n", 1)
    assert b"content-type: text/plain" in head.lower() and body == f"{token}.thumbprint".encode()
    assert get(f"/.well-known/acme-challenge/{token}", method="HEAD").startswith(b"HTTP/1.1 200")
    assert get(f"/.well-known/acme-challenge/{token}", method="POST").startswith(b"HTTP/1.1 405")
    # Only tokens (base64url) and only pending ones; what the target parser refuses first is a 400.
    for path in ("/.well-known/acme-challenge/other.txt", "/.well-known/acme-challenge/missing",
                 "/.well-known/acme-challenge/", "/.well-known/acme-challenge/a%2Eb"):
        assert get(path).startswith(b"HTTP/1.1 404"), path
    for path in ("/.well-known/acme-challenge/..%2Fstate", "/.well-known/acme-challenge/a%00b"):
        assert get(path).startswith((b"HTTP/1.1 404", b"HTTP/1.1 400")), path
    # Everything else meets the access rules (allow = []) as configured.
    assert get("/page").startswith(b"HTTP/1.1 403")
    # A vhost without tls = "acme" routes the path as any other.
    assert get(f"/.well-known/acme-challenge/{token}", host="plain.frontd.test").startswith(b"HTTP/1.1 404")
    assert "Traceback" not in server.errors()


def test_clienthello_peek_is_bounded_by_header_timeout(frontd: Callable[..., Frontd], tmp_path: Path,
                                                       www: Path) -> None:
    """With tls-alpn-01, every TLS connection's ClientHello is read before the handshake: a client
    that sends none, or half of one, is cut off at header_timeout (one in all, not one per phase)."""
    storage = tmp_path / "certs"
    tls_port = free_port()
    config = unreachable_ca(storage).replace("[acme]\n", '[acme]\nchallenge = "tls-alpn-01"\n') + f"""
[limits]
header_timeout = "1s"

[[vhost]]
names = ["www.frontd.test"]
root = "{www}"
tls = "acme"
"""
    server = frontd(config, top=f'listen = ["127.0.0.1:0", {{ address = "127.0.0.1:{tls_port}", tls = true }}]\n')
    hello = openssl_hello("www.frontd.test", ["acme-tls/1"])
    for count, sent in enumerate((b"", hello[:20]), 1):  # nothing, then half a ClientHello
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            assert recv_all(sock) == b""
            assert 0.5 < time.monotonic() - started < 5
        wait_for(lambda: server.errors().count("TLS handshake failed: not complete within header_timeout (1s), "
                                               "client: 127.0.0.1") == count, 5, "one log line per stalled client")
    # A whole ClientHello for acme-tls/1 without a pending challenge gets no challenge certificate.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["acme-tls/1"])
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(raw, server_hostname="www.frontd.test")
    assert "challenge certificate presented" not in server.errors()
    assert "Traceback" not in server.errors()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_workers_as_another_user_never_read_keys(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                                 ports: tuple[int, int], challenge: str) -> None:
    """frontd started as root with `user`: the ACME process keeps root like the master, the keys
    are root's alone, and the workers (nobody) still answer the challenges and serve HTTPS."""
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="frontd-acme-user-"))
    try:
        shared.chmod(0o755)
        (shared / "www").mkdir(mode=0o755)
        (shared / "www" / "index.html").write_text("secure home\n")
        (shared / "www" / "index.html").chmod(0o644)
        ca = pebble()
        storage = shared / "certs"
        top = (listen(ports) + 'user = "nobody"\n' + f'error_log = "{shared}/error.log"\n'
               + f'access_log = "{shared}/access.log"\n')
        server = frontd(acme_config(ca, storage, challenge=challenge) + 'status = "/status"\n', top=top, wait=False)
        server.error_log, server.access_log = shared / "error.log", shared / "access.log"
        server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
        acme_pid = int(server.wait_error_log(r"acme process (\d+) started").group(1))
        assert processes.uid_of(acme_pid) == 0

        def workers_are_nobody() -> bool:
            # A worker forked for the new certificate (USR2) is root until it drops to `user`.
            workers = processes.children(server.pid) - {acme_pid}
            try:
                return bool(workers) and all(processes.uid_of(pid) == nobody.pw_uid for pid in workers)
            except (FileNotFoundError, ProcessLookupError):
                return False  # an old worker left meanwhile: look again

        wait_for(workers_are_nobody, 10, "workers running as nobody")
        # The answers came from workers running as nobody.
        if challenge == "http-01":
            server.wait_access_log(r'"GET /\.well-known/acme-challenge/[A-Za-z0-9_-]+ HTTP/1\.1" 200')
        else:
            # The worker logs after the handshake, which the CA may have acted on already.
            server.wait_error_log(rf"challenge certificate presented for {re.escape(NAMES[0])}")
        key = storage / "certificates" / NAMES[0] / "privkey.pem"
        assert key.stat().st_uid == 0 and key.stat().st_mode & 0o777 == 0o600
        assert (storage / "account").stat().st_mode & 0o777 == 0o700
        server.wait_error_log(r"HTTPS for .*www\.frontd\.test.* starts")
        assert b"secure home" in wait_https(ports[1], ca.root())[0]  # from the new workers
        # Workers read the public chain and the state for the status page, never the key.
        page = wait_https(ports[1], ca.root(), path="/status?format=json")[0]
        [entry] = json.loads(page.split(b"\r\n\r\n", 1)[1])["certificates"]
        assert entry["error"] is None and entry["not_after"] and entry["acme"]["state"] == "valid"
        assert "Traceback" not in server.errors()
        server.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_ca_that_forgot_the_account(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                    ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    """The CA answers accountDoesNotExist for the stored account (Pebble keeps nothing across a
    restart; a staging CA may be reset): frontd registers its key again and renews."""
    first_ca = pebble()
    storage = tmp_path / "certs"
    first = first_certificate(frontd, first_ca, storage, ports)
    first.stop()
    first_ca.stop()
    ca = pebble(acme_port=first_ca.port)  # the same directory URL, but no memory of the account
    state_file = storage / "state" / f"{NAMES[0]}.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "renew_at": 1}))
    server = frontd(acme_config(ca, storage), top=listen(ports), name="second.conf")
    server.wait_error_log(r"acme: the CA does not know account https://\S+; registering again", timeout=30)
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    assert b"secure home" in wait_https(ports[1], ca.root())[0]  # with the new CA's certificate
    assert "failed" not in server.errors()


def test_unusable_storage_is_one_line_not_a_crash(frontd: Callable[..., Frontd], tmp_path: Path, www: Path) -> None:
    storage = tmp_path / "certs"
    storage.mkdir()
    (storage / "state").write_text("a file where the state directory belongs\n")
    server = frontd(unreachable_ca(storage) + f'[[vhost]]\nnames = ["www.frontd.test"]\nroot = "{www}"\ntls = "acme"\n')
    pid = int(server.wait_error_log(r"acme process (\d+) started").group(1))
    server.wait_error_log(rf"\[error\] {pid}: acme: www\.frontd\.test: cannot use storage {storage}: .*Not a directory")
    assert processes.alive(pid) and "Traceback" not in server.errors()


def test_reload_replaces_the_acme_process_and_removing_acme_stops_it(frontd: Callable[..., Frontd], tmp_path: Path,
                                                                     www: Path) -> None:
    storage = tmp_path / "certs"
    acme_vhost = f'[[vhost]]\nnames = ["www.frontd.test"]\nroot = "{www}"\ntls = "acme"\n'
    server = frontd(unreachable_ca(storage) + acme_vhost)
    first = int(server.wait_error_log(r"acme process (\d+) started").group(1))
    os.kill(server.pid, signal.SIGHUP)
    server.wait_error_log(rf"acme process {first} killed by signal SIGTERM")
    second = int(server.wait_error_log(rf"acme process (?!{first}\b)(\d+) started").group(1))
    # The same file without the ACME vhost: the ACME process goes and no other starts.
    text = server.conf.read_text()
    server.conf.write_text(text.replace(acme_vhost, f'[[vhost]]\nnames = ["www.frontd.test"]\nroot = "{www}"\n'))
    os.kill(server.pid, signal.SIGHUP)
    # Reaped after the reload that stopped it: a process that reload started would be logged already.
    server.wait_error_log(rf"acme process {second} killed by signal SIGTERM")
    assert server.errors().count("acme process") == 4  # two started, two stopped
    assert b"secure home" in server.raw(b"GET / HTTP/1.1\r\nHost: www.frontd.test\r\nConnection: close\r\n\r\n")


def test_clienthello_peek_leaks_nothing(frontd: Callable[..., Frontd], tmp_path: Path, www: Path) -> None:
    """With tls-alpn-01, 400 handshakes that stop halfway (inside the ClientHello, or after it and
    the server's answer) leave the worker with the descriptors it had; a client that closed inside
    its ClientHello is seen as gone at once, not kept until header_timeout."""
    storage = tmp_path / "certs"
    tls_port = free_port()
    config = unreachable_ca(storage).replace("[acme]\n", '[acme]\nchallenge = "tls-alpn-01"\n') + f"""
[[vhost]]
names = ["localhost"]
default = true
root = "{www}"
tls = "internal"

[[vhost]]
names = ["www.frontd.test"]
root = "{www}"
tls = "acme"
"""
    server = frontd(config, top=f'listen = ["127.0.0.1:0", {{ address = "127.0.0.1:{tls_port}", tls = true }}]\n'
                    'log_level = "info"\n')
    acme_pid = int(server.wait_error_log(r"acme process (\d+) started").group(1))
    [worker] = processes.children(server.pid) - {acme_pid}
    # A whole request first, so that the baseline is a worker that has served, not one still starting.
    context = ssl.create_default_context(cafile=str(storage / "internal" / "ca.pem"))
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert b"secure home" in recv_all(tls)
    wait_for(lambda: len(os.listdir(f"/proc/{worker}/fd")) <= 20, what="an idle worker")
    baseline = len(os.listdir(f"/proc/{worker}/fd"))
    hello = openssl_hello("www.frontd.test", ["acme-tls/1"])
    started = time.monotonic()
    halfway_handshakes(tls_port, hello, 400)
    wait_for(lambda: len(os.listdir(f"/proc/{worker}/fd")) <= baseline, 20, f"worker fds back to {baseline}")
    assert time.monotonic() - started < 10  # header_timeout (10 s) never had to end one of them
    pattern = re.compile(r"\[info\] \d+: TLS handshake failed: (.*), client: 127\.0\.0\.1\n")
    wait_for(lambda: len(pattern.findall(server.errors())) >= 400, 10, "a log line per handshake")
    failed = pattern.findall(server.errors())
    assert len(failed) == 400 and set(failed) == {"the client closed the connection"}, set(failed)
    assert "Traceback" not in server.errors()


class _RenewalInfo(http.server.BaseHTTPRequestHandler):
    """A CA's renewalInfo resource (RFC 9773 §4.2), as far as this test needs one."""

    window: tuple[str, str] = ("", "")
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.asked.append(self.path)
        body = json.dumps({"suggestedWindow": {"start": self.window[0], "end": self.window[1]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "21600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("window, expected", [
    # A window in the future: a time inside it, the next look after Retry-After.
    (("2031-01-01T00:00:00Z", "2031-01-03T00:00:00Z"), (1924992000.0, 1925164800.0)),
    # A window in the past: renew now, but never right after an issuance.
    (("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"), (1900000010.0, 1900000010.0)),
])
def test_ari_window_from_renewal_info(tmp_path: Path, window: tuple[str, str], expected: tuple[float, float]) -> None:
    """RFC 9773: the renewal time comes from the CA's suggested window, asked at
    renewalInfo/<certID> (Pebble 2.4 has no renewalInfo, so a small HTTP server stands in)."""
    from frontd.certs.acme import Job, Manager
    from frontd.certs.acme_client import Client, ari_cert_id, new_key
    from frontd.config.model import AcmeConfig
    from tests.unit.test_acme_client import _certificate

    _RenewalInfo.window, _RenewalInfo.asked = window, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RenewalInfo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        now = 1900000000.0  # 2030-03-17
        manager = Manager(AcmeConfig(storage=str(tmp_path)), [Job(("ari.test",))], lambda: None, clock=lambda: now)
        manager.client = Client("http://127.0.0.1/dir", new_key())
        manager.client.directory = {"renewalInfo": f"http://127.0.0.1:{server.server_address[1]}/renewal-info/"}
        cert = _certificate(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
        state: dict[str, object] = {"names": ["ari.test"], "issued_at": now}
        due = manager._check_ari(Job(("ari.test",)), cert, state, now)
    finally:
        server.shutdown()
        server.server_close()
    assert _RenewalInfo.asked == [f"/renewal-info/{ari_cert_id(cert)}"]
    assert expected[0] <= due <= expected[1] and state["renew_at"] == due
    assert state["ari_check_at"] == now + 21600  # Retry-After
    saved = json.loads((tmp_path / "state" / "ari.test.json").read_text())
    assert saved["renew_at"] == due and saved["ari"]["end"] > saved["ari"]["start"]


def test_bad_nonces_are_retried(pebble: Callable[..., Pebble], caplog: pytest.LogCaptureFixture) -> None:
    """RFC 8555 §6.5: Pebble refusing a fifth of the good nonces (badNonce) costs retries, not failures."""
    from frontd.certs.acme_client import Client, new_key

    ca = pebble(nonce_reject=20)
    client = Client(ca.directory, new_key(), str(ca.ca_bundle))
    caplog.set_level(logging.DEBUG, logger="frontd")
    client.register("admin@frontd.test")
    order_url, order = client.new_order(NAMES)
    for _ in range(30):
        assert client.get(order_url)["status"] == "pending"
    assert "bad nonce, retrying" in caplog.text  # 0.8^30: it happened, short of 1 run in 800


def test_failed_validation_is_reported_and_retried_later(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                                         ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    """The CA cannot reach the challenge (frontd listens elsewhere than the CA connects to): the
    authorization is invalid, the error says why, nothing is stored, and a retry is scheduled."""
    ca = pebble()
    storage = tmp_path / "certs"
    server = frontd(acme_config(ca, storage), top='listen = ["127.0.0.1:0"]\n')
    line = server.wait_error_log(r"acme: obtaining for www\.frontd\.test failed: (.*); retrying in 60s", timeout=60)
    assert "http-01 validation of" in line.group(1) and "unauthorized" in line.group(1)
    state = json.loads((storage / "state" / f"{NAMES[0]}.json").read_text())
    assert state["state"] == "failed" and state["failures"] == 1 and "validation of" in state["last_error"]
    assert not issued(storage)
    assert not list((storage / "challenges" / "http-01").iterdir())  # cleaned up all the same


def test_back_off_survives_a_restart_but_not_a_new_directory(frontd: Callable[..., Frontd], tmp_path: Path,
                                                            www: Path) -> None:
    storage = tmp_path / "certs"
    vhost = f'[[vhost]]\nnames = ["www.frontd.test"]\nroot = "{www}"\ntls = "acme"\n'
    first = frontd(unreachable_ca(storage) + vhost, name="first.conf")
    first.wait_error_log(r"acme: obtaining for www\.frontd\.test failed: .*; retrying in 60s")
    first.stop()
    state = json.loads((storage / "state" / "www.frontd.test.json").read_text())
    # The same CA after a restart: the back-off holds, nothing is asked before retry_at.
    same_ca = f'[acme]\ndirectory = "{state["directory"]}"\nstorage = "{storage}"\n\n'
    second = frontd(same_ca + vhost, name="second.conf")
    second.wait_error_log(r"acme: no certificate for www\.frontd\.test yet; next attempt at \S+ \(1 failed\)")
    second.stop()
    assert "acme: obtaining" not in second.errors()
    # Another directory: a fresh start, at once.
    third = frontd(unreachable_ca(storage) + vhost, name="third.conf")
    third.wait_error_log(r"acme: obtaining for www\.frontd\.test failed: .*; retrying in 60s")
    assert json.loads((storage / "state" / "www.frontd.test.json").read_text())["failures"] == 1


def test_another_directory_replaces_the_certificate(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble],
                                                   ports: tuple[int, int], tmp_path: Path, www: Path) -> None:
    """Staging, then production: a certificate from another CA's directory is replaced at once."""
    staging = pebble()
    storage = tmp_path / "certs"
    first = first_certificate(frontd, staging, storage, ports)
    first.stop()
    staging.stop()
    production = pebble()
    second = frontd(acme_config(production, storage), top=listen(ports), name="second.conf")
    second.wait_error_log(r"acme: renewing a certificate for www\.frontd\.test", timeout=30)
    second.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    assert b"secure home" in wait_https(ports[1], production.root())[0]  # the production CA's certificate
    assert json.loads((storage / "state" / f"{NAMES[0]}.json").read_text())["issued_by"] == production.directory
