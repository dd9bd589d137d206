"""frontd.http.ranges: Range parsing (RFC 9110 §14), Content-Range and multipart/byteranges."""

from __future__ import annotations

import pytest

from frontd.errors import RangeNotSatisfiable
from frontd.http.ranges import (
    MAX_RANGES,
    content_range,
    make_boundary,
    multipart_content_type,
    multipart_length,
    multipart_parts,
    parse_range,
)

# (Range value, representation size, inclusive ranges)
SATISFIABLE = [
    # RFC 9110 §14.1.2 examples, for a representation of 10000 bytes.
    (b"bytes=0-499", 10000, [(0, 499)]),
    (b"bytes=500-999", 10000, [(500, 999)]),
    (b"bytes=-500", 10000, [(9500, 9999)]),
    (b"bytes=9500-", 10000, [(9500, 9999)]),
    (b"bytes=0-0,-1", 10000, [(0, 0), (9999, 9999)]),
    (b"bytes=0-0", 10000, [(0, 0)]),
    (b"bytes=0-", 10000, [(0, 9999)]),
    (b"bytes=0-999999", 10000, [(0, 9999)]),  # last-pos past the end means the end
    (b"bytes=9999-9999", 10000, [(9999, 9999)]),
    (b"bytes=-20000", 10000, [(0, 9999)]),  # suffix longer than the representation
    (b"bytes=-1", 1, [(0, 0)]),
    (b"bytes=0-0", 1, [(0, 0)]),
    (b"BYTES=0-1", 10, [(0, 1)]),  # range-unit is case-insensitive
    (b"bytes=00005-0007", 10, [(5, 7)]),
    (b"bytes=0-99999999999999999999999999999", 10, [(0, 9)]),  # huge last-pos: the end
    (b"bytes=-99999999999999999999999999999", 10, [(0, 9)]),
    # Unsatisfiable members are dropped when another one is satisfiable (§14.1.1).
    (b"bytes=20-30,0-1", 10, [(0, 1)]),
    (b"bytes=-0,2-3", 10, [(2, 3)]),
    # Coalescing: overlapping or adjacent; order of first request kept.
    (b"bytes=0-4,5-9", 100, [(0, 9)]),
    (b"bytes=0-4,3-9", 100, [(0, 9)]),
    (b"bytes=0-4,6-9", 100, [(0, 4), (6, 9)]),
    (b"bytes=50-59,0-9", 100, [(50, 59), (0, 9)]),
    (b"bytes=50-59,0-9,10-20", 100, [(50, 59), (0, 20)]),
    (b"bytes=0-9,0-9,0-9", 100, [(0, 9)]),
    (b"bytes=-10,90-", 100, [(90, 99)]),
    (b"bytes=0-,0-,0-", 100, [(0, 99)]),
    (b"bytes=1-1,3-3,2-2", 100, [(1, 3)]),
    # List syntax: OWS around commas and empty elements (RFC 9110 §5.6.1).
    (b"bytes=0-1, 5-6", 10, [(0, 1), (5, 6)]),
    (b"bytes=0-1 ,\t5-6", 10, [(0, 1), (5, 6)]),
    (b"bytes=,0-1,,", 10, [(0, 1)]),
]


@pytest.mark.parametrize(("header", "size", "ranges"), SATISFIABLE)
def test_satisfiable(header: bytes, size: int, ranges: list[tuple[int, int]]) -> None:
    assert parse_range(header, size) == ranges


IGNORED = [
    b"bytes=5-2",  # last-pos < first-pos: invalid (§14.1.1)
    b"bytes=0-1,5-2",  # one invalid member invalidates the set
    b"bytes=",
    b"bytes=,",
    b"bytes",
    b"bytes=-",
    b"bytes=a-b",
    b"bytes=1-2-3",
    b"bytes=--1",
    b"bytes=+1-2",
    b"bytes=1_0-20",
    b"bytes=1 -2",
    b"bytes=\xd9\xa1-2",  # non-ASCII digits
    b"bytes=0-1\n",
    b"bytes = 0-1",
    b"items=0-1",  # unknown range unit (§14.2)
    b"=0-1",
    b"0-1",
    b"",
]


@pytest.mark.parametrize("header", IGNORED)
def test_ignored(header: bytes) -> None:
    assert parse_range(header, 10000) is None


UNSATISFIABLE = [
    (b"bytes=-0", 10000),
    (b"bytes=10000-", 10000),
    (b"bytes=10000-10001", 10000),
    (b"bytes=20000-", 10000),
    (b"bytes=10-20,-0,30-", 5),
    (b"bytes=1-", 1),
    (b"bytes=99999999999999999999999999999-", 10),
    (b"bytes=0-", 0),  # nothing but a non-zero suffix is satisfiable when empty (§14.1.3)
    (b"bytes=0-0", 0),
    (b"bytes=-0", 0),
]


@pytest.mark.parametrize(("header", "size"), UNSATISFIABLE)
def test_unsatisfiable(header: bytes, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.status == 416
    # RFC 9110 §15.5.17: Content-Range: bytes */complete-length.
    assert info.value.headers == ((b"content-range", b"bytes */%d" % size),)


def test_empty_representation_with_suffix_is_served_whole() -> None:
    # A non-zero suffix-range on a zero-length representation is satisfiable (§14.1.3) but has no
    # byte to describe in Content-Range: the whole (empty) representation is sent with 200.
    assert parse_range(b"bytes=-5", 0) is None
    assert parse_range(b"bytes=0-0,-1", 0) is None


def test_many_tiny_ranges_just_under_and_over_the_limit() -> None:
    # Every other byte, so nothing coalesces.
    under = b"bytes=" + b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(MAX_RANGES))
    assert parse_range(under, 1000) == [(2 * i, 2 * i) for i in range(MAX_RANGES)]
    over = b"bytes=" + b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(MAX_RANGES + 1))
    assert parse_range(over, 1000) is None


def test_many_adjacent_ranges_coalesce_into_one() -> None:
    header = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(1000))
    assert parse_range(header, 1000) == [(0, 999)]


def test_overlapping_ranges_never_exceed_the_size() -> None:
    # The amplification attack (CVE-2011-3192, Apache "Range: bytes=0-,5-0,5-1,..."): overlaps
    # merge, so the body is at most the representation.
    header = b"bytes=0-," + b",".join(b"5-%d" % i for i in range(5, 1300))
    ranges = parse_range(header, 10000)
    assert ranges == [(0, 9999)]


def test_content_range() -> None:
    # RFC 9110 §14.4 examples.
    assert content_range(42, 1233, 1234) == b"bytes 42-1233/1234"
    assert content_range(0, 0, 1) == b"bytes 0-0/1"


def test_multipart_body_matches_rfc_example() -> None:
    # RFC 9110 §14.6: two ranges of an application/pdf of 8000 bytes.
    parts, closing = multipart_parts(
        [(500, 999), (7000, 7999)], 8000, b"application/pdf", b"THIS_STRING_SEPARATES"
    )
    assert parts == [
        (
            b"--THIS_STRING_SEPARATES\r\n"
            b"Content-Type: application/pdf\r\n"
            b"Content-Range: bytes 500-999/8000\r\n"
            b"\r\n",
            500,
            999,
        ),
        (
            b"\r\n--THIS_STRING_SEPARATES\r\n"
            b"Content-Type: application/pdf\r\n"
            b"Content-Range: bytes 7000-7999/8000\r\n"
            b"\r\n",
            7000,
            7999,
        ),
    ]
    assert closing == b"\r\n--THIS_STRING_SEPARATES--\r\n"
    body = b"".join(head + b"x" * (last - first + 1) for head, first, last in parts) + closing
    assert multipart_length(parts, closing) == len(body) == 1500 + 93 + 97 + 29


def test_multipart_without_content_type() -> None:
    parts, closing = multipart_parts([(0, 0), (2, 3)], 4, None, b"b")
    assert parts == [
        (b"--b\r\nContent-Range: bytes 0-0/4\r\n\r\n", 0, 0),
        (b"\r\n--b\r\nContent-Range: bytes 2-3/4\r\n\r\n", 2, 3),
    ]
    assert closing == b"\r\n--b--\r\n"
    body = (
        b"--b\r\nContent-Range: bytes 0-0/4\r\n\r\nA"
        b"\r\n--b\r\nContent-Range: bytes 2-3/4\r\n\r\nCD"
        b"\r\n--b--\r\n"
    )
    assert multipart_length(parts, closing) == len(body)


@pytest.mark.parametrize("boundary", [b"", b"a b", b"a\r\nX: y", b"x" * 71, b'a"b'])
def test_multipart_refuses_bad_boundary(boundary: bytes) -> None:
    with pytest.raises(ValueError):
        multipart_parts([(0, 0)], 1, b"text/plain", boundary)


def test_boundary_and_content_type() -> None:
    boundary = make_boundary()
    assert boundary != make_boundary()
    multipart_parts([(0, 0)], 1, None, boundary)  # a valid boundary
    assert multipart_content_type(b"abc") == b"multipart/byteranges; boundary=abc"
