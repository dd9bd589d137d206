"""What every client protocol checks in a handler's response the same way, as pure functions."""

from __future__ import annotations

import re

from frontd.errors import error_for_status

_DIGITS = re.compile(rb"[0-9]{1,18}")


def check_status(status: int) -> None:
    """Only final statuses go out as a response; anything else from a backend is a 502."""
    if not 200 <= status <= 599:
        raise error_for_status(502, f"cannot send status {status} as a response")


def declared_length(value: bytes, length: int | None) -> int:
    """A Content-Length field value: digits only (RFC 9110 §8.6), and equal to any given before."""
    if not _DIGITS.fullmatch(value) or (length is not None and int(value) != length):
        raise error_for_status(502, f"invalid Content-Length {value[:40]!r}")
    return int(value)
