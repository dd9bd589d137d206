"""frontd/protocol/http2_request.py: a stream's Request from its decoded header list, and the
RFC 9113 §8.2/§8.3 rules that make a request malformed (checked here, not by h2)."""

from __future__ import annotations

import pytest

from frontd.config.model import Limits
from frontd.errors import BadRequest, NotImplementedMethod
from frontd.protocol.http2_request import Malformed, StreamRequest, check_trailers, make_request

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/p?q=1")]


def make(fields: list[tuple[bytes, bytes]], ended: bool = True) -> StreamRequest:
    return make_request(fields, ended, Limits(), client=("192.0.2.1", 5000), server=("127.0.0.1", 443),
                        scheme="https", tls=None, trusted=None)


def test_a_request_with_cookie_crumbs_and_host_from_authority() -> None:
    made = make([*GET, (b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2"), (b"x-e", b"")])
    assert made.error is None
    request = made.request
    assert (request.method, request.path, request.query, request.host) == ("GET", "/p", "q=1", "a.test")
    # RFC 9113 §8.2.3: crumbs joined with "; "; §8.3.1: Host from :authority.
    assert request.headers == [(b"host", b"a.test"), (b"accept", b"*/*"), (b"x-e", b""), (b"cookie", b"a=1; b=2")]


def test_host_alone_and_host_equal_to_authority() -> None:
    assert make([*GET[:2], GET[3], (b"host", b"b.test")]).request.host == "b.test"
    assert make([*GET, (b"host", b"a.test")]).error is None
    assert make([*GET, (b"te", b"trailers")]).error is None
    assert make([*GET, (b"te", b"Trailers")]).error is None


@pytest.mark.parametrize("fields", [
    # §8.2.1: names: upper case, a colon, controls, space, DEL, bytes over 0x7f, empty.
    [*GET, (b"X-Upper", b"1")],
    [*GET, (b"x:y", b"1")],
    [*GET, (b"x y", b"1")],
    [*GET, (b"x\x00", b"1")],
    [*GET, (b"x\x7f", b"1")],
    [*GET, (b"x\xe9", b"1")],
    [*GET, (b"", b"1")],
    # §8.2.1: values: NUL, CR, LF anywhere; SP or HTAB at either end.
    [*GET, (b"x", b"a\x00b")],
    [*GET, (b"x", b"a\rb")],
    [*GET, (b"x", b"a\nb")],
    [*GET, (b"x", b" a")],
    [*GET, (b"x", b"a\t")],
    [*GET, (b"x", b" ")],
    [(b":method", b"GET "), *GET[1:]],
    # §8.2.2: connection-specific fields, te other than trailers.
    [*GET, (b"connection", b"close")],
    [*GET, (b"keep-alive", b"1")],
    [*GET, (b"proxy-connection", b"1")],
    [*GET, (b"transfer-encoding", b"chunked")],
    [*GET, (b"upgrade", b"h2c")],
    [*GET, (b"te", b"gzip")],
    # §8.3: pseudo-header fields unknown, repeated, after a regular field, or a response's.
    [*GET, (b":custom", b"1")],
    [*GET, (b":status", b"200")],
    [*GET, (b":path", b"/again")],
    [*GET[:3], (b"accept", b"*/*"), GET[3]],
    [*GET[:3], (b"cookie", b"a=1"), GET[3]],
    # §8.3.1: :method, :scheme and a non-empty :path; :protocol only with CONNECT.
    GET[1:],
    [GET[0], *GET[2:]],
    GET[:3],
    [*GET[:3], (b":path", b"")],
    [*GET, (b":protocol", b"websocket")],
    [(b":method", b"CONNECT"), (b":authority", b"a.test:443"), (b":path", b"/")],
    # §8.3.1: neither :authority nor Host; both and different; two Host fields.
    [*GET[:2], GET[3]],
    [*GET, (b"host", b"b.test")],
    [*GET[:2], GET[3], (b"host", b"a.test"), (b"host", b"a.test")],
])
def test_malformed(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        make(fields)


def test_connect_and_extended_connect_are_well_formed_and_refused() -> None:
    connect = make([(b":method", b"CONNECT"), (b":authority", b"a.test:443")])
    assert isinstance(connect.error, NotImplementedMethod)
    websocket = make([(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]])
    assert isinstance(websocket.error, NotImplementedMethod)


def test_unknown_scheme_is_a_400_not_malformed() -> None:
    assert isinstance(make([GET[0], (b":scheme", b"ftp"), *GET[2:]]).error, BadRequest)


def test_trailers() -> None:
    check_trailers([(b"x-checksum", b"abc")])
    for fields in ([(b":path", b"/")], [(b"X-Upper", b"1")], [(b"x", b"a\nb")], [(b"connection", b"close")]):
        with pytest.raises(Malformed):
            check_trailers(fields)
