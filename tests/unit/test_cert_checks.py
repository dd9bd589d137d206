"""The certificate checks of `frontd -t` and of starts (frontd/certs/files.py), and the local CA."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from frontd.certs import internal, store
from frontd.certs.files import CertificateSource, check_source, covers, read_pair
from frontd.config.load import load_config
from frontd.config.model import VHost

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def pair(tmp_path: Path, ca: trustme.CA, *names: str, **kw: object) -> tuple[str, str]:
    leaf = ca.issue_cert(*names, **kw)  # type: ignore[arg-type]
    cert, key = tmp_path / f"{names[0]}.pem", tmp_path / f"{names[0]}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def check(names: tuple[str, ...], cert: str, key: str, source: str = "file") -> list[tuple[str, str]]:
    return check_source(CertificateSource(VHost(names=names), source, cert, key))  # type: ignore[arg-type]


def test_good_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = pair(tmp_path, ca, "example.test", "*.example.test")
    assert check(("example.test", "www.example.test", "*.example.test"), cert, key) == []
    found = read_pair(cert, key)
    assert found.names == ("example.test", "*.example.test")


def test_uncovered_names_warned_by_name(tmp_path: Path) -> None:
    cert, key = pair(tmp_path, trustme.CA(), "example.test")
    assert check(("example.test", "www.example.test", "other.test"), cert, key) == [
        ("warning", f"vhost example.test: certificate {cert} does not cover www.example.test, other.test "
                    "(it names example.test)")]


def test_expired_is_an_error_and_soon_a_warning(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = pair(tmp_path, ca, "old.test", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    [(level, message)] = check(("old.test",), cert, key)
    assert level == "error" and "expired on" in message
    cert, key = pair(tmp_path, ca, "soon.test", not_before=NOW - DAY, not_after=NOW + 13 * DAY)
    [(level, message)] = check(("soon.test",), cert, key)
    assert level == "warning" and "in less than 14 days" in message
    cert, key = pair(tmp_path, ca, "fine.test", not_before=NOW - DAY, not_after=NOW + 15 * DAY)
    assert check(("fine.test",), cert, key) == []


def test_unusable_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = pair(tmp_path, ca, "a.test")
    _, other_key = pair(tmp_path, ca, "b.test")
    assert check(("a.test",), cert, other_key) == [
        ("error", f"vhost a.test: key {other_key} does not belong to certificate {cert}")]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    assert check(("a.test",), str(garbage), key) == [
        ("error", f"vhost a.test: certificate {garbage}: no PEM certificate in the file")]
    assert check(("a.test",), cert, str(garbage)) == [("error", f"vhost a.test: key {garbage}: not a PEM private key")]
    missing = tmp_path / "missing.pem"
    assert check(("a.test",), str(missing), key) == [
        ("error", f"vhost a.test: certificate {missing}: cannot read: No such file or directory")]


def test_acme_problems_are_warnings_and_missing_is_fine(tmp_path: Path) -> None:
    cert, key = pair(tmp_path, trustme.CA(), "old.test", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    [(level, _)] = check(("old.test",), cert, key, "acme")
    assert level == "warning"
    assert check(("new.test",), str(tmp_path / "none.pem"), str(tmp_path / "none.key"), "acme") == []


@pytest.mark.parametrize(("san", "name", "expected"), [
    (("example.test",), "example.test", True),
    (("EXAMPLE.test",), "example.test", True),
    (("*.example.test",), "www.example.test", True),
    (("*.example.test",), "a.b.example.test", False),  # one label only (RFC 6125 §6.4.3)
    (("*.example.test",), "example.test", False),
    (("*.example.test",), "*.example.test", True),
    (("www.example.test",), "*.example.test", False),
    (("127.0.0.1",), "127.0.0.1", True),
    (("::1",), "[::1]", True),
    (("localhost",), "127.0.0.1", False),
])
def test_covers(san: tuple[str, ...], name: str, expected: bool) -> None:
    assert covers(san, name) is expected


def test_local_ca_issues_and_reuses(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    conf = tmp_path / "frontd.conf"
    conf.write_text('[acme]\nstorage = "state"\n[[vhost]]\nnames = ["localhost", "127.0.0.1", "[::1]"]\n'
                    'root = "www"\ntls = "internal"\n')
    config = load_config(str(conf))
    ca_path = internal.ensure_internal_certificates(config)
    storage = str(tmp_path / "state")
    assert ca_path == store.internal_ca_paths(storage)[0]
    cert_path, key_path = store.certificate_paths(storage, "localhost")
    found = read_pair(cert_path, key_path)
    assert found.names == ("localhost", "127.0.0.1", "::1")
    assert found.issuer.startswith("frontd local CA")
    ca = x509.load_pem_x509_certificate(Path(ca_path).read_bytes())
    leaf = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
    assert leaf[0].issuer == ca.subject and leaf[1] == ca  # the chain carries the CA
    leaf[0].verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    before = Path(cert_path).read_bytes()
    internal.ensure_internal_certificates(config)
    assert Path(cert_path).read_bytes() == before  # current: not issued again
    conf.write_text(conf.read_text().replace('"[::1]"', '"dev.localhost"'))
    internal.ensure_internal_certificates(load_config(str(conf)))
    assert read_pair(cert_path, key_path).names == ("localhost", "dev.localhost", "127.0.0.1")  # names changed


def test_dash_t_reports_certificate_problems(tmp_path: Path) -> None:
    ca = trustme.CA()
    (tmp_path / "www").mkdir()
    cert, key = pair(tmp_path, ca, "example.test", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    conf = tmp_path / "frontd.conf"
    conf.write_text('listen = ["127.0.0.1:0", { address = "127.0.0.1:0", tls = true }]\n'
                    f'[[vhost]]\nnames = ["example.test", "www.example.test"]\nroot = "www"\n'
                    f'tls_certificate = "{cert}"\ntls_key = "{key}"\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-m", "frontd", "-c", str(conf), "-t"], capture_output=True,
                            text=True, timeout=30, env=env)
    assert result.returncode == 1
    assert f"frontd: warning: vhost example.test: certificate {cert} does not cover www.example.test" in result.stderr
    assert f"frontd: error: vhost example.test: certificate {cert} expired on" in result.stderr
    assert "test failed" in result.stderr
