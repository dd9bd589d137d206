"""TLS on client connections: a server context per certificate, chosen by SNI as vhosts are chosen.

The listening context (`Certificates.context`) holds no certificate of its own: OpenSSL calls its
SNI callback on every handshake, with or without a server name, and the callback switches the
connection to the context of the vhost the name selects (exact name, longest wildcard, default),
or to the default vhost's when that vhost has no certificate (yet). Which vhost's certificate was
served is remembered on the connection, so that a request for another vhost gets 421
(RFC 9110 §15.5.20) and a certificate for one site never fronts another.

Every context gets the same settings (OpenSSL takes the protocol versions from the listening one
and ALPN from the switched one): Mozilla's "intermediate" profile, i.e. TLS 1.2 and 1.3 only,
ECDHE key exchange with AEAD ciphers, no compression, no renegotiation; ALPN `h2` then `http/1.1`
where HTTP/2 is on, `http/1.1` alone where it is off. Since OpenSSL takes ALPN from the switched
context, a certificate is loaded into one context per ALPN list the listeners need, and the SNI
callback keeps the list of the listening context it was called on (one per list).
"""

from __future__ import annotations

import logging
import ssl
import sys
from dataclasses import dataclass

from frontd.certs.files import CertificateProblem, CertificateSource, certificate_sources, read_pair
from frontd.config.model import Config, TLSSettings, VHost
from frontd.request import TLSInfo
from frontd.routing import Router

log = logging.getLogger("frontd")

# Mozilla's "intermediate" TLS 1.2 suites without the DHE ones: forward-secret ECDHE, AEAD only.
# TLS 1.3 suites are all AEAD and forward-secret; OpenSSL's default list is kept.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
ALPN_PROTOCOLS = ["http/1.1"]
ALPN_H2_PROTOCOLS = ["h2", "http/1.1"]  # RFC 9113 §3.2: "h2" first, so that clients that can take it
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_SNI_ATTRIBUTE = "frontd_sni"  # set on each connection's SSLObject by the SNI callback


def server_context(settings: TLSSettings, http2: bool | None = None) -> ssl.SSLContext:
    """A server context with frontd's settings and no certificate yet; ALPN offers h2 when `http2`
    (default: `[tls] http2`) is true."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[settings.min_version]
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE
    context.set_alpn_protocols(ALPN_H2_PROTOCOLS if (settings.http2 if http2 is None else http2) else ALPN_PROTOCOLS)
    if not settings.session_tickets:
        context.options |= ssl.OP_NO_TICKET  # TLS 1.2
        context.num_tickets = 0  # TLS 1.3
    return context


@dataclass(slots=True)
class Served:
    """One vhost's certificate as loaded: its context, or None while it has none."""

    source: CertificateSource
    context: ssl.SSLContext | None = None
    # The same certificate offering the other ALPN list, when some listener needs it.
    other: ssl.SSLContext | None = None


class Certificates:
    """Every vhost's certificate context, and the SNI selection between them."""

    def __init__(self, config: Config) -> None:
        self.settings = config.tls
        self.router = Router(config)
        self.served: dict[int, Served] = {id(s.vhost): Served(s) for s in certificate_sources(config)}
        self.default = self.router.vhost("")
        self.context = server_context(self.settings)
        self.context.sni_callback = self._select
        # Listeners whose `http2` differs from `[tls] http2` listen with this one instead.
        self.other_context: ssl.SSLContext | None = None
        if any(config.http2(listener) != self.settings.http2 for listener in config.tls_listeners()):
            self.other_context = server_context(self.settings, not self.settings.http2)
            self.other_context.sni_callback = self._select

    def listening_context(self, http2: bool) -> ssl.SSLContext:
        """The context a TLS listener hands to the handshake: ALPN with h2 or without."""
        if http2 != self.settings.http2 and self.other_context is not None:
            return self.other_context
        return self.context

    def load(self) -> list[tuple[CertificateSource, str]]:
        """(Re)read every certificate file. One that fails keeps what was loaded before and yields
        an error message; a certificate that is not issued yet is simply not served."""
        errors: list[tuple[CertificateSource, str]] = []
        for served in self.served.values():
            source = served.source
            if source.source != "file" and not _exists(source.cert_path):
                if served.context is None:
                    log.info("HTTPS for %s waits for its certificate (%s)", source.label, source.source)
                continue
            try:
                read_pair(source.cert_path, source.key_path)  # clear messages for what ssl would refuse
                context = server_context(self.settings)
                context.load_cert_chain(source.cert_path, source.key_path)
                other = None
                if self.other_context is not None:
                    other = server_context(self.settings, not self.settings.http2)
                    other.load_cert_chain(source.cert_path, source.key_path)
            except (CertificateProblem, ssl.SSLError, OSError) as exc:
                kept = "; still serving the previous one" if served.context is not None else ""
                errors.append((source, f"vhost {source.label}: {exc}{kept}"))
                continue
            if served.context is None and source.source != "file":
                log.info("HTTPS for %s starts (%s certificate)", source.label, source.source)
            served.context, served.other = context, other
        return errors

    def _fallback(self) -> Served | None:
        """The certificate for a name whose vhost has none: the default vhost's, else the first loaded."""
        served = self.served.get(id(self.default))
        if served is not None and served.context is not None:
            return served
        return next((s for s in self.served.values() if s.context is not None), None)

    def _select(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        """OpenSSL's servername callback: switch to the certificate of the vhost the name selects."""
        name = server_name.lower().rstrip(".") if server_name else None
        vhost = self.router.vhost(name) if name else self.default
        served = self.served.get(id(vhost))
        if served is None or served.context is None:
            served = self._fallback()
        setattr(connection, _SNI_ATTRIBUTE, (name, served.source.vhost if served else None))
        if served is not None and served.context is not None:
            switched = served.other if context is self.other_context and served.other is not None else served.context
            connection.context = switched
        # Without any certificate the handshake fails ("no shared cipher"): one info line.

    @staticmethod
    def info(connection: ssl.SSLObject) -> TLSInfo:
        """What a finished handshake agreed on."""
        name, vhost = getattr(connection, _SNI_ATTRIBUTE, (None, None))
        cipher = connection.cipher()
        return TLSInfo(protocol=connection.version() or "", cipher=cipher[0] if cipher else "",
                       server_name=name, vhost=vhost)

    def has_certificate(self, vhost: VHost) -> bool:
        """Whether `vhost`'s own certificate is loaded (an ACME one may not be issued yet)."""
        served = self.served.get(id(vhost))
        return served is not None and served.context is not None

    def served_vhosts(self) -> list[VHost]:
        return [s.source.vhost for s in self.served.values() if s.context is not None]


def quiet_undecodable_server_names() -> None:
    """Python's ssl decodes the SNI name as ASCII before it calls the servername callback; a name
    that is not (RFC 6066 §3 wants A-labels) fails the handshake with CALLBACK_FAILED and would
    print a traceback to stderr as an "unraisable" exception. The failed handshake is logged where
    it is awaited; this drops the traceback, and only that one."""
    previous = sys.unraisablehook

    def hook(unraisable: "sys.UnraisableHookArgs") -> None:
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and isinstance(unraisable.object, bytes):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def handshake_failure(reason: str) -> str:
    """OpenSSL's reason for a failed handshake, with what it means where that is not obvious."""
    if reason == "CALLBACK_FAILED":
        return "CALLBACK_FAILED (an SNI name that is not ASCII)"
    return reason


def _exists(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there, but unreadable: load() says why
