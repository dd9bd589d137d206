"""uwsgi packets (uWSGI documentation, "The uwsgi Protocol"; no RFC), sans-IO.

A request is a 4-byte header `modifier1 (u8), datasize (u16 little-endian), modifier2 (u8)`
followed by a vars block of `u16le key_len, key, u16le val_len, val` entries, `datasize`
bytes long; the request body follows unframed. The reply is a raw HTTP/1.x response, parsed
by `frontd.wire.cgi_response.ResponseHeadParser(allow_status_line=True)`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from frontd.wire.errors import WireError

_SECTION: Final = "uwsgi protocol, packet header and vars"

UWSGI_HEADER_LEN: Final = 4
# datasize and every key/value length are u16: nothing larger can be expressed.
UWSGI_MAX_DATASIZE: Final = 0xFFFF

_HEADER = struct.Struct("<BHB")  # modifier1, datasize, modifier2
_LENGTH = struct.Struct("<H")


class UwsgiTooLarge(WireError):
    """The vars do not fit the 16-bit sizes of the packet; the caller answers 431.

    Apache's mod_proxy_uwsgi let datasize wrap here (CVE-2020-11984); we refuse instead.
    """


def encode_request(
    vars: Sequence[tuple[bytes, bytes]], modifier1: int = 0, modifier2: int = 0
) -> bytes:
    """Header plus vars block. modifier1=0, modifier2=0 is a WSGI/HTTP request.

    Raises UwsgiTooLarge when a key, a value or the whole block exceeds 65535 bytes: never a
    wrapped or truncated length (CVE-2020-11984).
    """
    if not 0 <= modifier1 <= 0xFF or not 0 <= modifier2 <= 0xFF:
        raise ValueError(f"uwsgi modifiers must be bytes, got {modifier1}, {modifier2}")
    parts: list[bytes] = []
    size = 0
    for key, value in vars:
        if len(key) > UWSGI_MAX_DATASIZE:
            raise UwsgiTooLarge("uwsgi var key", f"{len(key)} bytes > 65535", key, section=_SECTION)
        if len(value) > UWSGI_MAX_DATASIZE:
            raise UwsgiTooLarge(f"uwsgi var {key[:32]!r}", f"value {len(value)} bytes > 65535", value, section=_SECTION)
        size += 4 + len(key) + len(value)
        if size > UWSGI_MAX_DATASIZE:
            raise UwsgiTooLarge(
                "uwsgi datasize", f"vars block reaches {size} bytes > 65535 at {key[:32]!r}", key, section=_SECTION
            )
        parts += (_LENGTH.pack(len(key)), key, _LENGTH.pack(len(value)), value)
    return _HEADER.pack(modifier1, size, modifier2) + b"".join(parts)


@dataclass(frozen=True, slots=True)
class UwsgiRequest:
    """A decoded request packet header and vars block."""

    modifier1: int
    modifier2: int
    vars: list[tuple[bytes, bytes]]


def decode_request(data: bytes) -> tuple[UwsgiRequest, int] | None:
    """Parse the packet at the start of `data`, for tests and symmetry.

    Returns `(request, consumed)` (`consumed` = 4 + datasize; the body follows), or None while
    `data` is shorter than the packet. A vars block whose entries do not exactly fill
    `datasize` raises WireError.
    """
    if len(data) < UWSGI_HEADER_LEN:
        return None
    modifier1, datasize, modifier2 = _HEADER.unpack_from(data)
    end = UWSGI_HEADER_LEN + datasize
    if len(data) < end:
        return None
    pairs: list[tuple[bytes, bytes]] = []
    pos = UWSGI_HEADER_LEN
    while pos < end:
        key, pos = _read_string(data, pos, end, "key")
        value, pos = _read_string(data, pos, end, f"value of {key[:32]!r}")
        pairs.append((key, value))
    return UwsgiRequest(modifier1, modifier2, pairs), end


def _read_string(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    if end - pos < _LENGTH.size:
        raise WireError(f"uwsgi var {what}", "length cut short by datasize", data[pos:end], section=_SECTION)
    (length,) = _LENGTH.unpack_from(data, pos)
    pos += _LENGTH.size
    if end - pos < length:
        raise WireError(
            f"uwsgi var {what}", f"needs {length} bytes, datasize leaves {end - pos}", data[pos:end], section=_SECTION
        )
    return data[pos : pos + length], pos + length
