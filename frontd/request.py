"""The request as handlers see it: parsed target, headers, peer addresses and a streaming body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from frontd.config.model import Route, VHost


class RequestBody(Protocol):
    """The request body, read in chunks as it arrives (backpressure: nothing is read ahead)."""

    # Declared Content-Length; None for a chunked body (length unknown until its end).
    length: int | None

    async def read(self) -> bytes:
        """The next chunk; b"" at the end. Raises ContentTooLarge, RequestTimeout or BadRequest."""
        ...


class EmptyBody:
    """The body of a request that has none."""

    length: int | None = 0

    async def read(self) -> bytes:
        return b""


EMPTY_BODY = EmptyBody()


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What a TLS connection agreed on, for handlers and gateways (they never see the socket)."""

    protocol: str  # "TLSv1.3", as OpenSSL names it (mod_ssl's SSL_PROTOCOL)
    cipher: str  # OpenSSL's name, "TLS_AES_256_GCM_SHA384"
    server_name: str | None  # the SNI name the client sent, lower case; None without SNI
    vhost: VHost | None  # whose certificate the handshake served: requests for another vhost get 421


@dataclass(slots=True, eq=False)
class Request:
    method: str
    target: str  # the request-target as sent (latin-1)
    path: str  # percent-decoded, dot segments resolved, always starting with "/"
    raw_path: str  # the path as sent, still percent-encoded
    query: str  # raw, without "?"; "" when there is none
    http_version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]  # lower-case names, in order received
    host: str  # Host (or absolute-form target) name: lower case, no port, no trailing dot
    client_addr: str  # the client: the peer, or whom its PROXY header or a trusted proxy names
    client_port: int  # 0 when a trusted proxy named the client without a port
    server_addr: str
    server_port: int
    body: RequestBody = EMPTY_BODY
    scheme: str = "http"
    tls: TLSInfo | None = None  # set on TLS listeners, with scheme "https"
    vhost: VHost | None = None
    route: Route | None = None
    redirects: int = 0  # local redirects followed so far (RFC 3875 §6.2.2)
    notes: dict[str, str] = field(default_factory=dict)
    # Set by the access rules (frontd/rules/access.py): the user Basic auth let in, for
    # REMOTE_USER, and the `Variable-NAME` values of a FastCGI authorizer's 200.
    remote_user: str | None = None
    auth_variables: tuple[tuple[str, str], ...] = ()
    # The trusted proxy whose Forwarded / X-Forwarded-For named `client_addr`; "" when none did.
    peer_addr: str = ""

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} HTTP/{self.http_version}"

    def log_context(self) -> str:
        """The tail nginx puts on error-log lines, so a line can be traced to its request."""
        return f', client: {self.client_addr}, request: "{self.request_line}"'
