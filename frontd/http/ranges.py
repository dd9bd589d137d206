"""Byte ranges (RFC 9110 §14): the Range header, Content-Range, and multipart/byteranges framing.

`parse_range` decides between 200 (None: no usable Range), 206 (the ranges) and 416
(RangeNotSatisfiable). For several ranges, `multipart_parts` gives each part's head and byte span
and the closing delimiter, and `multipart_length` their total, so the response carries a
Content-Length. Nothing here reads a file.
"""

from __future__ import annotations

import re
import secrets

from frontd.errors import RangeNotSatisfiable

# At most this many ranges after coalescing; more asks for a 200 with the whole representation.
MAX_RANGES = 16

# RFC 9110 §14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length.
_RANGE_SPEC = re.compile(rb"([0-9]+)-([0-9]*)|-([0-9]+)")
# RFC 9110 §5.6.2 token, for the range-unit.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Digits beyond this are at least 10**18 bytes: larger than any file, so the value is clamped.
_MAX_DIGITS = 18
# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace; kept to a safe subset here.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,.:=?-]{1,70}")


def parse_range(header: bytes, size: int) -> list[tuple[int, int]] | None:
    """Parse a Range field value against a representation of `size` bytes.

    Returns inclusive (first, last) pairs to send as 206, or None when the header is to be ignored
    and the whole representation sent as 200: a range-unit other than "bytes", a syntax error
    (including last-pos < first-pos), or a non-zero suffix-range of a zero-length representation
    (RFC 9110 §14.1.3: satisfiable, yet no Content-Range can describe its empty result).
    Raises RangeNotSatisfiable, carrying `Content-Range: bytes */size`, when no range is
    satisfiable (RFC 9110 §14.1.1, §15.5.17).

    Policy against amplification (RFC 9110 §14.2 allows ignoring such requests; §15.3.7.2 allows
    coalescing "regardless of the order"): overlapping and adjacent ranges are merged, so the parts
    are disjoint and their total never exceeds `size`; the remaining ranges keep the order in which
    their first member was requested. If more than MAX_RANGES ranges remain, the header is ignored
    (None): many small ranges are the mark of a broken client or a denial-of-service attempt, and
    a 200 costs no more than the file itself.
    """
    unit, sep, range_set = header.partition(b"=")
    if not sep or not _TOKEN.fullmatch(unit):
        return None
    if unit.lower() != b"bytes":
        # RFC 9110 §14.2: a server must ignore a Range with a range unit it does not understand.
        return None
    ranges: list[tuple[int, int]] = []
    any_spec = False
    nonzero_suffix = False
    # RFC 9110 §5.6.1: range-set = 1#range-spec; OWS around commas, empty elements ignored.
    for element in range_set.split(b","):
        element = element.strip(b" \t")
        if not element:
            continue
        m = _RANGE_SPEC.fullmatch(element)
        if m is None:
            return None
        any_spec = True
        first_s, last_s, suffix_s = m.groups()
        if suffix_s is not None:
            # RFC 9110 §14.1.3: the final suffix-length bytes, or all of a shorter representation;
            # a suffix-length of 0 is unsatisfiable.
            suffix = _number(suffix_s)
            if suffix > 0:
                nonzero_suffix = True
                if size > 0:
                    ranges.append((max(size - suffix, 0), size - 1))
            continue
        first = _number(first_s)
        last = _number(last_s) if last_s else None
        if last is not None and last < first:
            # RFC 9110 §14.1.1: an int-range with last-pos < first-pos is invalid.
            return None
        if first < size:
            # RFC 9110 §14.1.3: a last-pos at or beyond the end means the end.
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    if not any_spec:
        return None
    if not ranges:
        if size == 0 and nonzero_suffix:
            return None
        raise _unsatisfiable(size)
    ranges = _coalesce(ranges)
    if len(ranges) > MAX_RANGES:
        return None
    return ranges


def _number(digits: bytes) -> int:
    """A strictly-ASCII decimal; values of more than 18 significant digits are clamped to 10**18."""
    digits = digits.lstrip(b"0") or b"0"
    return 10**_MAX_DIGITS if len(digits) > _MAX_DIGITS else int(digits)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    # RFC 9110 §15.5.17: a 416 should carry Content-Range: bytes */complete-length.
    return RangeNotSatisfiable(
        f"no satisfiable range for {size} bytes",
        headers=((b"content-range", b"bytes */%d" % size),),
    )


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping and adjacent ranges, each where its earliest member was requested."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i])
    merged: list[list[int]] = []  # [first, last, index of earliest member]
    for i in order:
        first, last = ranges[i]
        if merged and first <= merged[-1][1] + 1:
            cur = merged[-1]
            cur[1] = max(cur[1], last)
            cur[2] = min(cur[2], i)
        else:
            merged.append([first, last, i])
    merged.sort(key=lambda m: m[2])
    return [(first, last) for first, last, _ in merged]


def content_range(first: int, last: int, size: int) -> bytes:
    """A Content-Range value for a 206 part (RFC 9110 §14.4): b"bytes first-last/size"."""
    return b"bytes %d-%d/%d" % (first, last, size)


def make_boundary() -> bytes:
    """A fresh random multipart boundary (RFC 2046 §5.1.1): it must not occur in the content."""
    return secrets.token_hex(16).encode("ascii")


def multipart_content_type(boundary: bytes) -> bytes:
    """The Content-Type of a multipart 206 (RFC 9110 §14.6)."""
    return b"multipart/byteranges; boundary=" + boundary


def multipart_parts(
    ranges: list[tuple[int, int]], size: int, content_type: bytes | None, boundary: bytes,
) -> tuple[list[tuple[bytes, int, int]], bytes]:
    """The framing of a multipart/byteranges body (RFC 9110 §14.6, RFC 2046 §5.1.1).

    Returns ([(head, first, last), ...], closing): send each head followed by bytes first..last
    (inclusive) of the representation, then `closing`. Each part names the representation's
    Content-Type (omitted when `content_type` is None) and its Content-Range.
    """
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"bad multipart boundary {boundary!r}")
    type_line = b"" if content_type is None else b"Content-Type: " + content_type + b"\r\n"
    parts: list[tuple[bytes, int, int]] = []
    for i, (first, last) in enumerate(ranges):
        # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the delimiter, not to the data.
        head = (b"" if i == 0 else b"\r\n") + b"--" + boundary + b"\r\n" + type_line
        head += b"Content-Range: " + content_range(first, last, size) + b"\r\n\r\n"
        parts.append((head, first, last))
    closing = b"\r\n--" + boundary + b"--\r\n"
    return parts, closing


def multipart_length(parts: list[tuple[bytes, int, int]], closing: bytes) -> int:
    """The Content-Length of the multipart body that `multipart_parts` describes."""
    return sum(len(head) + last - first + 1 for head, first, last in parts) + len(closing)
