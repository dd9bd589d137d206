"""What an HTTP gateway changes in a request it forwards and in the response it relays back.

Pure functions over h11-style header lists. RFC 9110 §7.6.1: hop-by-hop fields, and every field
the Connection field names, stay behind; §7.6.3: an HTTP-to-HTTP gateway adds Via to each
inbound request. RFC 7239 `Forwarded` and the de-facto `X-Forwarded-For`/`-Proto`/`-Host` tell
the backend who the client was. `backend_target` rewrites the path the way nginx's `proxy_pass`
does when its URL has a path.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Sequence

from frontd.http.headers import HOP_BY_HOP, connection_tokens, get_all, parse_list

Headers = Sequence[tuple[bytes, bytes]]

# RFC 9110 §9.2.2: methods whose repetition has the same effect as one request; only these may be
# replayed on a fresh backend connection once the first one may have reached the backend.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Fields frontd writes itself on the way to the backend, whatever the client sent: the framing
# (recomputed from the body frontd read, RFC 9112 §6.1), Host, Expect (frontd answers
# "100 Continue" itself when the body is read) and the forwarding fields it appends to or sets.
_REWRITTEN_REQUEST_FIELDS: frozenset[bytes] = frozenset({
    b"host", b"content-length", b"expect", b"via", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded",
})
# The ResponseSink adds its own Date and Server; like nginx, frontd does not relay the backend's.
_DROPPED_RESPONSE_FIELDS: frozenset[bytes] = frozenset({b"date", b"server"})

# RFC 7230 §3.2.6 token (RFC 7239 §4: a value is a token or a quoted-string).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 3986 §3.3 pchar plus "/": what may stay unencoded in a path.
_PATH_SAFE = "/:@!$&'()*+,;=~"


def forwarded_node(address: str) -> str:
    """The RFC 7239 §6 node for a client address: IPv4 bare, IPv6 bracketed (to be quoted).

    Anything that is not an IP address (a client on a Unix-socket listener) is "unknown" (§6.2).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    return f"[{ip}]" if ip.version == 6 else str(ip)


def forwarded_value(value: str) -> str:
    """A Forwarded parameter value: a token as is, otherwise a quoted-string (RFC 7239 §4).

    "[2001:db8::1]" and "example.test:8080" contain characters outside tchar, so they are quoted.
    """
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwarded_element(client_addr: str, proto: str, host: str) -> bytes:
    """One RFC 7239 forwarded-element: `for=...;proto=...;host=...` (host left out when empty)."""
    pairs = [f"for={forwarded_value(forwarded_node(client_addr))}", f"proto={forwarded_value(proto)}"]
    if host:
        pairs.append(f"host={forwarded_value(host)}")
    return ";".join(pairs).encode("latin-1")


def _append(headers: Headers, name: bytes, value: bytes) -> bytes:
    """`value` appended to the list in every `name` field of `headers` (RFC 9110 §5.3)."""
    values = [v for v in get_all(headers, name) if v.strip(b" \t")]
    return b", ".join([*values, value])


def upgrade_requested(headers: Headers) -> bytes | None:
    """The Upgrade value of a request asking to switch protocols, or None.

    RFC 9110 §7.8: Upgrade is only meaningful with the "upgrade" connection option, which the
    sender must list in Connection.
    """
    if b"upgrade" not in connection_tokens(headers):
        return None
    values = get_all(headers, b"upgrade")
    protocols = [p for v in values for p in parse_list(v)]
    return b", ".join(protocols) if protocols else None


def request_headers(
    headers: Headers,
    *,
    host: bytes,
    client_addr: str,
    scheme: str,
    client_host: bytes,
    http_version: str,
    body_length: int | None,
    upgrade: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """The fields sent to the backend for a request that arrived with `headers`.

    `host` is the backend's Host; `client_host` the host the client asked for (X-Forwarded-Host,
    Forwarded host=). `body_length` is the length of the body frontd forwards: None sends it
    chunked (the client's chunked body, re-framed), 0 sends no framing field unless the client
    gave Content-Length: 0. `upgrade` (the value from `upgrade_requested`) keeps Upgrade and asks
    the backend for the same protocol switch; without it Upgrade is dropped.

    Field names containing "_" are never forwarded (issue 13 §5): a backend that folds "_" and
    "-" together (CGI-style environments, many frameworks) would take `X_Forwarded_For` for
    the `X-Forwarded-For` frontd sets. nginx drops them by default too; frontd's CGI side does.
    """
    drop = HOP_BY_HOP | connection_tokens(headers) | _REWRITTEN_REQUEST_FIELDS
    out: list[tuple[bytes, bytes]] = [(b"host", host)]  # RFC 9112 §3.2: Host goes first
    out.extend((name, value) for name, value in headers
               if name.lower() not in drop and b"_" not in name)
    if body_length is None:
        out.append((b"transfer-encoding", b"chunked"))
    elif body_length > 0 or get_all(headers, b"content-length"):
        out.append((b"content-length", str(body_length).encode()))
    options: list[bytes] = []
    if upgrade is not None:
        out.append((b"upgrade", upgrade))
        options.append(b"upgrade")
    # RFC 9110 §10.1.4: TE is hop-by-hop; "trailers" says the chain accepts trailer fields, which
    # gRPC-style backends require. Its sender must list "te" in Connection.
    te = [t for v in get_all(headers, b"te") for t in parse_list(v)]
    if any(t.lower() == b"trailers" for t in te):
        out.append((b"te", b"trailers"))
        options.append(b"te")
    if options:
        out.append((b"connection", b", ".join(options)))
    # RFC 9110 §7.6.3: received-protocol is the version of the request frontd received.
    out.append((b"via", _append(headers, b"via", f"{http_version} frontd".encode())))
    out.append((b"x-forwarded-for", _append(headers, b"x-forwarded-for", client_addr.encode("latin-1"))))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if client_host:
        out.append((b"x-forwarded-host", client_host))
    element = forwarded_element(client_addr, scheme, client_host.decode("latin-1"))
    out.append((b"forwarded", _append(headers, b"forwarded", element)))
    return out


def response_headers(headers: Headers, *, upgrade: bool = False) -> list[tuple[bytes, bytes]]:
    """The backend's response fields relayed to the client.

    Hop-by-hop fields and those its Connection names are dropped (RFC 9110 §7.6.1); the framing
    is left to the ResponseSink, which keeps Content-Length and re-frames everything else.
    `upgrade` (a 101 response) keeps Upgrade and puts back "Connection: upgrade" for the client.
    """
    drop = HOP_BY_HOP | connection_tokens(headers) | _DROPPED_RESPONSE_FIELDS
    out = [(name, value) for name, value in headers if name.lower() not in drop]
    if upgrade:
        out.extend((b"upgrade", value) for value in get_all(headers, b"upgrade"))
        out.append((b"connection", b"upgrade"))
    return out


def backend_target(raw_path: str, query: str, path: str, prefix: str, replacement: str | None) -> str:
    """The request-target sent to the backend.

    Without a path in the proxy URL (`replacement` None) the client's path goes unchanged, with its
    own percent-encoding. With one, the route's `prefix` is replaced by it, as nginx's
    `proxy_pass http://b/base/` does: /app/x?q -> /base/x?q for prefix /app/. The client's
    encoding of the rest is kept when its raw path decodes to the normalised `path` (no dot or
    empty segments); otherwise the normalised path is re-encoded, so a request that routing saw
    under the prefix cannot climb out of `replacement` at the backend.
    """
    if replacement is None or raw_path == "*":
        target = raw_path
    else:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            raw_rest = raw_path[len(prefix):] if raw_path.startswith(prefix) else None
        else:  # "/app" under the prefix "/app/"
            rest, raw_rest = "", ""
        if raw_rest is not None and urllib.parse.unquote(raw_path) == path:
            rest = raw_rest
        else:
            rest = urllib.parse.quote(rest, safe=_PATH_SAFE)
        if path.startswith(prefix) or replacement == "/":
            target = replacement + rest
        else:
            target = replacement[:-1]
    return f"{target}?{query}" if query else target
