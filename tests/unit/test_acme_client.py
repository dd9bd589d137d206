"""The ACME client's pure parts: JWS, thumbprints, ARI certificate IDs, Retry-After, the RFC 8737
certificate, renewal times and back-off."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from frontd.certs.acme import (
    ACME_IDENTIFIER_OID,
    MAX_RETRY_DELAY,
    MIN_RETRY_DELAY,
    renewal_time,
    retry_delay,
    tls_alpn01_certificate,
)
from frontd.certs.store import ensure_dir, http01_challenge_path
from frontd.certs.acme_client import (
    ari_cert_id,
    b64url,
    b64url_decode,
    jwk,
    jwk_thumbprint,
    key_authorization,
    make_csr,
    new_key,
    parse_retry_after,
    parse_rfc3339,
    sign_jws,
    thumbprint,
)

# RFC 7638 §3.1: the thumbprint of the RFC 7517 appendix A.1 RSA key.
RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZ"
             "CiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8K"
             "JZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_x"
             "BniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")


def test_rfc7638_thumbprint() -> None:
    assert jwk_thumbprint({"e": "AQAB", "kty": "RSA", "n": RFC7638_N}) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ec_jwk_and_key_authorization() -> None:
    key = new_key()
    members = jwk(key)
    assert sorted(members) == ["crv", "kty", "x", "y"] and members["crv"] == "P-256"
    numbers = key.public_key().public_numbers()
    assert int.from_bytes(b64url_decode(members["x"]), "big") == numbers.x
    assert len(b64url_decode(members["y"])) == 32
    # RFC 8555 §8.1: token "." base64url(thumbprint).
    assert key_authorization("tok-en_1", key) == f"tok-en_1.{thumbprint(key)}"


def test_jws_flattened_es256_verifies() -> None:
    key = new_key()
    body = json.loads(sign_jws(key, {"alg": "ES256", "nonce": "n1", "url": "https://ca/x", "kid": "k"},
                               b'{"a":1}'))
    assert sorted(body) == ["payload", "protected", "signature"]
    assert json.loads(b64url_decode(body["protected"])) == {"alg": "ES256", "nonce": "n1", "url": "https://ca/x",
                                                            "kid": "k"}
    assert b64url_decode(body["payload"]) == b'{"a":1}'
    raw = b64url_decode(body["signature"])
    assert len(raw) == 64  # RFC 7518 §3.4: R || S, 32 bytes each, not DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{body['protected']}.{body['payload']}".encode(), ec.ECDSA(hashes.SHA256()))
    # POST-as-GET (RFC 8555 §6.3): the payload is the empty string.
    assert json.loads(sign_jws(key, {"alg": "ES256"}, None))["payload"] == ""


def _certificate(serial: int, key_identifier: bytes, days: int = 90) -> x509.Certificate:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.test")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.AuthorityKeyIdentifier(key_identifier, None, None), critical=False)
            .sign(key, hashes.SHA256()))


def test_rfc9773_cert_id() -> None:
    # RFC 9773 §4.1's example: keyIdentifier 69:88:5B:...:D4, serial 00:87:65:43:21.
    cert = _certificate(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
    assert ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    # A serial whose top bit is clear has no leading zero octet.
    assert ari_cert_id(_certificate(0x7F01, b"\x01")).split(".")[1] == b64url(b"\x7f\x01")


def test_renewal_time_is_a_third_before_expiry() -> None:
    cert = _certificate(5, b"\x01", days=90)
    end = datetime.datetime(2025, 4, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert renewal_time(cert) == end - 30 * 86400


def test_retry_delay_backs_off_and_respects_retry_after() -> None:
    assert retry_delay(1, None) == MIN_RETRY_DELAY
    assert retry_delay(3, None) == 4 * MIN_RETRY_DELAY
    assert retry_delay(40, None) == MAX_RETRY_DELAY
    assert retry_delay(1, 3600.0) == 3600.0


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None), ("-5", None), ("1_0", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
])
def test_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime.datetime(2015, 10, 21, 7, 27, tzinfo=datetime.timezone.utc).timestamp()
    assert parse_retry_after(value, now) == expected


def test_rfc3339() -> None:
    assert parse_rfc3339("2025-01-02T04:00:00Z") == datetime.datetime(2025, 1, 2, 4, tzinfo=datetime.timezone.utc).timestamp()
    assert parse_rfc3339("2025-01-02T06:00:00.123456789+02:00") == pytest.approx(
        datetime.datetime(2025, 1, 2, 4, tzinfo=datetime.timezone.utc).timestamp() + 0.123456)
    for bad in ("2025-01-02T04:00:00", "tomorrow", 5):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_csr_names() -> None:
    key = new_key()
    csr = x509.load_der_x509_csr(make_csr(key, ("a.test", "b.test")))
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test", "b.test"]
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a.test"
    # A name longer than a common name may be (64) is in subjectAltName only.
    long_name = "a" * 60 + ".example.test"
    csr = x509.load_der_x509_csr(make_csr(key, (long_name,)))
    assert not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [long_name]


def test_rfc8737_challenge_certificate() -> None:
    pem = tls_alpn01_certificate("a.test", "token.thumb")
    cert = x509.load_pem_x509_certificate(pem)
    assert b"PRIVATE KEY" in pem
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    # RFC 8737 §3: Authorization ::= OCTET STRING (SIZE (32)), the SHA-256 of the key authorization.
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumb").digest()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test"]
    long_name = "b" * 70 + ".test"  # longer than a common name may be: subjectAltName only
    cert = x509.load_pem_x509_certificate(tls_alpn01_certificate(long_name, "token.thumb"))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [long_name]


def test_tokens_starting_with_dash_or_underscore_have_a_challenge_file(tmp_path: Path) -> None:
    # A base64url token may begin with "-" or "_" (one token in 32): refusing it failed the order.
    for token in ("-RPGKZQhyjXprFool1LJy", "_x", "abc"):
        assert http01_challenge_path(str(tmp_path), token) == str(tmp_path / "challenges" / "http-01" / token)
    for bad in ("..", "a.b", "a/b", "", "a\x00"):
        with pytest.raises(ValueError):
            http01_challenge_path(str(tmp_path), bad)


def test_ensure_dir_makes_every_new_level_private(tmp_path: Path) -> None:
    # os.makedirs gave 0700 to the last level only: account/ above account/HASH/ was 0755.
    ensure_dir(str(tmp_path / "storage" / "account" / "abc"))
    for path in (tmp_path / "storage", tmp_path / "storage" / "account", tmp_path / "storage" / "account" / "abc"):
        assert path.stat().st_mode & 0o777 == 0o700, path
