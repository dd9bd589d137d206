"""A small blocking RFC 8555 (ACME) client over `cryptography` and urllib.

It speaks what frontd needs and nothing more: the directory, nonces, an account with an ES256
(P-256) key, orders for DNS identifiers, POST-as-GET, challenge responses, finalization with a CSR,
the PEM chain download, and ACME Renewal Information (RFC 9773). It runs only in the ACME process
the master owns (certs/acme.py), so blocking I/O is fine: nothing else runs there.

Every request is a JWS in the flattened JSON serialization (RFC 8555 §6.2) signed with the account
key; a `badNonce` error is retried with the fresh nonce the error carries (§6.5). Errors are
`AcmeError`s with the problem document's type and detail and, when the CA sent one, the delay of
its Retry-After header, so that the caller can back off as the CA asks (§6.6).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID

log = logging.getLogger("frontd")

USER_AGENT = "frontd-acme"
REQUEST_TIMEOUT = 30.0
MAX_BAD_NONCE_RETRIES = 5  # RFC 8555 §6.5: a badNonce is retried with the nonce it carries
MAX_RESPONSE_SIZE = 1 << 20  # a directory, order or chain is a few KiB; refuse anything huge
ERROR_PREFIX = "urn:ietf:params:acme:error:"
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")  # RFC 8555 §8.1: a token is base64url, no padding


class AcmeError(Exception):
    """A failed ACME exchange: the CA's problem type (without the URN prefix), its detail, the
    HTTP status (0 when the CA was not reached) and Retry-After in seconds when the CA gave one."""

    def __init__(self, detail: str, *, kind: str = "", status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = f"{self.kind}: " if self.kind else ""
        return head + super().__str__()


def b64url(data: bytes) -> str:
    """RFC 7515 §2: base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


# -- keys and JWS ----------------------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256 key: the account's and each certificate's (a new one per certificate)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 private key")
    return key


def jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """RFC 7518 §6.2.1: the public key as a JWK."""
    numbers = key.public_key().public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 of a JWK's required members, sorted, without whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")
    return b64url(hashlib.sha256(canonical).digest())


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    return jwk_thumbprint(jwk(key))


def key_authorization(token: str, key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 8555 §8.1: token "." thumbprint of the account key."""
    return f"{token}.{thumbprint(key)}"


def sign_jws(key: ec.EllipticCurvePrivateKey, protected: dict[str, Any], payload: bytes | None) -> bytes:
    """RFC 7515 flattened JSON serialization with ES256 (RFC 7518 §3.4: R and S, 32 bytes each).

    `payload` None is POST-as-GET (RFC 8555 §6.3): the payload is the empty string.
    """
    header = b64url(json.dumps(protected, separators=(",", ":")).encode("utf-8"))
    body = "" if payload is None else b64url(payload)
    der = key.sign(f"{header}.{body}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return json.dumps({"protected": header, "payload": body, "signature": signature}).encode("ascii")


# -- certificates ----------------------------------------------------------------------------------


MAX_COMMON_NAME = 64  # RFC 5280 appendix A.1: ub-common-name


def make_csr(key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> bytes:
    """RFC 8555 §7.4: a PKCS#10 request (DER) for exactly these DNS names, in subjectAltName. The
    first name is also the common name when it fits one (a longer name leaves the subject empty)."""
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if len(names[0]) <= MAX_COMMON_NAME else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject)).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial number's DER content octets)."""
    aki = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    if aki.key_identifier is None:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier")
    serial = cert.serial_number
    # The DER INTEGER's content: big-endian two's complement, a leading 0x00 when the top bit is set.
    length = serial.bit_length() // 8 + 1
    return f"{b64url(aki.key_identifier)}.{b64url(serial.to_bytes(length, 'big'))}"


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    location: str = ""

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise AcmeError(f"the CA sent invalid JSON: {exc}", status=self.status) from None
        if not isinstance(value, dict):
            raise AcmeError("the CA sent JSON that is not an object", status=self.status)
        return value

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


@dataclass
class Client:
    """One CA's directory and one account key; `account_url` once registered (the JWS "kid")."""

    directory_url: str
    key: ec.EllipticCurvePrivateKey
    ca_bundle: str | None = None
    account_url: str = ""
    directory: dict[str, Any] = field(default_factory=dict)
    _nonce: str | None = None
    _context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=self.ca_bundle)

    # -- HTTP -------------------------------------------------------------------------------------

    def _http(self, method: str, url: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Response:
        if not url.startswith("https://") and not url.startswith("http://"):
            raise AcmeError(f"not an http(s) URL: {url!r}")
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"User-Agent": USER_AGENT, **(headers or {})})
        try:
            try:
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT, context=self._context) as reply:
                    response = Response(reply.status, {k.lower(): v for k, v in reply.headers.items()},
                                        reply.read(MAX_RESPONSE_SIZE + 1))
            except urllib.error.HTTPError as exc:  # a status >= 400: its body is the problem document
                response = Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()},
                                    exc.read(MAX_RESPONSE_SIZE + 1))
        except (urllib.error.URLError, OSError, ssl.SSLError, http.client.HTTPException) as exc:
            # Unreachable, refused, TLS failure, or a connection cut mid-answer (IncompleteRead).
            reason = getattr(exc, "reason", exc)
            raise AcmeError(f"{method} {url}: {reason}") from None
        if len(response.body) > MAX_RESPONSE_SIZE:
            raise AcmeError(f"{method} {url}: response over {MAX_RESPONSE_SIZE} bytes", status=response.status)
        response.location = response.headers.get("location", "")
        nonce = response.headers.get("replay-nonce")
        if nonce:
            self._nonce = nonce
        return response

    def _error(self, url: str, response: Response) -> AcmeError:
        """RFC 8555 §6.7: a problem document (RFC 7807) to an AcmeError."""
        kind, detail = "", response.body[:200].decode("utf-8", "replace")
        try:
            problem = json.loads(response.body)
            if isinstance(problem, dict):
                kind = str(problem.get("type", ""))
                kind = kind[len(ERROR_PREFIX):] if kind.startswith(ERROR_PREFIX) else kind
                detail = str(problem.get("detail", detail))
        except ValueError:
            pass
        return AcmeError(f"{url}: HTTP {response.status}: {detail}", kind=kind, status=response.status,
                         retry_after=response.retry_after)

    def load_directory(self) -> dict[str, Any]:
        if not self.directory:
            response = self._http("GET", self.directory_url)
            if response.status != 200:
                raise self._error(self.directory_url, response)
            directory = response.json()
            for name in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(directory.get(name), str):
                    raise AcmeError(f"{self.directory_url}: not an ACME directory (no {name})")
            self.directory = directory
        return self.directory

    def _new_nonce(self) -> str:
        url = self.load_directory()["newNonce"]
        response = self._http("HEAD", url)
        if response.status not in (200, 204) or not self._nonce:
            raise self._error(url, response)
        return self._nonce

    def post(self, url: str, payload: dict[str, Any] | None, *, use_jwk: bool = False,
             accept: str = "application/json") -> Response:
        """A signed POST (payload None: POST-as-GET); retries a badNonce with the nonce it carries."""
        for attempt in range(MAX_BAD_NONCE_RETRIES + 1):
            nonce = self._nonce or self._new_nonce()
            self._nonce = None  # each nonce is good once (RFC 8555 §6.5)
            protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
            if use_jwk:
                protected["jwk"] = jwk(self.key)
            else:
                protected["kid"] = self.account_url
            body = sign_jws(self.key, protected,
                            None if payload is None else json.dumps(payload).encode("utf-8"))
            response = self._http("POST", url, body, {"Content-Type": "application/jose+json", "Accept": accept})
            if response.status < 400:
                return response
            error = self._error(url, response)
            if error.kind != "badNonce" or attempt == MAX_BAD_NONCE_RETRIES:
                raise error
            log.debug("acme: %s: bad nonce, retrying with a fresh one", url)
        raise AssertionError("unreachable")

    # -- RFC 8555 steps ---------------------------------------------------------------------------

    def register(self, email: str | None) -> str:
        """§7.3: create the account, or find the one that this key already has; its URL."""
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if email:
            payload["contact"] = [f"mailto:{email}"]
        response = self.post(self.load_directory()["newAccount"], payload, use_jwk=True)
        if not response.location:
            raise AcmeError("newAccount: the CA sent no account URL (Location)", status=response.status)
        self.account_url = response.location
        return self.account_url

    def new_order(self, names: tuple[str, ...], replaces: str | None = None) -> tuple[str, dict[str, Any]]:
        """§7.4: an order for these DNS names; (order URL, order object). `replaces` is RFC 9773 §5."""
        payload: dict[str, Any] = {"identifiers": [{"type": "dns", "value": n} for n in names]}
        if replaces:
            payload["replaces"] = replaces
        response = self.post(self.load_directory()["newOrder"], payload)
        if not response.location:
            raise AcmeError("newOrder: the CA sent no order URL (Location)", status=response.status)
        return response.location, response.json()

    def get(self, url: str) -> dict[str, Any]:
        """POST-as-GET of an order, authorization or challenge (§6.3)."""
        return self.post(url, None).json()

    def answer(self, challenge_url: str) -> dict[str, Any]:
        """§7.5.1: tell the CA the challenge is ready (an empty object)."""
        return self.post(challenge_url, {}).json()

    def finalize(self, finalize_url: str, csr_der: bytes) -> dict[str, Any]:
        """§7.4: send the CSR; the order object (status "processing" or "valid")."""
        return self.post(finalize_url, {"csr": b64url(csr_der)}).json()

    def download(self, certificate_url: str) -> bytes:
        """§7.4.2: the PEM chain, leaf first."""
        response = self.post(certificate_url, None, accept="application/pem-certificate-chain")
        if b"-----BEGIN CERTIFICATE-----" not in response.body:
            raise AcmeError(f"{certificate_url}: the CA sent no PEM certificate chain")
        return response.body

    def poll(self, url: str, done: tuple[str, ...], deadline: float, *, what: str) -> dict[str, Any]:
        """POST-as-GET `url` until its status is one of `done` or "invalid"; Retry-After paces it."""
        delay = 0.5
        while True:
            response = self.post(url, None)
            obj = response.json()
            status = obj.get("status")
            if status in done or status == "invalid":
                return obj
            wait = response.retry_after if response.retry_after is not None else delay
            if time.monotonic() + wait > deadline:
                raise AcmeError(f"{what} still {status!r} at the deadline")
            time.sleep(min(wait, 60.0))
            delay = min(delay * 2, 10.0)

    def renewal_info(self, cert: x509.Certificate) -> tuple[float, float, float | None] | None:
        """RFC 9773 §4.2: (window start, window end, Retry-After) as Unix times, or None when the
        CA offers no renewalInfo. A CA error is an AcmeError."""
        base = self.load_directory().get("renewalInfo")
        if not isinstance(base, str):
            return None
        url = f"{base.rstrip('/')}/{ari_cert_id(cert)}"
        response = self._http("GET", url)
        if response.status != 200:
            raise self._error(url, response)
        window = response.json().get("suggestedWindow")
        try:
            start = parse_rfc3339(window["start"])  # type: ignore[index]
            end = parse_rfc3339(window["end"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            raise AcmeError(f"{url}: renewalInfo without a valid suggestedWindow") from None
        if end < start:
            raise AcmeError(f"{url}: renewalInfo window ends before it starts")
        return start, end, response.retry_after


def parse_rfc3339(text: object) -> float:
    """An RFC 3339 timestamp ("2025-01-02T04:00:00Z", fractions and offsets allowed) as a Unix time."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment.timestamp()
