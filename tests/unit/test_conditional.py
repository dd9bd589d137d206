"""frontd.http.conditional (RFC 9110 §13), and frontd.http.headers, whose lookups feed it."""

from __future__ import annotations

import os

import pytest

from frontd.http.conditional import evaluate, if_range_ok, make_etag
from frontd.http.headers import (
    HOP_BY_HOP,
    connection_tokens,
    get_all,
    get_header,
    is_token,
    parse_list,
    without_hop_by_hop,
)

ETAG = b'"abc-12"'
MTIME = 784111777.25  # Sun, 06 Nov 1994 08:49:37 GMT, plus a fraction
AT = b"Sun, 06 Nov 1994 08:49:37 GMT"  # the Last-Modified second
BEFORE = b"Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = b"Sun, 06 Nov 1994 08:49:38 GMT"


def run(method: str, **fields: bytes) -> int | None:
    headers = [(name.replace("_", "-").encode(), value) for name, value in fields.items()]
    return evaluate(method, lambda name: get_header(headers, name), ETAG, MTIME)


# (method, request fields, expected outcome) following RFC 9110 §13.2.2.
PRECEDENCE = [
    ("GET", {}, None),
    # Step 1: If-Match, strong comparison (§13.1.1).
    ("GET", {"if_match": ETAG}, None),
    ("GET", {"if_match": b"*"}, None),
    ("GET", {"if_match": b'"x", "abc-12"'}, None),
    ("GET", {"if_match": b'"x",,  "abc-12" ,'}, None),
    ("GET", {"if_match": b'"x"'}, 412),
    ("GET", {"if_match": b'W/"abc-12"'}, 412),  # weak tags never match strongly
    ("GET", {"if_match": b"abc-12"}, 412),  # unquoted: no entity-tag
    ("GET", {"if_match": b""}, 412),
    ("PUT", {"if_match": b'"x"'}, 412),
    # If-Match wins over If-Unmodified-Since, which is then ignored (§13.1.4).
    ("GET", {"if_match": ETAG, "if_unmodified_since": BEFORE}, None),
    # Step 2: If-Unmodified-Since.
    ("GET", {"if_unmodified_since": AT}, None),
    ("GET", {"if_unmodified_since": AFTER}, None),
    ("GET", {"if_unmodified_since": BEFORE}, 412),
    ("DELETE", {"if_unmodified_since": BEFORE}, 412),
    ("GET", {"if_unmodified_since": b"yesterday"}, None),  # invalid date: ignored
    # Step 3: If-None-Match, weak comparison (§13.1.2): 304 for GET/HEAD, else 412.
    ("GET", {"if_none_match": ETAG}, 304),
    ("HEAD", {"if_none_match": ETAG}, 304),
    ("GET", {"if_none_match": b'W/"abc-12"'}, 304),
    ("GET", {"if_none_match": b'"x", W/"abc-12"'}, 304),
    ("GET", {"if_none_match": b"*"}, 304),
    ("POST", {"if_none_match": ETAG}, 412),
    ("PUT", {"if_none_match": b"*"}, 412),
    ("GET", {"if_none_match": b'"x"'}, None),
    ("GET", {"if_none_match": b'"abc-1"'}, None),
    ("GET", {"if_none_match": b"garbage"}, None),
    # Step 1 before step 3: a failed If-Match is 412 even if If-None-Match would be 304.
    ("GET", {"if_match": b'"x"', "if_none_match": ETAG}, 412),
    ("GET", {"if_unmodified_since": BEFORE, "if_none_match": ETAG}, 412),
    ("GET", {"if_match": ETAG, "if_none_match": ETAG}, 304),
    # Step 4: If-Modified-Since, GET/HEAD only (§13.1.3).
    ("GET", {"if_modified_since": AT}, 304),
    ("GET", {"if_modified_since": AFTER}, 304),
    ("HEAD", {"if_modified_since": AT}, 304),
    ("GET", {"if_modified_since": BEFORE}, None),
    ("POST", {"if_modified_since": AT}, None),
    ("GET", {"if_modified_since": b"Sunday, 06-Nov-94 08:49:37 GMT"}, 304),
    ("GET", {"if_modified_since": b"Sun Nov  6 08:49:37 1994"}, 304),
    ("GET", {"if_modified_since": b"Sun, 06 Nov 1994 08:49:37 GMT; length=12"}, None),
    ("GET", {"if_modified_since": b"0"}, None),
    # If-None-Match present: If-Modified-Since is ignored (§13.1.3).
    ("GET", {"if_none_match": b'"x"', "if_modified_since": AT}, None),
    ("GET", {"if_none_match": ETAG, "if_modified_since": BEFORE}, 304),
]


@pytest.mark.parametrize(("method", "fields", "expected"), PRECEDENCE)
def test_precedence(method: str, fields: dict[str, bytes], expected: int | None) -> None:
    assert run(method, **fields) == expected


def test_list_over_several_field_lines() -> None:
    headers = [(b"if-none-match", b'"x"'), (b"if-none-match", ETAG)]
    assert evaluate("GET", lambda name: get_header(headers, name), ETAG, MTIME) == 304


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (ETAG, True),
        (b' "abc-12" ', True),
        (b'"abc-1"', False),
        (b'W/"abc-12"', False),  # §13.1.5: strong comparison only
        (b'"abc-12", "x"', False),  # one validator, not a list
        (b'"abc-12"x', False),
        (AT, True),  # the exact Last-Modified date
        (BEFORE, False),
        (AFTER, False),  # not an exact match
        (b"Sunday, 06-Nov-94 08:49:37 GMT", True),
        (b"garbage", False),
        (b"", False),
    ],
)
def test_if_range(value: bytes, ok: bool) -> None:
    assert if_range_ok(value, ETAG, MTIME) is ok


def test_if_range_date_needs_a_strong_last_modified() -> None:
    # RFC 9110 §8.8.2.2: a Last-Modified less than a second before the Date is weak.
    assert if_range_ok(AT, ETAG, MTIME, now=MTIME + 1)
    assert not if_range_ok(AT, ETAG, MTIME, now=MTIME + 0.5)


def test_if_range_with_weak_etag_of_ours() -> None:
    assert not if_range_ok(b'W/"abc-12"', b'W/"abc-12"', MTIME)
    assert not if_range_ok(b'"abc-12"', b'W/"abc-12"', MTIME)


def test_opaque_tag_with_comma_and_backslash() -> None:
    # RFC 9110 §8.8.3: etagc includes "," and "\": not a quoted-string.
    etag = b'"a,b\\"'
    assert evaluate("GET", {b"if-none-match": b'"x", "a,b\\"'}.get, etag, MTIME) == 304
    assert evaluate("GET", {b"if-match": b'"a,b\\"'}.get, etag, MTIME) is None


def stat(size: int, mtime_ns: int) -> os.stat_result:
    # The 10 sequence fields, then st_atime, st_mtime, st_ctime and their _ns forms.
    mtime = mtime_ns / 1e9
    return os.stat_result(
        (0o100644, 1, 2, 1, 0, 0, size, 0, int(mtime), 0, 0.0, mtime, 0.0, 0, mtime_ns, 0)
    )


def test_make_etag() -> None:
    # 1500000000123456789 ns = 0x14d1120d8271cd15; 4660 bytes = 0x1234.
    assert make_etag(stat(4660, 1_500_000_000_123_456_789)) == b'"14d1120d8271cd15-1234"'
    assert make_etag(stat(0, 0)) == b'"0-0"'


def test_make_etag_changes_with_size_and_mtime() -> None:
    tags = {make_etag(stat(10, 1)), make_etag(stat(11, 1)), make_etag(stat(10, 2))}
    assert len(tags) == 3


# frontd.http.headers

HEADERS = [
    (b"host", b"example.com"),
    (b"accept", b"text/html"),
    (b"Accept", b"*/*"),
    (b"connection", b"keep-alive, X-Secret"),
    (b"x-secret", b"1"),
    (b"transfer-encoding", b"chunked"),
    (b"te", b"trailers"),
    (b"cookie", b"a=1"),
]


def test_get_header() -> None:
    assert get_header(HEADERS, b"host") == b"example.com"
    assert get_header(HEADERS, b"HOST") == b"example.com"
    assert get_header(HEADERS, b"accept") == b"text/html, */*"  # RFC 9110 §5.3
    assert get_header(HEADERS, b"missing") is None
    assert get_all(HEADERS, b"accept") == [b"text/html", b"*/*"]
    assert get_all(HEADERS, b"missing") == []


@pytest.mark.parametrize(
    ("value", "elements"),
    [
        (b"", []),
        (b"a", [b"a"]),
        (b"a,b", [b"a", b"b"]),
        (b" a , b\t,\tc ", [b"a", b"b", b"c"]),
        (b",a,,b,", [b"a", b"b"]),  # RFC 9110 §5.6.1: empty elements
        (b'a, "b,c", d', [b"a", b'"b,c"', b"d"]),
        (b'"a\\",b", c', [b'"a\\",b"', b"c"]),  # quoted-pair
        (b'x="1,2";q=0.5, y', [b'x="1,2";q=0.5', b"y"]),
        (b'"unterminated, x', [b'"unterminated, x']),
    ],
)
def test_parse_list(value: bytes, elements: list[bytes]) -> None:
    assert parse_list(value) == elements


@pytest.mark.parametrize(
    ("name", "token"),
    [
        (b"content-type", True),
        (b"X_Forwarded_For", True),
        (b"!#$%&'*+-.^_`|~09AZaz", True),
        (b"", False),
        (b"a b", False),
        (b"a:b", False),
        (b'"a"', False),
        (b"a\x00", False),
        (b"caf\xc3\xa9", False),
        (b"a\n", False),
    ],
)
def test_is_token(name: bytes, token: bool) -> None:
    assert is_token(name) is token


def test_hop_by_hop() -> None:
    assert connection_tokens(HEADERS) == {b"keep-alive", b"x-secret"}
    several = [(b"connection", b"Close"), (b"connection", b"Upgrade, bad token")]
    assert connection_tokens(several) == {b"close", b"upgrade"}
    assert {b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade"} <= HOP_BY_HOP
    # RFC 9110 §7.6.1: Connection and the fields it names are removed.
    assert without_hop_by_hop(HEADERS) == [
        (b"host", b"example.com"),
        (b"accept", b"text/html"),
        (b"Accept", b"*/*"),
        (b"cookie", b"a=1"),
    ]
