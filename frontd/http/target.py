"""The request-target and the Host header: parsed, validated and normalised once, as pure functions.

`parse_target` turns the request-target of the request line (RFC 9112 §3.2) into a `Target`
whose `path` is percent-decoded exactly once, UTF-8, free of control characters, backslashes and
encoded slashes, and has its dot segments resolved (RFC 3986 §5.2.4) *after* decoding. Everything
downstream (routing, static files, `PATH_INFO`) works on that path, so no later step decodes or
resolves again: the Apache CVE-2021-41773 (`.%2e`) and CVE-2021-42013 (`%%32%65`) traversals have
nowhere to hide.

`host_from_header` validates a Host field value (RFC 9112 §3.2, RFC 9110 §7.2) and returns the
name used for virtual-host matching. `is_hidden` says whether a normalised path names a dotfile.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from frontd.errors import BadRequest, NotImplementedMethod, URITooLong


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed request-target.

    `path` is decoded and normalised and always starts with "/", except for the asterisk-form of
    `OPTIONS *`, where it is "*". `raw_path` is the path exactly as sent (ASCII, no query).
    `query` is the raw query without "?" ("" when there is none). `host` and `port` come from an
    absolute-form target only; the origin server then ignores the Host header (RFC 9112 §3.2.2).
    """

    path: str
    raw_path: str
    query: str
    host: str | None = None
    port: int | None = None


# RFC 9112 §3.2 and RFC 3986 §3: the target is visible ASCII (h11 checks this too). Outside the
# query, "#" (a fragment is never sent, RFC 9112 §3.2) and "\" (not a URI character; Windows and
# some backends treat it as a separator) are refused as well.
_VCHAR = re.compile(rb"[\x21-\x7e]+")
_PATH_BYTES = re.compile(rb"[\x21\x22\x24-\x5b\x5d-\x7e]*")  # VCHAR minus "#" and backslash
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})?")
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "//" authority.
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)
# RFC 3986 §3.2.2 would allow any reg-name (sub-delims, percent-escapes); for virtual hosts only
# DNS-like names make sense, so a name is dot-separated labels of letters, digits, "-" and "_", with
# an optional trailing dot.
_REG_NAME = re.compile(rb"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")
_IPV4 = re.compile(rb"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
_PORT = re.compile(rb"[0-9]{0,5}")  # RFC 3986 §3.2.3: port = *DIGIT


# Segments of pchars (RFC 3986 §3.3) with no "%" and not starting with ".", so that decoding and
# dot-segment removal would leave the path as it is: the common case, taken without either.
_PLAIN_PATH = re.compile(rb"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*/?")


def parse_target(raw: bytes, method: str, *, max_size: int | None = None) -> Target:
    """Parse and normalise a request-target (RFC 9112 §3.2).

    Accepts origin-form ("/a?q"), absolute-form ("http://host:8080/a?q", http or https) and, for
    OPTIONS only, asterisk-form ("*"). CONNECT (authority-form) raises NotImplementedMethod; any
    other malformed target raises BadRequest, and one longer than `max_size` bytes URITooLong.
    """
    if max_size is not None and len(raw) > max_size:
        raise URITooLong(f"request-target of {len(raw)} bytes, limit {max_size}")
    if method == "CONNECT":
        # RFC 9112 §3.2.3: authority-form is only for CONNECT, which a front end does not tunnel.
        raise NotImplementedMethod("CONNECT is not supported")
    if not _VCHAR.fullmatch(raw):
        raise BadRequest(f"request-target {raw[:64]!r}: empty or not visible ASCII")
    if raw == b"*":
        # RFC 9112 §3.2.4: asterisk-form is only used for a server-wide OPTIONS request.
        if method != "OPTIONS":
            raise BadRequest(f"request-target '*' with method {method}")
        return Target(path="*", raw_path="*", query="")
    host: str | None = None
    port: int | None = None
    if raw.startswith(b"/"):
        rest = raw  # RFC 9112 §3.2.1: origin-form
    else:
        m = _ABSOLUTE.fullmatch(raw)
        if m is None:
            raise BadRequest(f"request-target {raw[:64]!r}: not origin-form or absolute-form")
        scheme, authority, rest = m.groups()
        if scheme.lower() not in (b"http", b"https"):
            raise BadRequest(f"request-target {raw[:64]!r}: scheme is not http or https")
        if b"@" in authority:
            # RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
            raise BadRequest(f"request-target {raw[:64]!r}: userinfo in authority")
        host, port = _parse_authority(authority)
        if host == "":
            # RFC 9110 §4.2.1: an http URI with an empty host is invalid and must be rejected.
            raise BadRequest(f"request-target {raw[:64]!r}: empty host")
        if not rest.startswith(b"/"):
            # RFC 9110 §4.2.3: an empty path is equivalent to "/".
            rest = b"/" + rest
    raw_path, sep, query = rest.partition(b"?")
    if _PLAIN_PATH.fullmatch(raw_path):
        # Nothing to decode and no empty or dot segment: the path is already normal.
        text = raw_path.decode("ascii")
        return Target(path=text, raw_path=text, query=query.decode("ascii"), host=host, port=port)
    if not _PATH_BYTES.fullmatch(raw_path):
        raise BadRequest(f"request-target {raw[:64]!r}: '#' or '\\' in path")
    return Target(
        path=_normalise(raw_path),
        raw_path=raw_path.decode("ascii"),
        query=query.decode("ascii"),
        host=host,
        port=port,
    )


def _normalise(raw_path: bytes) -> str:
    """Decode each segment once, refuse what could mislead a later step, resolve dot segments."""
    out: list[str] = []
    segments = raw_path.split(b"/")
    last = len(segments) - 1
    trailing_slash = False
    for i, raw_seg in enumerate(segments):
        seg = _decode_segment(raw_seg)
        # RFC 3986 §5.2.4, applied after decoding so ".%2e" is "..". A path that ends in a dot
        # segment names a directory, as "/a/b/.." resolves to "/a/".
        if seg == "" or seg == ".":
            trailing_slash = i == last
        elif seg == "..":
            if not out:
                raise BadRequest(f"path {raw_path[:64]!r}: '..' above the root")
            out.pop()
            trailing_slash = i == last
        else:
            out.append(seg)
            trailing_slash = False
    path = "/" + "/".join(out)
    if trailing_slash and out:
        path += "/"
    return path


def _decode_segment(raw_seg: bytes) -> str:
    """Percent-decode one segment (RFC 3986 §2.1) and check it as UTF-8 text."""
    if b"%" in raw_seg:
        parts: list[bytes] = []
        pos = 0
        for m in _PCT.finditer(raw_seg):
            hex_digits = m.group(1)
            if hex_digits is None:
                raise BadRequest(f"path segment {raw_seg[:64]!r}: bad percent-escape")
            parts.append(raw_seg[pos:m.start()])
            parts.append(bytes((int(hex_digits, 16),)))
            pos = m.end()
        parts.append(raw_seg[pos:])
        decoded = b"".join(parts)
    else:
        decoded = raw_seg
    if b"/" in decoded:
        # RFC 3875 §4.1.5: a server may refuse a path whose "%2F" would decode into a separator.
        raise BadRequest(f"path segment {raw_seg[:64]!r}: encoded '/'")
    if b"\\" in decoded:
        raise BadRequest(f"path segment {raw_seg[:64]!r}: encoded '\\'")
    try:
        # Strict UTF-8 refuses overlong forms such as %c0%ae ("."), the IIS/Tomcat traversal,
        # and encoded surrogates (RFC 3629 §3, §10).
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"path segment {raw_seg[:64]!r}: not UTF-8") from None
    if not text.isprintable() and any(unicodedata.category(c) == "Cc" for c in text):
        # NUL truncates C strings; CR/LF split CGI environment lines and log entries.
        raise BadRequest(f"path segment {raw_seg[:64]!r}: control character")
    return text


def is_hidden(path: str, allowed: Collection[str] = ()) -> bool:
    """Whether a normalised path has a segment starting with "." (.git, .env, .htpasswd).

    Segments listed in `allowed` (e.g. ".well-known", RFC 8615) do not count.
    """
    return any(seg.startswith(".") and seg not in allowed for seg in path.split("/"))


@functools.lru_cache(maxsize=256)
def host_from_header(value: bytes) -> str:
    """Validate a Host field value and return the host, lower-cased, without port or trailing dot.

    RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host is a name, an IPv4 address or a bracketed
    IPv6 literal ("[::1]", returned with its brackets). An empty value is allowed (RFC 9112 §3.2:
    sent when the target URI has no authority) and gives "". Anything else raises BadRequest
    (RFC 9112 §3.2: a server must answer 400 to an invalid Host).
    """
    return _parse_authority(value)[0]


def _parse_authority(value: bytes) -> tuple[str, int | None]:
    """Split and validate `host[:port]`; the host lower-cased without a trailing dot."""
    if value == b"":
        return "", None
    port: int | None = None
    if value.startswith(b"["):
        end = value.find(b"]")
        if end < 0:
            raise BadRequest(f"host {value[:64]!r}: unterminated IPv6 literal")
        literal, after = value[1:end], value[end + 1:]
        try:
            # RFC 3986 §3.2.2: IP-literal; IPvFuture and zone identifiers are not accepted.
            ipaddress.IPv6Address(literal.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(f"host {value[:64]!r}: bad IPv6 literal") from None
        if b"%" in literal:
            raise BadRequest(f"host {value[:64]!r}: zone identifier in IPv6 literal")
        host = b"[" + literal + b"]"
        if after:
            if not after.startswith(b":"):
                raise BadRequest(f"host {value[:64]!r}: junk after IPv6 literal")
            port = _parse_port(after[1:], value)
        return host.decode("ascii").lower(), port
    name, sep, port_bytes = value.partition(b":")
    if sep:
        port = _parse_port(port_bytes, value)
    if not (_REG_NAME.fullmatch(name) or _IPV4.fullmatch(name)) or len(name) > 254:
        raise BadRequest(f"host {value[:64]!r}: not a host name or address")
    return name.rstrip(b".").decode("ascii").lower(), port


def _parse_port(digits: bytes, value: bytes) -> int | None:
    """RFC 3986 §3.2.3: port = *DIGIT; an empty port is allowed and means the default."""
    if not _PORT.fullmatch(digits):
        raise BadRequest(f"host {value[:64]!r}: bad port")
    if digits == b"":
        return None
    port = int(digits)
    if port > 65535:
        raise BadRequest(f"host {value[:64]!r}: port out of range")
    return port
