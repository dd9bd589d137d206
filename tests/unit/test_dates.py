"""frontd.http.dates: HTTP-date formatting and parsing (RFC 9110 §5.6.7)."""

from __future__ import annotations

import time

import pytest

from frontd.http.dates import http_date, parse_http_date

# RFC 9110 §5.6.7: the same instant in the three formats.
EXAMPLE = 784111777.0
IMF_FIXDATE = b"Sun, 06 Nov 1994 08:49:37 GMT"
RFC850 = b"Sunday, 06-Nov-94 08:49:37 GMT"
ASCTIME = b"Sun Nov  6 08:49:37 1994"


@pytest.mark.parametrize(
    ("ts", "formatted"),
    [
        (EXAMPLE, IMF_FIXDATE),
        (EXAMPLE + 0.999, IMF_FIXDATE),  # fractions are dropped
        (0.0, b"Thu, 01 Jan 1970 00:00:00 GMT"),
        (-1.0, b"Wed, 31 Dec 1969 23:59:59 GMT"),
        (-0.5, b"Wed, 31 Dec 1969 23:59:59 GMT"),  # floor, not truncation towards zero
        (951782400.0, b"Tue, 29 Feb 2000 00:00:00 GMT"),
        (1445412480.0, b"Wed, 21 Oct 2015 07:28:00 GMT"),
        (2147483648.0, b"Tue, 19 Jan 2038 03:14:08 GMT"),
        (253402300799.0, b"Fri, 31 Dec 9999 23:59:59 GMT"),
        (1e20, b"Fri, 31 Dec 9999 23:59:59 GMT"),  # clamped to a four-digit year
        (-1e20, b"Mon, 01 Jan 0001 00:00:00 GMT"),
    ],
)
def test_http_date(ts: float, formatted: bytes) -> None:
    assert http_date(ts) == formatted


def test_http_date_does_not_use_strftime(monkeypatch: pytest.MonkeyPatch) -> None:
    # strftime("%a %b") follows LC_TIME; the names must be the English ones whatever the locale.
    def refuse(*args: object) -> str:
        raise AssertionError("strftime used")

    monkeypatch.setattr(time, "strftime", refuse)
    assert http_date(EXAMPLE + 86400 * 3 + 1) == b"Wed, 09 Nov 1994 08:49:38 GMT"


@pytest.mark.parametrize(
    ("value", "ts"),
    [
        (IMF_FIXDATE, EXAMPLE),
        (RFC850, EXAMPLE),
        (ASCTIME, EXAMPLE),
        (b"Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        (b"Tue, 29 Feb 2000 00:00:00 GMT", 951782400.0),
        (b"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0),
        (b"Wed Oct 21 07:28:00 2015", 1445412480.0),
        (b"Wed Oct  21 07:28:00 2015", None),  # date3 is 2DIGIT or SP DIGIT
        (b"Wed Nov 16 08:49:37 1994", EXAMPLE + 10 * 86400),
        (b"Mon, 06 Nov 1994 08:49:37 GMT", EXAMPLE),  # the day name is not checked
        (b"  " + IMF_FIXDATE + b"\t", EXAMPLE),  # OWS around the value
        (b"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800.0),  # leap second (time-of-day 00-60)
        (b"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799.0),
    ],
)
def test_parse_http_date(value: bytes, ts: float | None) -> None:
    assert parse_http_date(value) == ts


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"0",
        b"784111777",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 06 Nov 1994 08:49:37 +0000",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sun,06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 94 08:49:37 GMT",
        b"Sun, 06 nov 1994 08:49:37 GMT",  # names are case-sensitive (%s"Nov")
        b"sun, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 30 Feb 1994 08:49:37 GMT",
        b"Sun, 29 Feb 1900 08:49:37 GMT",  # 1900 is no leap year
        b"Sun, 32 Jan 1994 08:49:37 GMT",
        b"Sun, 00 Jan 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 23:60:00 GMT",
        b"Sun, 06 Nov 1994 23:59:61 GMT",
        b"Sun, 06 Nov 0000 08:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMT; length=12",  # old IE If-Modified-Since
        b"Sun, 06 Nov 1994 08:49:37 GMT\n",
        b"Sun, \xd9\xa0\xd9\xa6 Nov 1994 08:49:37 GMT",  # non-ASCII digits
        b"Sun, 06 Nov 1994 8:49:37 GMT",
        b"Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 needs the long day name
        b"Sunday, 06-Nov-1994 08:49:37 GMT",
        b"Sun Nov 6 08:49:37 1994",
        b"Sun Nov  6 08:49:37 1994 GMT",
        b"2015-10-21T07:28:00Z",
    ],
)
def test_parse_http_date_refuses(value: bytes) -> None:
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("value", "year"),
    [
        # RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past.
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 1994),
        (b"Thursday, 06-Nov-25 08:49:37 GMT", 2025),
        (b"Monday, 06-Nov-73 08:49:37 GMT", 2073),  # 2073 - 2023 = 50: not more than 50
        (b"Tuesday, 06-Nov-74 08:49:37 GMT", 1974),
        (b"Saturday, 06-Nov-00 08:49:37 GMT", 2000),
    ],
)
def test_rfc850_two_digit_year(value: bytes, year: int) -> None:
    now = 1688169600.0  # 2023-07-01T00:00:00Z
    ts = parse_http_date(value, now=now)
    assert ts is not None
    assert http_date(ts)[12:16] == b"%d" % year


def test_round_trip() -> None:
    for ts in (0.0, EXAMPLE, 1700000000.0, 253402300799.0, -62135596800.0):
        assert parse_http_date(http_date(ts)) == ts
