"""The `Request` of one HTTP/2 stream, from the header list h2 has decoded and validated.

RFC 9113 §8.3: pseudo-header fields give the method, scheme, target and authority; cookie crumbs
are joined (§8.2.3) and Host comes from :authority (§8.3.1), so that handlers and gateways see
the same request as over HTTP/1.1.
"""

from __future__ import annotations

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


class StreamRequest(NamedTuple):
    request: Request  # for the error and access logs even when refused
    error: HTTPError | None  # what the stream is answered with instead of a handler, if anything
    length: int | None  # the body's Content-Length
    expect: bool  # the client waits for a 100 (Continue) before it sends the body


def make_request(fields: list[tuple[bytes, bytes]], ended: bool, limits: Limits, *, client: tuple[str, int],
                 server: tuple[str, int], scheme: str, tls: TLSInfo | None,
                 trusted: TrustedProxies | None) -> StreamRequest:
    """The stream's Request from a header list h2 has validated (RFC 9113 §8.2, §8.3:
    pseudo-header fields present once and first, names in lower case, no connection-specific
    fields, te only "trailers"), and the HTTPError it is answered with if it is refused. Its body
    is EMPTY_BODY when the HEADERS frame ended the stream; otherwise the caller gives it one."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    size = 0
    for name, value in fields:
        name, value = bytes(name), bytes(value)
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2: a field's size in the list
        if name.startswith(b":"):
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            headers.append((name, value))
    if cookies:
        # RFC 9113 §8.2.3: crumbs are joined with "; " before HTTP/1.1 semantics see them.
        headers.append((b"cookie", b"; ".join(cookies)))
    method = pseudo.get(b":method", b"").decode("latin-1")
    authority = pseudo.get(b":authority")
    host_field = next((v for k, v in headers if k == b"host"), None)
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
        if host_value is None:
            raise BadRequest("neither :authority nor Host")
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
