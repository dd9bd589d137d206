"""A real ACME CA for the tests: Pebble, with pebble-challtestsrv as its DNS server.

Both listen on 127.0.0.1 only, on ports picked here; challtestsrv answers 127.0.0.1 for every
name, so Pebble validates http-01 and tls-alpn-01 against the frontd whose ports the test gives
(`httpPort` and `tlsPort` in Pebble's config). Pebble's own HTTPS certificate comes from a
throwaway trustme CA, whose certificate is the `[acme] ca_bundle` of the frontd under test.
Both processes are stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import die_with_parent, stop_process, wait_for

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for the servers whose port Pebble must know in advance)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pebble:
    directory: str  # the ACME directory URL
    management: str  # https://127.0.0.1:PORT of Pebble's management interface
    ca_bundle: Path  # trusts Pebble's HTTPS (directory and management)
    log: Path
    procs: list[subprocess.Popen[bytes]]

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def root(self) -> bytes:
        """The root that signs the certificates this Pebble run issues (a new one per run)."""
        with urllib.request.urlopen(f"{self.management}/roots/0", context=self.context(), timeout=10) as reply:
            return bytes(reply.read())

    def orders(self) -> int:
        """How many orders Pebble has created so far (from its log)."""
        return self.log.read_text(errors="replace").count("Added order")

    @property
    def port(self) -> int:
        return int(self.directory.split(":")[2].split("/")[0])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


def start_pebble(tmp_path: Path, http_port: int, tls_port: int, *, validity: int | None = None,
                 acme_port: int | None = None, nonce_reject: int = 0, chain_length: int | None = None) -> Pebble:
    """Start challtestsrv and Pebble; `validity` is the lifetime in seconds of the certificates,
    `acme_port` the directory's port (to stand in for an earlier Pebble that forgot everything),
    `nonce_reject` the percentage of good nonces Pebble refuses with badNonce, `chain_length` the
    number of intermediates between the leaf and the root (PEBBLE_CHAIN_LENGTH; 1 by default)."""
    if not (shutil.which(PEBBLE) and shutil.which(CHALLTESTSRV)):
        pytest.skip("pebble is not installed (Debian package pebble)")
    base = Path(tempfile.mkdtemp(prefix="pebble-", dir=tmp_path))
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
    server_cert.private_key_pem.write_to_path(str(base / "key.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    dns_port, management_port, chall_management = free_port(), free_port(), free_port()
    acme_port = acme_port or free_port()
    config: dict[str, object] = {
        "listenAddress": f"127.0.0.1:{acme_port}",
        "managementListenAddress": f"127.0.0.1:{management_port}",
        "certificate": str(base / "cert.pem"),
        "privateKey": str(base / "key.pem"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    if validity is not None:
        config["certificateValidityPeriod"] = validity
    (base / "pebble.json").write_text(json.dumps({"pebble": config}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject), "PEBBLE_AUTHZREUSE": "0"}
    if chain_length is not None:
        env["PEBBLE_CHAIN_LENGTH"] = str(chain_length)
    log = base / "pebble.log"
    procs: list[subprocess.Popen[bytes]] = []
    with open(base / "challtestsrv.log", "ab") as out:
        procs.append(subprocess.Popen(
            [CHALLTESTSRV, "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{chall_management}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=die_with_parent))
    with open(log, "ab") as out:
        procs.append(subprocess.Popen(
            [PEBBLE, "-config", str(base / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
            cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=die_with_parent))
    pebble = Pebble(f"https://127.0.0.1:{acme_port}/dir", f"https://127.0.0.1:{management_port}",
                    base / "ca.pem", log, procs)
    try:
        wait_for(lambda: _answers(pebble) or _exited(procs, log), 15, "pebble to serve its directory")
        if _exited(procs, log):
            raise AssertionError(f"pebble exited: {log.read_text(errors='replace')}")
    except BaseException:
        pebble.stop()
        raise
    return pebble


def _answers(pebble: Pebble) -> bool:
    try:
        with urllib.request.urlopen(pebble.directory, context=pebble.context(), timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _exited(procs: list[subprocess.Popen[bytes]], log: Path) -> bool:
    return any(proc.poll() is not None for proc in procs)
