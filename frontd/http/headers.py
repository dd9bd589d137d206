"""Header-field helpers (RFC 9110 §5): lookup in h11-style lists, list parsing, tokens, hop-by-hop.

Headers are a sequence of (name, value) byte pairs, as h11 gives them (names lower-cased there;
lookups here lower-case both sides anyway).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Headers = Sequence[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: fields that concern only one connection, never forwarded by an intermediary.
# Proxy-Authenticate and Proxy-Authorization are addressed to the next hop alone (RFC 9110
# §11.7.1, §11.7.2); Trailer announces fields of a chunked framing that frontd re-frames anyway.
HOP_BY_HOP: frozenset[bytes] = frozenset({
    b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding",
    b"upgrade", b"trailer", b"proxy-authenticate", b"proxy-authorization",
})

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def get_header(headers: Headers, name: bytes) -> bytes | None:
    """The value of field `name`, or None if absent.

    Several field lines of the same name are joined with ", " (RFC 9110 §5.3: equivalent to one
    line for a list-based field). Not for Set-Cookie, which is no list (use `get_all`).
    """
    values = get_all(headers, name)
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def get_all(headers: Headers, name: bytes) -> list[bytes]:
    """The values of every field line named `name` (case-insensitive), in order."""
    name = name.lower()
    return [value for key, value in headers if key.lower() == name]


def parse_list(value: bytes) -> list[bytes]:
    """Split a comma-separated field value into its elements (RFC 9110 §5.6.1).

    Commas inside quoted strings (with backslash quoted-pairs, RFC 9110 §5.6.4) do not split;
    each element is stripped of OWS (SP, HTAB), and empty elements are dropped. Elements are
    returned as sent, quotes included. An unterminated quoted string runs to the end.
    """
    elements: list[bytes] = []
    start = 0
    i = 0
    n = len(value)
    in_quotes = False
    while i < n:
        c = value[i]
        if in_quotes:
            if c == 0x5C:  # "\": the next byte is quoted
                i += 1
            elif c == 0x22:
                in_quotes = False
        elif c == 0x22:
            in_quotes = True
        elif c == 0x2C:
            elements.append(value[start:i])
            start = i + 1
        i += 1
    elements.append(value[start:])
    return [e for e in (e.strip(b" \t") for e in elements) if e]


def is_token(name: bytes) -> bool:
    """Whether `name` is an RFC 9110 §5.6.2 token (as a field name must be, §5.1)."""
    return _TOKEN.fullmatch(name) is not None


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """The lower-cased connection options named by every Connection field (RFC 9110 §7.6.1)."""
    return frozenset(
        option.lower()
        for value in get_all(headers, b"connection")
        for option in parse_list(value)
        if is_token(option)
    )


def without_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields an intermediary forwards: HOP_BY_HOP and those Connection names removed.

    RFC 9110 §7.6.1: an intermediary must remove Connection and every field it lists before
    forwarding a message.
    """
    headers = list(headers)
    drop = HOP_BY_HOP | connection_tokens(headers)
    return [(key, value) for key, value in headers if key.lower() not in drop]
