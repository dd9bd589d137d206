"""Strict ASCII helpers shared by the codecs: decimal numbers, tokens, field-value characters.

Wire numbers are parsed with `re.fullmatch` because `int()` accepts " 12", "+12", "1_2" and
non-ASCII digits, and `re.match(rb"^[0-9]+$")` accepts "12\\n" (see h11's `_util.validate`).
"""

from __future__ import annotations

import re

from frontd.wire.errors import WireError

# RFC 9110 §5.6.2: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
# "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 9110 §5.5: field-value characters are VCHAR, obs-text, SP and HTAB; every other control
# character (NUL, CR, LF, DEL, ...) is forbidden. CR and LF here would split the response.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_DECIMAL_PATTERNS: dict[int, re.Pattern[bytes]] = {}


def parse_decimal(value: bytes, *, max_digits: int, field: str, section: str) -> int:
    """Return `value` as an int if it is 1..`max_digits` ASCII digits, else raise WireError."""
    pattern = _DECIMAL_PATTERNS.get(max_digits)
    if pattern is None:
        pattern = re.compile(rb"[0-9]{1,%d}" % max_digits)
        _DECIMAL_PATTERNS[max_digits] = pattern
    if pattern.fullmatch(value) is None:
        raise WireError(field, f"expected 1 to {max_digits} ASCII digits", value, section=section)
    return int(value)


def is_token(name: bytes) -> bool:
    """True if `name` is an RFC 9110 token (the syntax of a field name)."""
    return _TOKEN.fullmatch(name) is not None


def find_forbidden_value_byte(value: bytes) -> int:
    """Index of the first byte not allowed in an RFC 9110 field value, or -1."""
    found = _FORBIDDEN_IN_VALUE.search(value)
    return -1 if found is None else found.start()
