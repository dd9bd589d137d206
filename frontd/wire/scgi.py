"""SCGI (Neil Schemenauer, protocol.txt, 2008-06-23): the request head, sans-IO.

The client (frontd) sends one netstring of NUL-separated header pairs, then exactly
CONTENT_LENGTH body bytes; the server answers with a CGI-style response (parsed by
`frontd.wire.cgi_response`) and closes. `encode_request_head` builds the netstring;
`decode_request_head` parses one strictly, for tests and symmetry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, NoReturn

from frontd.wire.ascii import parse_decimal
from frontd.wire.errors import WireError

_SECTION: Final = "SCGI protocol.txt §3"
_SECTION_NETSTRING: Final = "SCGI protocol.txt §4 (netstrings)"

CONTENT_LENGTH: Final = b"CONTENT_LENGTH"
SCGI: Final = b"SCGI"

# §4: a netstring length is decimal; DurusWorks' SCGI description adds "must not start with a
# '0'" (except "0" itself). 10 digits already exceed any sane head.
_NETSTRING_LENGTH: Final = re.compile(rb"0|[1-9][0-9]{0,9}")
_MAX_LENGTH_DIGITS: Final = 10
_BAD_LENGTH: Final = "not 1-10 decimal digits without a leading zero, then ':'"
# A decimal CONTENT_LENGTH; 20 digits hold any 64-bit size.
_CONTENT_LENGTH_DIGITS: Final = 20

DEFAULT_MAX_HEAD_SIZE: Final = 1 << 20


def encode_request_head(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The netstring `len:NAME\\0VALUE\\0...,` for `headers` (body bytes follow it unframed).

    §3: CONTENT_LENGTH must come first (even when "0") and `SCGI: 1` must be present; it is
    inserted right after CONTENT_LENGTH when absent. Duplicate or empty names and NUL in a
    name or value raise WireError.
    """
    pairs = list(headers)
    if not pairs or pairs[0][0] != CONTENT_LENGTH:
        first = pairs[0][0] if pairs else b""
        raise WireError("SCGI header", "the first header must be CONTENT_LENGTH", first, section=_SECTION)
    # Runs for every request: one pass that only looks (`0 in name` is a memchr), the strings
    # joined once; `_check_headers` says what is wrong when anything is.
    parse_decimal(pairs[0][1], max_digits=_CONTENT_LENGTH_DIGITS, field="SCGI CONTENT_LENGTH", section=_SECTION)
    seen: set[bytes] = set()
    strings: list[bytes] = []
    scgi = False
    for name, value in pairs:
        if not name or 0 in name or 0 in value or name in seen or (name == SCGI and value != b"1"):
            _refuse(pairs)
        if name == SCGI:
            scgi = True
        seen.add(name)
        strings += (name, value)
    if not scgi:
        strings[2:2] = (SCGI, b"1")
    strings.append(b"")  # the block ends with a NUL, as every name and value does
    block = b"\x00".join(strings)
    return b"%d:%s," % (len(block), block)


def decode_request_head(
    data: bytes, max_size: int = DEFAULT_MAX_HEAD_SIZE
) -> tuple[list[tuple[bytes, bytes]], int] | None:
    """Parse the netstring at the start of `data`.

    Returns `(headers, consumed)` where `consumed` counts the bytes up to and including the
    comma (the body starts there), or None while `data` is a valid but incomplete prefix.
    Raises WireError as soon as the bytes cannot become a valid head, or when the netstring
    length exceeds `max_size`.
    """
    colon = data.find(b":", 0, _MAX_LENGTH_DIGITS + 1)
    if colon < 0:
        prefix = data[:_MAX_LENGTH_DIGITS + 1]
        # Fail early on a prefix that can never become a valid length.
        if prefix and _NETSTRING_LENGTH.fullmatch(prefix) is None:
            raise WireError("netstring length", _BAD_LENGTH, prefix, section=_SECTION_NETSTRING)
        return None
    length_bytes = data[:colon]
    if _NETSTRING_LENGTH.fullmatch(length_bytes) is None:
        raise WireError("netstring length", _BAD_LENGTH, data[: colon + 1], section=_SECTION_NETSTRING)
    length = int(length_bytes)
    if length > max_size:
        raise WireError(
            "netstring length", f"{length} exceeds the limit of {max_size}", length_bytes, section=_SECTION_NETSTRING
        )
    start = colon + 1
    end = start + length
    if len(data) <= end:
        return None
    if data[end : end + 1] != b",":
        raise WireError("netstring", "missing ',' after the header block", data[end : end + 8], section=_SECTION_NETSTRING)
    block = data[start:end]
    # §3: every name and every value is followed by a NUL, so the block ends with one and
    # holds an even number of NUL-terminated strings.
    if not block.endswith(b"\x00"):
        raise WireError("SCGI header block", "does not end with NUL", block[-16:], section=_SECTION)
    items = block[:-1].split(b"\x00")
    if len(items) % 2:
        raise WireError("SCGI header block", "a name has no value", items[-1], section=_SECTION)
    pairs = list(zip(items[0::2], items[1::2]))
    if pairs[0][0] != CONTENT_LENGTH:
        raise WireError("SCGI header", "the first header must be CONTENT_LENGTH", pairs[0][0], section=_SECTION)
    if all(name != SCGI for name, _ in pairs):
        raise WireError("SCGI header", "SCGI: 1 is missing", block[:32], section=_SECTION)
    _check_headers(pairs)
    return pairs, end + 1


def _refuse(pairs: list[tuple[bytes, bytes]]) -> NoReturn:
    _check_headers(pairs)
    raise AssertionError("_check_headers found nothing wrong")


def _check_headers(pairs: list[tuple[bytes, bytes]]) -> None:
    """§3 rules shared by both directions; pairs[0] is already known to be CONTENT_LENGTH."""
    parse_decimal(pairs[0][1], max_digits=_CONTENT_LENGTH_DIGITS, field="SCGI CONTENT_LENGTH", section=_SECTION)
    seen: set[bytes] = set()
    for name, value in pairs:
        if not name:
            raise WireError("SCGI header name", "empty", value, section=_SECTION)
        if b"\x00" in name:
            raise WireError("SCGI header name", "contains NUL", name, section=_SECTION)
        if b"\x00" in value:
            raise WireError(f"SCGI header {name!r}", "value contains NUL", value, section=_SECTION)
        if name in seen:
            raise WireError("SCGI header name", "duplicate", name, section=_SECTION)
        seen.add(name)
        if name == SCGI and value != b"1":
            raise WireError("SCGI header SCGI", "value must be '1'", value, section=_SECTION)
