"""ACME http-01 answers (RFC 8555 §8.3): `GET /.well-known/acme-challenge/{token}` on a vhost with
tls = "acme".

The dispatcher sends such requests here before any route or rewrite, on plain and TLS listeners
alike. The ACME process (certs/acme.py) writes the key authorization of each pending token to
`{storage}/challenges/http-01/{token}`; this handler only reads it. A token is base64url characters
only: anything else, or a token with no file, is a 404.
"""

from __future__ import annotations

from frontd.certs.acme_client import TOKEN_RE
from frontd.certs.store import http01_challenge_path
from frontd.config.model import Config, VHost
from frontd.errors import MethodNotAllowed, NotFound
from frontd.request import Request
from frontd.response import ResponseSink
from frontd.rules.access import ACME_CHALLENGE_PREFIX

PREFIX = ACME_CHALLENGE_PREFIX  # RFC 8555 §8.3; no redirect_https, rewrite or access rule applies
MAX_KEY_AUTHORIZATION = 1024  # token "." thumbprint: under 300 bytes in practice


def read_http01(storage: str, token: str) -> bytes | None:
    """The key authorization for `token`, or None when the token is malformed or not pending."""
    if not TOKEN_RE.fullmatch(token):
        return None
    try:
        with open(http01_challenge_path(storage, token), "rb") as file:
            return file.read(MAX_KEY_AUTHORIZATION)
    except (OSError, ValueError):
        return None


class AcmeChallengeHandler:
    """Answers http-01 challenges for the vhosts with tls = "acme"."""

    def __init__(self, config: Config) -> None:
        self.storage = config.acme.storage if config.acme is not None else None

    def claims(self, vhost: VHost, path: str) -> bool:
        """Whether a request for `path` on `vhost` is an http-01 challenge this handler answers."""
        return vhost.tls == "acme" and self.storage is not None and path.startswith(PREFIX)

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"acme challenge: method {request.method}", headers=((b"allow", b"GET, HEAD"),))
        assert self.storage is not None
        body = read_http01(self.storage, request.path[len(PREFIX):])
        if body is None:
            raise NotFound(f"acme challenge: no pending token {request.path[len(PREFIX):][:80]!r}")
        await sink.start(200, [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ])
        await sink.write(body)
