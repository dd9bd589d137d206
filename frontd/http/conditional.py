"""Conditional requests (RFC 9110 §13): validators and the precondition evaluation order.

`make_etag` derives a strong entity-tag from a file's stat; `evaluate` applies If-Match,
If-Unmodified-Since, If-None-Match and If-Modified-Since in the order of RFC 9110 §13.2.2 and
says 412, 304 or "proceed"; `if_range_ok` decides whether a Range applies (§13.1.5).

Request headers come through `get(name)`, a callable taking a lower-case field name and
returning the field value (several lines joined with ", ", as `headers.get_header` does) or None.
Last-modified times are POSIX seconds; HTTP-dates have one-second resolution, so comparisons use
the whole second, the value a Last-Modified header built by `dates.http_date` carries.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

from frontd.http.dates import parse_http_date

Get = Callable[[bytes], bytes | None]

# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/";
# opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
_ENTITY_TAG = re.compile(rb'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')


def make_etag(st: os.stat_result) -> bytes:
    """A strong entity-tag from modification time (ns) and size: b'"<mtime_ns hex>-<size hex>"'.

    Strong is justified for a static file only in so far as a change within the same nanosecond
    that keeps the size is not expected; the inode is left out so that copies of a tree on several
    servers agree.
    """
    return b'"%x-%x"' % (st.st_mtime_ns, st.st_size)


def evaluate(method: str, get: Get, etag: bytes, last_modified: float) -> int | None:
    """Evaluate the preconditions of a request: 412, 304, or None to proceed (RFC 9110 §13.2.2).

    Call only when the response without preconditions would be 2xx (§13.2.1), for an existing
    representation whose validators are `etag` and `last_modified`.
    """
    is_get_or_head = method in ("GET", "HEAD")
    # Step 1: If-Match; step 2 (only without If-Match): If-Unmodified-Since.
    if_match = get(b"if-match")
    if if_match is not None:
        if not _if_match(if_match, etag):
            return 412
    else:
        if_unmodified_since = get(b"if-unmodified-since")
        if if_unmodified_since is not None:
            # §13.1.4: an invalid date is ignored; true when not modified after the date.
            date = parse_http_date(if_unmodified_since)
            if date is not None and _second(last_modified) > date:
                return 412
    # Step 3: If-None-Match; step 4 (only without If-None-Match): If-Modified-Since.
    if_none_match = get(b"if-none-match")
    if if_none_match is not None:
        if _if_none_match_matches(if_none_match, etag):
            return 304 if is_get_or_head else 412
    elif is_get_or_head:
        if_modified_since = get(b"if-modified-since")
        if if_modified_since is not None:
            # §13.1.3: an invalid date is ignored; false (304) when not modified since the date.
            date = parse_http_date(if_modified_since)
            if date is not None and _second(last_modified) <= date:
                return 304
    return None


def if_range_ok(
    value: bytes, etag: bytes, last_modified: float, *, now: float | None = None,
) -> bool:
    """Whether an If-Range condition holds, so the Range applies (RFC 9110 §13.1.5).

    An entity-tag must match `etag` by strong comparison (a weak tag never does). An HTTP-date
    must equal the Last-Modified second exactly, and is only a strong validator (§8.8.2.2) when
    the file was last modified at least a second before `now`, the response's Date; without `now`
    that check is skipped. Anything else is false: the whole representation is sent.
    Only consult this for a GET that also carries Range.
    """
    value = value.strip(b" \t")
    if value.startswith((b'"', b"W/")):
        tag = _entity_tag(value)
        ours = _entity_tag(etag)
        return tag is not None and ours is not None and _strong_match(tag, ours)
    date = parse_http_date(value)
    if date is None:
        return False
    modified = _second(last_modified)
    if now is not None and _second(now) - modified < 1:
        return False
    return date == modified


def _if_match(value: bytes, etag: bytes) -> bool:
    """§13.1.1: "*" matches any current representation; else any tag, by strong comparison."""
    if value.strip(b" \t") == b"*":
        return True
    ours = _entity_tag(etag)
    return ours is not None and any(_strong_match(tag, ours) for tag in _parse_entity_tags(value))


def _if_none_match_matches(value: bytes, etag: bytes) -> bool:
    """§13.1.2: "*" matches any current representation; else any tag, by weak comparison.

    True means the If-None-Match condition is false (the representation matches).
    """
    if value.strip(b" \t") == b"*":
        return True
    ours = _entity_tag(etag)
    return ours is not None and any(tag[1] == ours[1] for tag in _parse_entity_tags(value))


def _strong_match(a: tuple[bool, bytes], b: tuple[bool, bytes]) -> bool:
    """§8.8.3.2: strong comparison: neither is weak and the opaque-tags are identical."""
    return not a[0] and not b[0] and a[1] == b[1]


def _entity_tag(value: bytes) -> tuple[bool, bytes] | None:
    """(weak, opaque-tag) of a value that is exactly one entity-tag, else None."""
    m = _ENTITY_TAG.fullmatch(value)
    return None if m is None else (m.group(1) is not None, m.group(2))


def _parse_entity_tags(value: bytes) -> list[tuple[bool, bytes]]:
    """The (weak, opaque-tag) pairs of a #entity-tag list, up to the first malformed element.

    Not `headers.parse_list`: an opaque-tag may contain "," and "\\", so it is no quoted-string.
    A malformed element ends the list; the tags before it still count.
    """
    tags: list[tuple[bool, bytes]] = []
    pos = _skip_separators(value, 0)
    while pos < len(value):
        m = _ENTITY_TAG.match(value, pos)
        if m is None:
            break
        tags.append((m.group(1) is not None, m.group(2)))
        end = m.end()
        pos = _skip_separators(value, end)
        if pos < len(value) and b"," not in value[end:pos]:
            break  # two tags without a comma between them
    return tags


def _skip_separators(value: bytes, pos: int) -> int:
    """The index after any OWS and commas from `pos` (§5.6.1: empty list elements are allowed)."""
    while pos < len(value) and value[pos] in b" \t,":
        pos += 1
    return pos


def _second(ts: float) -> int:
    """The whole second of a timestamp: what an HTTP-date can express."""
    return math.floor(ts)
