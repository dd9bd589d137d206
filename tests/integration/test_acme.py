"""Automatic certificates end to end: a real frontd gets its certificates from a real ACME CA (Pebble)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import Frontd, wait_for
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


def acme_config(ca: Pebble, storage: Path, *, challenge: str = "http-01", directory: str | None = None) -> str:
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
"""


def chain(storage: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((storage / "certificates" / NAMES[0] / "fullchain.pem").read_bytes())


def issued(storage: Path) -> bool:
    return (storage / "certificates" / NAMES[0] / "fullchain.pem").exists()


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("secure home\n")
    return root


def test_http01_issuance(frontd: Callable[..., Frontd], pebble: Callable[..., Pebble], ports: tuple[int, int],
                         tmp_path: Path, www: Path) -> None:
    ca = pebble()
    storage = tmp_path / "certs"
    server = frontd(acme_config(ca, storage), top=f'listen = ["127.0.0.1:{ports[0]}"]\n')
    server.wait_error_log(r"acme: certificate for www\.frontd\.test stored", timeout=60)
    leaf, *intermediates = chain(storage)
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
