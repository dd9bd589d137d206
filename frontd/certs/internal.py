"""The local CA of `tls = "internal"`: created once under storage, it issues each vhost's certificate.

For development: a browser trusts these certificates once `{storage}/internal/ca.pem` is added to
its trust store (docs/tls.md). The master runs this at start and at each reload, before workers
fork, so that workers find the files in place. The CA is an EC P-256 key valid for ten years and
limited to issuing server certificates directly (pathlen 0); leaf certificates are valid for 90
days and are issued again when a third of that remains, when the vhost's names change, or when
they were not issued by the current CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from frontd.certs import store
from frontd.certs.files import CertificateProblem, CertificateSource, certificate_sources, load_key, load_pem_chain
from frontd.config.model import Config

log = logging.getLogger("frontd")

CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=90)
RENEW_BEFORE = LEAF_LIFETIME / 3
BACKDATE = datetime.timedelta(hours=1)  # clocks of clients that lag a little still accept it


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_ca(storage: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The local CA under `storage`, created when it is not there yet."""
    ca_path, key_path = store.internal_ca_paths(storage)
    if os.path.exists(ca_path) and os.path.exists(key_path):
        key = load_key(key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateProblem(f"key {key_path}: not the EC key frontd creates for its local CA")
        return load_pem_chain(ca_path)[0], key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "frontd local CA"),
        # The host and a serial in the name: two machines' CAs are told apart in a trust store.
        x509.NameAttribute(NameOID.COMMON_NAME, f"frontd local CA {socket.gethostname()[:30]} "
                           f"{x509.random_serial_number() % 10**6:06d}"),
    ])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    store.write_key(key_path, _pem_key(key))
    store.write_atomic(ca_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("local CA created: %s (add it to a browser's or system's trust store to trust tls = \"internal\")",
             ca_path)
    return cert, key


def _general_name(name: str) -> x509.GeneralName:
    text = name[1:-1] if name.startswith("[") else name
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(name)


def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> tuple[bytes, bytes]:
    """(fullchain PEM, key PEM) of a new server certificate for `names`, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + LEAF_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    return chain, _pem_key(key)


def _current(source: CertificateSource, ca: x509.Certificate, now: datetime.datetime) -> bool:
    """Whether the stored certificate can stay: readable, by this CA, for these names, not due."""
    try:
        cert = load_pem_chain(source.cert_path)[0]
        load_key(source.key_path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (CertificateProblem, x509.ExtensionNotFound):
        return False
    wanted = {_general_name(n) for n in source.vhost.names}
    return (cert.issuer == ca.subject and set(san) == wanted
            and cert.not_valid_after_utc - now > RENEW_BEFORE)


def ensure_internal_certificates(config: Config) -> str | None:
    """Issue what tls = "internal" vhosts lack; the CA's path, or None when no vhost uses it.

    Raises CertificateProblem (a file in the way) or OSError (storage not writable).
    """
    sources = [s for s in certificate_sources(config) if s.source == "internal"]
    if not sources or config.acme is None:
        return None
    storage = config.acme.storage
    ca, ca_key = ensure_ca(storage)
    now = datetime.datetime.now(datetime.timezone.utc)
    for source in sources:
        if _current(source, ca, now):
            continue
        chain, key = issue(ca, ca_key, source.vhost.names)
        store.write_certificate_pair(storage, source.vhost.names[0], chain, key)
        log.info("local CA issued a certificate for %s", ", ".join(source.vhost.names))
    return store.internal_ca_paths(storage)[0]
