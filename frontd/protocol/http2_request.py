"""The `Request` of one HTTP/2 stream, from the header list h2 has decoded, and the checks of
RFC 9113 §8.2 and §8.3 that make a request malformed.

RFC 9113 §8.3: pseudo-header fields give the method, scheme, target and authority; cookie crumbs
are joined (§8.2.3) and Host comes from :authority (§8.3.1), so that handlers and gateways see
the same request as over HTTP/1.1. h2's own inbound checks are off (http2.py): the same rules are
checked here, in the one pass over the fields that builds the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from frontd.config.model import Limits
from frontd.errors import (
    BadRequest,
    ContentTooLarge,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedMethod,
    URITooLong,
)
from frontd.http.forwarded import TrustedProxies, real_client
from frontd.http.target import host_from_header, parse_target
from frontd.protocol.http1 import KNOWN_METHODS
from frontd.request import EMPTY_BODY, Request, TLSInfo

# RFC 9113 §8.2.1: a name has none of 0x00-0x20, 0x41-0x5a (upper case), 0x7f-0xff, nor a colon
# but the one that starts a pseudo-header field; a value has no NUL, CR or LF and neither starts
# nor ends with SP or HTAB.
_NAME = re.compile(rb"[^\x00-\x20A-Z:\x7f-\xff]+")
_VALUE = re.compile(rb"(?:[^\x00\r\n \t](?:[^\x00\r\n]*[^\x00\r\n \t])?)?")
# RFC 9113 §8.2.2: connection-specific fields make a request malformed.
_CONNECTION_FIELDS = frozenset({b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding",
                                b"upgrade"})
# RFC 9113 §8.3.1 and RFC 8441 §4 (:protocol): the pseudo-header fields of a request.
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


class Malformed(Exception):
    """RFC 9113 §8.1.1: a malformed request; the connection ends with PROTOCOL_ERROR."""


def check_field(name: bytes, value: bytes) -> None:
    """RFC 9113 §8.2.1 and §8.2.2 for a regular field, of a request or its trailers."""
    if not _NAME.fullmatch(name):
        raise Malformed(f"invalid field name {name[:40]!r}")
    if not _VALUE.fullmatch(value):
        raise Malformed(f"invalid value of {name[:40]!r}")
    if name in _CONNECTION_FIELDS:
        raise Malformed(f"connection-specific field {name!r}")
    if name == b"te" and value.lower() != b"trailers":
        raise Malformed(f"te other than trailers: {value[:40]!r}")


def check_trailers(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """RFC 9113 §8.1: trailers carry no pseudo-header field, and §8.2 holds for their fields."""
    for name, value in fields:
        if name.startswith(b":"):
            raise Malformed(f"pseudo-header field {name[:40]!r} in trailers")
        check_field(name, value)


class StreamRequest(NamedTuple):
    request: Request  # for the error and access logs even when refused
    error: HTTPError | None  # what the stream is answered with instead of a handler, if anything
    length: int | None  # the body's Content-Length
    expect: bool  # the client waits for a 100 (Continue) before it sends the body


def make_request(fields: Iterable[tuple[bytes, bytes]], ended: bool, limits: Limits, *, client: tuple[str, int],
                 server: tuple[str, int], scheme: str, tls: TLSInfo | None,
                 trusted: TrustedProxies | None) -> StreamRequest:
    """The stream's Request from a header list as h2 decoded it, and the HTTPError it is answered
    with if it is refused. Raises Malformed for what RFC 9113 §8.1.1 calls malformed: §8.2 (field
    names and values, connection-specific fields, te other than "trailers"), §8.3 (pseudo-header
    fields known, once each, before the others; :method, :scheme and a non-empty :path present;
    :authority or Host present, and equal if both are). Its body is EMPTY_BODY when the HEADERS
    frame ended the stream; otherwise the caller gives it one."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    host_field: bytes | None = None
    size = 0
    for name, value in fields:  # bytes: h2 decodes with header_encoding=None
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2: a field's size in the list
        if name.startswith(b":"):
            if headers or cookies:
                raise Malformed(f"pseudo-header field {name[:40]!r} after a regular field")
            if name not in _REQUEST_PSEUDO or name in pseudo:
                raise Malformed(f"unknown or repeated pseudo-header field {name[:40]!r}")
            if not _VALUE.fullmatch(value):
                raise Malformed(f"invalid value of {name!r}")
            pseudo[name] = value
            continue
        check_field(name, value)
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host_field is not None:
                raise Malformed("more than one Host field")
            host_field = value
        headers.append((name, value))
    if cookies:
        # RFC 9113 §8.2.3: crumbs are joined with "; " before HTTP/1.1 semantics see them.
        headers.append((b"cookie", b"; ".join(cookies)))
    if b":method" not in pseudo:
        raise Malformed("no :method")
    authority = pseudo.get(b":authority")
    if pseudo[b":method"] == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise Malformed("CONNECT with :scheme or :path")
    elif b":scheme" not in pseudo or not pseudo.get(b":path"):
        raise Malformed("no :scheme or an empty or absent :path")
    elif b":protocol" in pseudo and pseudo[b":method"] != b"CONNECT":
        raise Malformed(":protocol without CONNECT")
    if authority is None and host_field is None:
        raise Malformed("neither :authority nor Host")
    if authority is not None and host_field is not None and authority != host_field:
        raise Malformed(":authority and Host differ")
    method = pseudo[b":method"].decode("latin-1")
    if authority is not None and host_field is None:
        # RFC 9113 §8.3.1: gateways and proxies that speak HTTP/1.1 get Host from :authority.
        headers.insert(0, (b"host", authority))
    length: int | None = None
    for name, value in headers:
        if name == b"content-length":
            length = int(value)  # h2 has checked it is digits and matches the DATA frames
    target = pseudo.get(b":path", b"")
    request = Request(
        method=method or "-", target=target.decode("latin-1") or "-", path="/", raw_path="/", query="",
        http_version="2.0", headers=headers, host="", client_addr=client[0], client_port=client[1],
        server_addr=server[0], server_port=server[1], scheme=scheme, tls=tls)
    if trusted is not None:
        found = real_client(headers, trusted)
        if found is not None:
            request.peer_addr = client[0]
            request.client_addr, request.client_port = found
    try:
        if size > limits.max_header_size:
            raise HeaderFieldsTooLarge(f"header list over max_header_size ({limits.max_header_size})")
        if method == "CONNECT" or b":protocol" in pseudo:
            # RFC 9113 §8.5 and RFC 8441 (WebSocket) tunnels are not offered.
            raise NotImplementedMethod("CONNECT over HTTP/2 is not supported")
        if method not in KNOWN_METHODS:
            raise NotImplementedMethod(f"unknown method {method}")
        if len(target) > limits.max_target_size:
            raise URITooLong(f"request target over {limits.max_target_size} bytes")
        pseudo_scheme = pseudo.get(b":scheme", b"")
        if pseudo_scheme not in (b"http", b"https"):
            raise BadRequest(f"unsupported :scheme {pseudo_scheme[:20]!r}")
        parsed = parse_target(target, method)
        request.path, request.raw_path, request.query = parsed.path, parsed.raw_path, parsed.query
        # RFC 9113 §8.3.1: :authority, else Host, names the target's host.
        host_value = authority if authority is not None else host_field
        assert host_value is not None
        request.host = host_from_header(host_value)
        if not ended and length is not None and length > limits.max_body_size:
            raise ContentTooLarge(f"Content-Length {length} over max_body_size ({limits.max_body_size})")
    except HTTPError as exc:
        return StreamRequest(request, exc, length, False)
    if ended:
        request.body = EMPTY_BODY
        return StreamRequest(request, None, length, False)
    expect = any(k == b"expect" and v.lower() == b"100-continue" for k, v in headers)
    return StreamRequest(request, None, length, expect)
