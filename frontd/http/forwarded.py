"""What an HTTP gateway changes in a request it forwards and in the response it relays back.

Pure functions over h11-style header lists. RFC 9110 §7.6.1: hop-by-hop fields, and every field
the Connection field names, stay behind; §7.6.3: an HTTP-to-HTTP gateway adds Via to each
inbound request. RFC 7239 `Forwarded` and the de-facto `X-Forwarded-For`/`-Proto`/`-Host` tell
the backend who the client was. `backend_target` rewrites the path the way nginx's `proxy_pass`
does when its URL has a path.

The other way round, `real_client` reads those fields from a trusted proxy (`trusted_proxies`) to
find the client it forwards for: the rightmost address that is not itself trusted, as nginx's
`real_ip_recursive on` does.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Sequence

from frontd.http.addresses import Network, client_ip
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
# RFC 7239 §4: one forwarded-pair, its value a token or a quoted-string, then the separator
# that follows it (";" inside an element, "," between elements) or the end.
_PAIR = re.compile(r'[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=(?:([!#$%&\'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)")'
                   r'[ \t]*([;,]|$)')
# An X-Forwarded-For entry or RFC 7239 §6 node: an address, IPv6 possibly bracketed, with an
# optional port.
_NODE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([0-9.]+)(?::([0-9]{1,5}))?|([0-9A-Fa-f:.]+)")



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


class TrustedProxies:
    """`trusted_proxies`, compiled once at load: which peers may name the client."""

    __slots__ = ("networks", "unix")

    def __init__(self, networks: Sequence[str]) -> None:
        """`networks` as config/values.py normalised them; "unix:" trusts Unix-socket clients."""
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in networks if n != "unix:")
        self.unix = "unix:" in networks

    def __contains__(self, address: str) -> bool:
        if address == "unix:":
            return self.unix
        ip = client_ip(address)
        return ip is not None and any(ip in network for network in self.networks)



def _node(text: str) -> tuple[str, int] | None:
    """An address and port (0 when none was given) from an X-Forwarded-For entry or an RFC 7239 §6
    node ("192.0.2.43:47011", "[2001:db8::17]:4711", "2001:db8::17"); None for "unknown", an
    obfuscated node or anything else that is not an address."""
    m = _NODE.fullmatch(text.strip(" \t"))
    if m is None:
        return None
    address = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    ip = client_ip(address)
    if ip is None or (port is not None and not 0 < int(port) < 65536):
        return None
    return str(ip), int(port) if port else 0


def forwarded_for(value: str) -> list[str] | None:
    """The `for=` values of a Forwarded field (RFC 7239 §4), one per element ("" where an element
    has none), in order; None when the field is malformed."""
    found: list[str] = []
    current = ""
    pos = 0
    while pos < len(value):
        m = _PAIR.match(value, pos)
        if m is None or m.end() == pos:
            return None
        name, token, quoted, separator = m.groups()
        if name.lower() == "for":
            current = token if token is not None else re.sub(r"\\(.)", r"\1", quoted)
        if separator != ";":
            found.append(current)
            current = ""
        pos = m.end()
    return found


def real_client(headers: Headers, trusted: TrustedProxies) -> tuple[str, int] | None:
    """The client a trusted peer forwards for, or None to keep the peer.

    RFC 7239 `Forwarded` when present, else `X-Forwarded-For` (X-Real-IP is not read). The list is
    walked from the right, past every trusted address; the first untrusted one is the client (all
    trusted: the leftmost). A malformed field, or an entry there that is no address ("unknown", an
    obfuscated node), leaves the peer as the client: nothing a trusted proxy did not vouch for is
    believed.
    """
    forwarded = get_all(headers, b"forwarded")
    if forwarded:
        nodes = forwarded_for(", ".join(v.decode("latin-1") for v in forwarded))
        if nodes is None:
            return None
    else:
        nodes = [entry.decode("latin-1") for value in get_all(headers, b"x-forwarded-for")
                 for entry in value.split(b",") if entry.strip(b" \t")]
    found: tuple[str, int] | None = None
    for text in reversed(nodes):
        found = _node(text)
        if found is None:
            return None
        if found[0] not in trusted:
            return found
    return found


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
    peer_addr: str = "",
) -> list[tuple[bytes, bytes]]:
    """The fields sent to the backend for a request that arrived with `headers`.

    `host` is the backend's Host; `client_host` the host the client asked for (X-Forwarded-Host,
    Forwarded host=). `body_length` is the length of the body frontd forwards: None sends it
    chunked (the client's chunked body, re-framed), 0 sends no framing field unless the client
    gave Content-Length: 0. `upgrade` (the value from `upgrade_requested`) keeps Upgrade and asks
    the backend for the same protocol switch; without it Upgrade is dropped.

    `peer_addr` is the trusted proxy that named `client_addr` ("" when there was none): the chain
    it sent already ends at the client, so frontd appends the proxy, the hop it received from
    (and the client first, where that proxy's chain was in the other field).

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
    hop = peer_addr or client_addr
    xff = _append(headers, b"x-forwarded-for", hop.encode("latin-1"))
    if peer_addr and xff == hop.encode("latin-1"):
        xff = client_addr.encode("latin-1") + b", " + xff
    out.append((b"x-forwarded-for", xff))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if client_host:
        out.append((b"x-forwarded-host", client_host))
    element = forwarded_element(hop, scheme, client_host.decode("latin-1"))
    forwarded = _append(headers, b"forwarded", element)
    if peer_addr and forwarded == element:
        forwarded = f"for={forwarded_value(forwarded_node(client_addr))}, ".encode("latin-1") + forwarded
    out.append((b"forwarded", forwarded))
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
