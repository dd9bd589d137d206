"""Certificate files: which files each vhost is served with, what they hold, and the checks of `-t`.

A vhost's certificate comes from `tls_certificate`/`tls_key` ("file"), or from the files under
`[acme] storage` that the local CA ("internal") or the ACME client ("acme") writes there. Reading
is the same for all three; only a missing file means something else: an error for "file", "not
issued yet" for the others.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID

from frontd.certs import store
from frontd.config.model import Config, VHost

Source = Literal["file", "acme", "internal"]
EXPIRY_WARNING = 14 * 86400  # -t warns when a certificate expires sooner than this


class CertificateProblem(Exception):
    """A certificate or key that cannot be used, in one line naming the file."""


@dataclass(frozen=True, slots=True)
class CertificateSource:
    """Where one vhost's certificate comes from."""

    vhost: VHost
    source: Source
    cert_path: str
    key_path: str

    @property
    def label(self) -> str:
        return self.vhost.names[0] if self.vhost.names else "(default vhost)"


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a certificate says, for checks and the status page."""

    names: tuple[str, ...]  # subjectAltName DNS names and IP addresses, as written
    subject: str
    issuer: str
    not_before: float  # Unix time
    not_after: float


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """One vhost's certificate as the status page shows it."""

    source: CertificateSource
    facts: CertificateFacts | None  # None when it cannot be read (or is not issued yet)
    error: str | None = None


def certificate_status(config: Config) -> list[CertificateStatus]:
    """What each vhost's certificate files hold now (read afresh: the status page is rare)."""
    found: list[CertificateStatus] = []
    for source in certificate_sources(config):
        try:
            found.append(CertificateStatus(source, facts(load_pem_chain(source.cert_path)[0])))
        except CertificateProblem as exc:
            missing = source.source != "file" and not os.path.exists(source.cert_path)
            found.append(CertificateStatus(source, None, "not issued yet" if missing else str(exc)))
    return found


def certificate_sources(config: Config) -> list[CertificateSource]:
    """Each vhost that has, or will get, a certificate, with its files."""
    sources: list[CertificateSource] = []
    for vhost in config.vhosts:
        if vhost.tls_certificate is not None and vhost.tls_key is not None:
            sources.append(CertificateSource(vhost, "file", vhost.tls_certificate, vhost.tls_key))
        elif vhost.tls is not None and config.acme is not None:
            cert_path, key_path = store.certificate_paths(config.acme.storage, vhost.names[0])
            sources.append(CertificateSource(vhost, vhost.tls, cert_path, key_path))
    return sources


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise CertificateProblem(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def load_pem_chain(path: str) -> list[x509.Certificate]:
    """The certificates of a PEM file, leaf first; CertificateProblem when there is none."""
    data = _read(path, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise CertificateProblem(f"certificate {path}: no PEM certificate in the file")
    return chain


def load_key(path: str) -> PrivateKeyTypes:
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted (frontd needs it without a passphrase)" if "encrypted" in str(exc).lower() \
            else "not a PEM private key"
        raise CertificateProblem(f"key {path}: {reason}") from None


def _public(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def facts(cert: x509.Certificate) -> CertificateFacts:
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    return CertificateFacts(
        names=tuple(names),
        subject=cert.subject.rfc4514_string(),
        issuer=_common_name(cert.issuer),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def _common_name(name: x509.Name) -> str:
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else name.rfc4514_string()


def read_pair(cert_path: str, key_path: str) -> CertificateFacts:
    """Read a certificate and its key: both parse, and the key is the certificate's."""
    chain = load_pem_chain(cert_path)
    key = load_key(key_path)
    if _public(chain[0].public_key()) != _public(key.public_key()):
        raise CertificateProblem(f"key {key_path} does not belong to certificate {cert_path}")
    return facts(chain[0])


def covers(certificate_names: tuple[str, ...], name: str) -> bool:
    """Whether a certificate with these subjectAltNames is valid for a vhost name (RFC 6125 §6.4:
    a "*." name covers exactly one more label; a vhost's own wildcard needs the same wildcard)."""
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return any(_same_ip(n, address) for n in certificate_names)
    lowered = {n.lower().rstrip(".") for n in certificate_names}
    if name in lowered:
        return True
    if name.startswith("*."):
        return False
    label_end = name.find(".")
    return label_end > 0 and "*" + name[label_end:] in lowered


def _same_ip(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def check_source(source: CertificateSource, now: float | None = None) -> list[tuple[str, str]]:
    """(level, message) pairs for `frontd -t` and starts: "error" or "warning".

    Only a certificate from files can be an error: one that frontd obtains itself (acme, internal)
    is replaced by frontd, so its problems are warnings and never stop a start.
    """
    problems = _check_source(source, time.time() if now is None else now)
    if source.source == "file":
        return problems
    return [("warning", message) for _, message in problems]


def _check_source(source: CertificateSource, now: float) -> list[tuple[str, str]]:
    where = f"vhost {source.label}"
    if source.source != "file" and not os.path.exists(source.cert_path):
        return []  # not issued yet: the master (internal) or the ACME client writes it
    try:
        found = read_pair(source.cert_path, source.key_path)
    except CertificateProblem as exc:
        return [("error", f"{where}: {exc}")]
    problems: list[tuple[str, str]] = []
    uncovered = [n for n in source.vhost.names if not covers(found.names, n)]
    if uncovered:
        problems.append(("warning", f"{where}: certificate {source.cert_path} does not cover "
                         f"{', '.join(uncovered)} (it names {', '.join(found.names) or 'nothing'})"))
    if found.not_after <= now:
        problems.append(("error", f"{where}: certificate {source.cert_path} expired on {_day(found.not_after)}"))
    elif found.not_after - now < EXPIRY_WARNING:
        problems.append(("warning", f"{where}: certificate {source.cert_path} expires on {_day(found.not_after)}, "
                         f"in less than {EXPIRY_WARNING // 86400} days"))
    if found.not_before > now:
        problems.append(("error", f"{where}: certificate {source.cert_path} is not valid before "
                         f"{_day(found.not_before)}"))
    return problems


def check_certificates(config: Config, now: float | None = None) -> list[tuple[str, str]]:
    """Every certificate's problems, in vhost order."""
    return [problem for source in certificate_sources(config) for problem in check_source(source, now)]


def _day(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
