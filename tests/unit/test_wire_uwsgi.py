"""uwsgi request packets: vectors typed by hand from the uWSGI protocol documentation."""

from __future__ import annotations

import pytest

from frontd.wire.errors import WireError
from frontd.wire.uwsgi import UwsgiRequest, UwsgiTooLarge, decode_request, encode_request

VARS = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]
# modifier1 0, datasize 35 = 0x0023 little-endian, modifier2 0; then u16le-prefixed strings:
# 2+14 + 2+3 + 2+9 + 2+1 = 35.
PACKET = (
    b"\x00\x23\x00\x00"
    b"\x0e\x00REQUEST_METHOD\x03\x00GET"
    b"\x09\x00PATH_INFO\x01\x00/"
)


def test_vector_length() -> None:
    assert len(PACKET) == 4 + 35


def test_encode_vector() -> None:
    assert encode_request(VARS) == PACKET


def test_encode_modifiers_and_empty_vars() -> None:
    assert encode_request([], modifier1=5, modifier2=7) == b"\x05\x00\x00\x07"


def test_encode_lengths_are_little_endian() -> None:
    # datasize 2+1+2+300 = 305 = 0x0131; value length 300 = 0x012c.
    assert encode_request([(b"K", b"v" * 300)]) == b"\x00\x31\x01\x00" + b"\x01\x00K\x2c\x01" + b"v" * 300


def test_block_of_exactly_65535_bytes_is_allowed() -> None:
    value = b"v" * (65535 - 2 - 1 - 2)
    packet = encode_request([(b"K", value)])
    assert packet[:4] == b"\x00\xff\xff\x00"
    assert packet[4:9] == b"\x01\x00K\xfa\xff"  # 65530 = 0xfffa
    assert len(packet) == 4 + 65535


@pytest.mark.parametrize(
    "vars",
    [
        [(b"K", b"v" * (65535 - 2 - 1 - 2 + 1))],  # block of 65536
        [(b"K" * 65536, b"")],  # key over 16 bits
        [(b"K", b"v" * 65536)],  # value over 16 bits
        [(b"HTTP_X_%d" % i, b"a" * 1000) for i in range(70)],  # 70 KB of headers
    ],
)
def test_too_large_never_wraps(vars: list[tuple[bytes, bytes]]) -> None:
    # CVE-2020-11984: mod_proxy_uwsgi let the 16-bit datasize wrap; we refuse (→ 431).
    with pytest.raises(UwsgiTooLarge) as caught:
        encode_request(vars)
    assert isinstance(caught.value, WireError)


def test_bad_modifiers_are_caller_bugs() -> None:
    with pytest.raises(ValueError):
        encode_request([], modifier1=256)
    with pytest.raises(ValueError):
        encode_request([], modifier2=-1)


def test_decode_whole_with_body_left_untouched() -> None:
    assert decode_request(PACKET + b"body bytes") == (UwsgiRequest(0, 0, VARS), len(PACKET))


def test_decode_byte_by_byte() -> None:
    for end in range(len(PACKET)):
        assert decode_request(PACKET[:end]) is None, end
    assert decode_request(PACKET) == (UwsgiRequest(0, 0, VARS), len(PACKET))


def test_decode_modifiers_and_empty_value() -> None:
    assert decode_request(b"\x05\x05\x00\x07\x01\x00K\x00\x00") == (
        UwsgiRequest(5, 7, [(b"K", b"")]),
        9,
    )


@pytest.mark.parametrize(
    "packet",
    [
        b"\x00\x01\x00\x00\x01",  # a key length cut short by datasize
        b"\x00\x03\x00\x00\x05\x00K",  # key of 5 in a block of 3
        b"\x00\x04\x00\x00\x01\x00K\x01",  # value length cut short
        b"\x00\x06\x00\x00\x01\x00K\x02\x00v",  # value of 2, 1 left
    ],
)
def test_decode_entries_must_fill_datasize_exactly(packet: bytes) -> None:
    with pytest.raises(WireError, match="uwsgi var"):
        decode_request(packet + b"trailing")
