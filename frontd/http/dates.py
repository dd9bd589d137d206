"""HTTP-date (RFC 9110 §5.6.7): formatting as IMF-fixdate and parsing of all three formats.

`http_date` is on every response (`Date`, `Last-Modified`), so its result is cached per second.
Names of days and months come from fixed tables, never from the locale (`strftime("%a")` would
follow LC_TIME).
"""

from __future__ import annotations

import calendar
import re
import time
from functools import lru_cache

_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")  # time.struct_time.tm_wday order
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
           b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTHS)}

# IMF-fixdate has a four-digit year: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_TS = -62135596800
_MAX_TS = 253402300799

_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_L = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = rb"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# RFC 9110 §5.6.7, case-sensitive as the grammar's %s"..." strings are:
# IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT   ; Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE = re.compile(_DAY + rb", ([0-9]{2}) " + _MONTH + rb" ([0-9]{4}) " + _TIME + rb" GMT")
# rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT   ; Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(_DAY_L + rb", ([0-9]{2})-" + _MONTH + rb"-([0-9]{2}) " + _TIME + rb" GMT")
# asctime-date = day-name SP date3 SP time-of-day SP year   ; Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(_DAY + rb" " + _MONTH + rb" ([0-9]{2}| [0-9]) " + _TIME + rb" ([0-9]{4})")


def http_date(ts: float) -> bytes:
    """Format a POSIX timestamp as IMF-fixdate, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT".

    Fractions of a second are dropped (floor); timestamps outside years 1..9999 are clamped.
    """
    return _format_second(min(max(int(ts // 1), _MIN_TS), _MAX_TS))


@lru_cache(maxsize=256)
def _format_second(second: int) -> bytes:
    t = time.gmtime(second)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec,
    )


def parse_http_date(value: bytes, *, now: float | None = None) -> float | None:
    """Parse an HTTP-date in IMF-fixdate, RFC 850 or asctime format; None if it is none of them.

    RFC 9110 §5.6.7: a recipient must accept all three. An RFC 850 two-digit year that would lie
    more than 50 years after `now` (default: the current time) is taken as the most recent past
    year with those digits. The day name is not checked against the date.
    """
    value = value.strip(b" \t")
    m = _IMF_FIXDATE.fullmatch(value)
    if m is not None:
        day, month, year, hh, mm, ss = m.groups()
        return _timestamp(int(year), _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    m = _RFC850.fullmatch(value)
    if m is not None:
        day, month, yy, hh, mm, ss = m.groups()
        current_year = time.gmtime(time.time() if now is None else now).tm_year
        year = current_year - current_year % 100 + int(yy)
        if year > current_year + 50:
            year -= 100
        return _timestamp(year, _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    m = _ASCTIME.fullmatch(value)
    if m is not None:
        month, day, hh, mm, ss, year = m.groups()
        return _timestamp(int(year), _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    return None


def _timestamp(
    year: int, month: int, day: int, hour: int, minute: int, second: int,
) -> float | None:
    """The POSIX time of a UTC date, or None if a field is out of range (e.g. 30 Feb, 24:00:00)."""
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    # RFC 9110 §5.6.7: time-of-day is 00:00:00 - 23:59:60, the 60 being a leap second.
    if hour > 23 or minute > 59 or second > 60:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
