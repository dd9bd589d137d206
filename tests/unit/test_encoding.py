"""Accept-Encoding (RFC 9110 §12.5.3) as http/encoding.py reads it."""

from __future__ import annotations

import pytest

from frontd.http.encoding import choose, identity_refused, parse_accept_encoding

OFFERED = ("zstd", "br", "gzip")


def test_parse() -> None:
    assert parse_accept_encoding(b"gzip, deflate;q=0.5, br;q=0") == {"gzip": 1.0, "deflate": 0.5, "br": 0.0}
    assert parse_accept_encoding(b" GZIP ; Q=0.25 ,,") == {"gzip": 0.25}
    # Malformed weights are ignored (RFC 9110 §12.4.2 allows at most three decimals, at most 1).
    assert parse_accept_encoding(b"gzip;q=1.5, br;q=0.1234, zstd;q=, x;level=1") == {}


@pytest.mark.parametrize(("accept", "expected"), [
    (None, None),
    (b"", None),
    (b"gzip", "gzip"),
    (b"gzip, deflate, br, zstd", "zstd"),
    (b"br;q=0.9, gzip", "gzip"),
    (b"*;q=0.1, gzip;q=0", "zstd"),
    (b"*;q=0", None),
    (b"identity", None),
    (b"x-gzip;q=0.5", "gzip"),
])
def test_choose(accept: bytes | None, expected: str | None) -> None:
    assert choose(accept, OFFERED) == expected


def test_identity_refused() -> None:
    assert identity_refused(b"gzip, identity;q=0")
    assert identity_refused(b"*;q=0")
    assert not identity_refused(b"*;q=0, identity")
    assert not identity_refused(b"gzip")
    assert not identity_refused(None)
