"""The TLS keys of frontd.conf: listener tables, [tls], [acme], and a vhost's certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontd.config.load import summary
from frontd.config.model import LETSENCRYPT_DIRECTORY, Address, AcmeConfig, Listener, TLSSettings
from tests.unit.test_config import error as config_error
from tests.unit.test_config import load

CERT_VHOST = '[[vhost]]\nnames = ["example.test"]\nroot = "www"\ntls_certificate = "c.pem"\ntls_key = "k.pem"\n'
PLAIN_VHOST = '[[vhost]]\nnames = ["example.test"]\nroot = "www"\n'
TLS_LISTEN = 'listen = ["127.0.0.1:8080", { address = "127.0.0.1:8443", tls = true }]\n'


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "c.pem").write_text("certificate\n")
    (tmp_path / "k.pem").write_text("key\n")
    return tmp_path


def error(site: Path, text: str) -> str:
    """The message after "FILE: "."""
    message = config_error(site, text)
    prefix = f"{site / 'frontd.conf'}: "
    assert message.startswith(prefix)
    return message[len(prefix):]


MISTAKES: list[tuple[str, str, str]] = [
    ("listener-unknown-key", 'listen = [{ address = "127.0.0.1:1", tsl = true }]\n' + CERT_VHOST,
     'listen[0]: unknown key "tsl" (did you mean "tls"?)'),
    ("listener-no-address", "listen = [{ tls = true }]\n" + CERT_VHOST, 'listen[0]: missing key "address"'),
    ("listener-tls-type", 'listen = [{ address = "127.0.0.1:1", tls = "yes" }]\n' + CERT_VHOST,
     'listen[0].tls: expected true or false, got "yes"'),
    ("listener-proxy-protocol", 'listen = [{ address = "127.0.0.1:1", proxy_protocol = 1 }]\n' + CERT_VHOST,
     "listen[0].proxy_protocol: expected true or false, got 1"),
    ("listener-bad-address", 'listen = [{ address = 8443, tls = true }]\n' + CERT_VHOST,
     'listen[0].address: expected an address ("host:port", "[v6]:port", ":port" or "unix:/path") '
     'or a table { address = "...", tls = true }, got 8443'),
    ("tls-listener-no-cert", TLS_LISTEN + PLAIN_VHOST,
     'listen[1]: a TLS listener needs a vhost with a certificate (set tls_certificate and tls_key, '
     'or tls = "acme" or "internal", on a [[vhost]])'),
    ("tls-min-version", '[tls]\nmin_version = "TLSv1.1"\n' + CERT_VHOST,
     'tls.min_version: expected "TLSv1.2" or "TLSv1.3", got "TLSv1.1" (did you mean "TLSv1.3"?)'),
    ("tls-unknown", '[tls]\nciphers = "ALL"\n' + CERT_VHOST, 'tls: unknown key "ciphers"'),
    ("cert-without-key", PLAIN_VHOST + 'tls_certificate = "c.pem"\n', "vhost[0].tls_certificate: needs tls_key too"),
    ("key-without-cert", PLAIN_VHOST + 'tls_key = "k.pem"\n', "vhost[0].tls_key: needs tls_certificate too"),
    ("cert-missing", PLAIN_VHOST + 'tls_certificate = "nope.pem"\ntls_key = "k.pem"\n',
     'vhost[0].tls_certificate: file "{dir}/nope.pem" does not exist'),
    ("tls-and-files", PLAIN_VHOST + 'tls = "internal"\ntls_certificate = "c.pem"\ntls_key = "k.pem"\n',
     'vhost[0].tls_certificate: set either tls_certificate or tls = "internal", not both'),
    ("tls-source", PLAIN_VHOST + 'tls = "acme-v2"\n',
     'vhost[0].tls: expected "acme" or "internal", got "acme-v2" (did you mean "acme"?)'),
    ("acme-wildcard", '[[vhost]]\nnames = ["example.test", "*.example.test"]\nroot = "www"\ntls = "acme"\n',
     'vhost[0].tls: "*.example.test": a wildcard certificate needs the DNS-01 challenge, which frontd does '
     "not answer; list the names, or use tls_certificate"),
    ("redirect-no-listener", CERT_VHOST + "redirect_https = true\n",
     'vhost[0].redirect_https: there is no TLS listener to redirect to (add { address = "...", tls = true } '
     "to listen)"),
    ("redirect-no-cert", TLS_LISTEN + CERT_VHOST + PLAIN_VHOST.replace("example.test", "other.test")
     + "redirect_https = true\n",
     'vhost[1].redirect_https: the vhost has no certificate to serve HTTPS with (set tls_certificate and '
     'tls_key, or tls = "acme" or "internal")'),
    ("acme-unknown", '[acme]\nemial = "a@example.com"\n' + CERT_VHOST, 'acme: unknown key "emial" (did you mean "email"?)'),
    ("acme-email", '[acme]\nemail = "admin"\n' + CERT_VHOST,
     'acme.email: expected an email address such as "admin@example.com", got "admin"'),
    ("acme-directory", '[acme]\ndirectory = "letsencrypt"\n' + CERT_VHOST,
     f'acme.directory: expected the CA\'s directory URL such as "{LETSENCRYPT_DIRECTORY}", got "letsencrypt"'),
    ("acme-challenge", '[acme]\nchallenge = "dns-01"\n' + CERT_VHOST,
     'acme.challenge: expected "http-01" or "tls-alpn-01", got "dns-01"'),
    ("acme-ca-bundle", '[acme]\nca_bundle = "ca.pem"\n' + CERT_VHOST, 'acme.ca_bundle: file "{dir}/ca.pem" does not exist'),
    ("acme-storage-file", '[acme]\nstorage = "c.pem"\n' + CERT_VHOST, 'acme.storage: "{dir}/c.pem" is not a directory'),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in MISTAKES], ids=[i for i, _, _ in MISTAKES])
def test_mistake_message(site: Path, text: str, expected: str) -> None:
    assert error(site, text) == expected.replace("{dir}", str(site))


def test_listener_tables(site: Path) -> None:
    config = load(site, 'listen = ["127.0.0.1:8080", { address = "127.0.0.1:8443", tls = true, http2 = false },'
                  ' { address = "[::1]:8081" }]\n' + CERT_VHOST)
    assert config.listen == (Address("tcp", "127.0.0.1", 8080), Address("tcp", "127.0.0.1", 8443),
                             Address("tcp", "::1", 8081))
    assert config.listeners == (Listener(config.listen[0]), Listener(config.listen[1], tls=True, http2=False),
                                Listener(config.listen[2]))
    assert config.tls_listeners() == (config.listeners[1],)
    assert config.tls == TLSSettings()
    assert config.acme is None
    vhost = config.vhosts[0]
    assert (vhost.tls_certificate, vhost.tls_key) == (str(site / "c.pem"), str(site / "k.pem"))
    assert vhost.has_tls and vhost.tls is None and not vhost.redirect_https
    assert "listen 127.0.0.1:8080, 127.0.0.1:8443 (tls), [::1]:8081" in summary(config)
    assert "alpn=h2,http/1.1" in summary(config)  # [tls] http2 defaults to true


def test_single_listener_table(site: Path) -> None:
    config = load(site, 'listen = { address = "127.0.0.1:8443", tls = true }\n' + CERT_VHOST)
    assert config.listeners == (Listener(Address("tcp", "127.0.0.1", 8443), tls=True),)


def test_tls_table(site: Path) -> None:
    config = load(site, '[tls]\nmin_version = "TLSv1.3"\nhttp2 = false\nsession_tickets = false\n' + CERT_VHOST)
    assert config.tls == TLSSettings(min_version="TLSv1.3", http2=False, session_tickets=False)


def test_internal_brings_acme_defaults(site: Path) -> None:
    """tls = "internal" alone: [acme] with its defaults, storage beside run_dir."""
    (site / "run").mkdir()  # the pid file's directory must exist
    config = load(site, 'pid_file = "run/frontd.pid"\n' + TLS_LISTEN + PLAIN_VHOST + 'tls = "internal"\n'
                  "redirect_https = true\n")
    assert config.acme == AcmeConfig(storage=str(site / "run" / "frontd-certs"))
    assert config.acme.directory == LETSENCRYPT_DIRECTORY and config.acme.challenge == "http-01"
    assert config.vhosts[0].tls == "internal" and config.vhosts[0].redirect_https
    text = summary(config)
    assert "  tls internal" in text and "redirect_https on" in text
    assert f"acme storage={site / 'run' / 'frontd-certs'}\n" in text  # no CA to name: nothing is ordered


def test_acme_table(site: Path) -> None:
    (site / "pebble.pem").write_text("ca\n")
    config = load(site, TLS_LISTEN + '[acme]\nemail = "admin@example.test"\n'
                  'directory = "https://127.0.0.1:14000/dir"\nca_bundle = "pebble.pem"\nstorage = "state"\n'
                  'challenge = "tls-alpn-01"\n' + PLAIN_VHOST + 'tls = "acme"\n')
    assert config.acme == AcmeConfig(storage=str(site / "state"), email="admin@example.test",
                                     directory="https://127.0.0.1:14000/dir", ca_bundle=str(site / "pebble.pem"),
                                     challenge="tls-alpn-01")
    assert (f"acme storage={site / 'state'} directory=https://127.0.0.1:14000/dir challenge=tls-alpn-01 "
            f"email=admin@example.test ca_bundle={site / 'pebble.pem'}") in summary(config)


def test_acme_storage_only(site: Path) -> None:
    config = load(site, '[acme]\nstorage = "state"\n' + PLAIN_VHOST)
    assert config.acme == AcmeConfig(storage=str(site / "state"))


ACME_VHOST = '[[vhost]]\nnames = ["example.test"]\nroot = "www"\ntls = "acme"\n'


@pytest.mark.parametrize("listen, challenge, expected", [
    ('listen = ["127.0.0.1:8080"]\n', "tls-alpn-01", 'acme.challenge: "tls-alpn-01" is answered on a TLS listener'),
    ('listen = [{ address = "127.0.0.1:8443", tls = true }]\n', "http-01",
     'acme.challenge: "http-01" is answered on a plain-HTTP listener'),
    ('listen = ["unix:/tmp/frontd-test.sock", { address = "127.0.0.1:8443", tls = true }]\n', "http-01",
     'acme.challenge: "http-01" is answered on a plain-HTTP listener'),
])
def test_acme_challenge_needs_its_listener(site: Path, listen: str, challenge: str, expected: str) -> None:
    assert error(site, f'{listen}[acme]\nchallenge = "{challenge}"\n{ACME_VHOST}').startswith(expected)


def test_acme_challenge_listeners_ok(site: Path) -> None:
    assert load(site, f'{TLS_LISTEN}[acme]\nchallenge = "tls-alpn-01"\n{ACME_VHOST}').acme is not None
    assert load(site, f'{TLS_LISTEN}{ACME_VHOST}').acme is not None


def test_proxy_protocol_listener_and_trusted_proxies(site: Path) -> None:
    config = load(site, 'listen = ["127.0.0.1:8080", { address = "127.0.0.1:8443", tls = true, proxy_protocol = true }]\n'
                  'trusted_proxies = ["10.0.0.0/8"]\n' + CERT_VHOST)
    assert config.listeners[1] == Listener(config.listen[1], tls=True, proxy_protocol=True)
    assert not config.listeners[0].proxy_protocol
    text = summary(config)
    assert "listen 127.0.0.1:8080, 127.0.0.1:8443 (tls, h2, proxy_protocol)" in text
    assert "trusted_proxies 10.0.0.0/8" in text
