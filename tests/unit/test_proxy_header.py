"""frontd.protocol.proxy_header: PROXY protocol v1 and v2, vectors typed from proxy-protocol.txt."""

from __future__ import annotations

import random

import pytest

from frontd.protocol.proxy_header import ProxyHeader, header_length, parse
from frontd.wire.errors import WireError

# §2.1, the example of a whole connection: the header, then the proxied protocol.
V1_TCP4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
V1_TCP4_REQUEST = V1_TCP4 + b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
# §2.1, the worst cases of each form.
V1_TCP4_MAX = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
V1_TCP6_MAX = (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
               b"65535 65535\r\n")
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
V1_UNKNOWN_MAX = (b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                  b"65535 65535\r\n")

SIG = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"  # §2.2, as the text spells it
# §2.2: \x21 = version 2, PROXY; \x11 = AF_INET, STREAM; len 12; 192.0.2.1:56324 -> 192.0.2.2:443.
V2_TCP4 = SIG + b"\x21\x11\x00\x0c" + b"\xc0\x00\x02\x01" + b"\xc0\x00\x02\x02" + b"\xdc\x04" + b"\x01\xbb"
# \x21 PROXY, \x21 = AF_INET6, STREAM; len 36; [2001:db8::1]:4711 -> [2001:db8::2]:80.
V2_TCP6 = (SIG + b"\x21\x21\x00\x24"
           + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
           + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02"
           + b"\x12\x67" + b"\x00\x50")
# §2.2: \x20 = LOCAL (a health check); the family is ignored, the real endpoints kept.
V2_LOCAL = SIG + b"\x20\x00\x00\x00"
V2_LOCAL_WITH_ADDRESSES = SIG + b"\x20\x11\x00\x0c" + b"\x0a\x00\x00\x01" * 2 + b"\x00\x50" * 2
# \x21 PROXY with AF_UNSPEC (\x00): "the receiver should ignore address information".
V2_UNSPEC = SIG + b"\x21\x00\x00\x00"
# TCP4 plus §2.2.7 TLVs: PP2_TYPE_ALPN (0x01) "h2", PP2_TYPE_AUTHORITY (0x02) "example.test",
# PP2_TYPE_NOOP (0x04) empty, and PP2_TYPE_SSL (0x20) with its client/verify/sub-TLV.
TLVS = (b"\x01\x00\x02h2" + b"\x02\x00\x0cexample.test" + b"\x04\x00\x00"
        + b"\x20\x00\x0e" + b"\x07" + b"\x00\x00\x00\x00" + b"\x21\x00\x06TLSv13")
V2_TCP4_TLVS = (SIG + b"\x21\x11" + (12 + len(TLVS)).to_bytes(2, "big")
                + b"\xc0\x00\x02\x01" + b"\xc0\x00\x02\x02" + b"\xdc\x04" + b"\x01\xbb" + TLVS)
# AF_UNIX (\x31): 108-byte paths each; the connection's endpoints are kept.
V2_UNIX = SIG + b"\x21\x31\x00\xd8" + b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")

CLIENT4 = ProxyHeader(2, "PROXY", ("192.0.2.1", 56324), ("192.0.2.2", 443))

GOOD = [
    (V1_TCP4, ProxyHeader(1, "PROXY", ("192.168.0.1", 56324), ("192.168.0.11", 443))),
    (V1_TCP4_MAX, ProxyHeader(1, "PROXY", ("255.255.255.255", 65535), ("255.255.255.255", 65535))),
    (V1_TCP6_MAX, ProxyHeader(1, "PROXY", ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                              ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535))),
    (V1_UNKNOWN, ProxyHeader(1, "PROXY")),
    (V1_UNKNOWN_MAX, ProxyHeader(1, "PROXY")),
    (V2_TCP4, CLIENT4),
    (V2_TCP6, ProxyHeader(2, "PROXY", ("2001:db8::1", 4711), ("2001:db8::2", 80))),
    (V2_LOCAL, ProxyHeader(2, "LOCAL")),
    (V2_LOCAL_WITH_ADDRESSES, ProxyHeader(2, "LOCAL")),
    (V2_UNSPEC, ProxyHeader(2, "PROXY")),
    (V2_TCP4_TLVS, CLIENT4),
    (V2_UNIX, ProxyHeader(2, "PROXY")),
]


@pytest.mark.parametrize(("header", "expected"), GOOD)
def test_whole_header(header: bytes, expected: ProxyHeader) -> None:
    assert header_length(header) == len(header)
    assert parse(header) == expected


def test_spec_lengths() -> None:
    # §2.1: 56, 104, 15 and 107 bytes are the stated sizes.
    assert [len(h) for h in (V1_TCP4_MAX, V1_TCP6_MAX, V1_UNKNOWN, V1_UNKNOWN_MAX)] == [56, 104, 15, 107]


@pytest.mark.parametrize(("header", "expected"), GOOD)
def test_byte_by_byte(header: bytes, expected: ProxyHeader) -> None:
    """Fed one byte at a time, the length is unknown (None) until it can be told, never wrong."""
    for n in range(len(header)):
        length = header_length(header[:n])
        assert length is None or length == len(header)
    assert parse(header[:header_length(header)]) == expected  # type: ignore[index]


def test_trailing_bytes_are_left_alone() -> None:
    length = header_length(V1_TCP4_REQUEST)
    assert length == len(V1_TCP4)
    assert V1_TCP4_REQUEST[length:] == b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    assert header_length(V2_TCP4 + tls_hello) == len(V2_TCP4)


def test_ipv4_mapped_source_is_ipv4() -> None:
    header = (SIG + b"\x21\x21\x00\x24" + b"\x00" * 10 + b"\xff\xff\xc0\x00\x02\x07"
              + b"\x00" * 15 + b"\x01" + b"\x00\x50\x00\x50")
    assert parse(header).source == ("192.0.2.7", 80)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",  # HTTP straight away
    b"\x16\x03\x01",  # a TLS ClientHello
    b"\r\n\r\nGET",  # not the v2 signature
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  # bare LF
    b"PROXY " + b"A" * 120,  # no CRLF within 107 bytes
])
def test_not_a_header_start(data: bytes) -> None:
    with pytest.raises(WireError):
        header_length(data)


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",  # a port missing
    b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",  # two spaces
    b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n",  # IPv6 under TCP4
    b"PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n",  # IPv4 under TCP6
    b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  # leading zero
    b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",  # out of range
    b"PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 \xd9\xa1 443\r\n",  # non-ASCII digit
    b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY \r\n",
])
def test_bad_v1(line: bytes) -> None:
    assert header_length(line) == len(line)
    with pytest.raises(WireError):
        parse(line)


@pytest.mark.parametrize("header", [
    SIG + b"\x11\x11\x00\x0c" + V2_TCP4[16:],  # version 1 in the binary form
    SIG + b"\x22\x11\x00\x0c" + V2_TCP4[16:],  # command 2
    SIG + b"\x21\x41\x00\x0c" + V2_TCP4[16:],  # family 4
    SIG + b"\x21\x13\x00\x0c" + V2_TCP4[16:],  # protocol 3
    SIG + b"\x21\x11\x00\x08" + V2_TCP4[16:24],  # address block too short for AF_INET
    SIG + b"\x21\x21\x00\x0c" + V2_TCP4[16:],  # AF_INET6 with an AF_INET block
    SIG + b"\x21\x11\x00\x0f" + V2_TCP4[16:] + b"\x01\x00\x05",  # a TLV past the end
    SIG + b"\x21\x11\x00\x0e" + V2_TCP4[16:] + b"\x01\x00",  # a TLV header cut short
])
def test_bad_v2(header: bytes) -> None:
    assert header_length(header) == len(header)
    with pytest.raises(WireError):
        parse(header)


def test_seeded_random_input() -> None:
    """Random bytes, and random mutations of good headers: a length, None or WireError; then a
    header or WireError. Nothing else."""
    rng = random.Random(16)
    samples = [rng.randbytes(rng.randrange(0, 140)) for _ in range(2000)]
    for header, _ in GOOD:
        for _ in range(200):
            mutated = bytearray(header)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            samples.append(bytes(mutated))
    for data in samples:
        try:
            length = header_length(data)
        except WireError:
            continue
        if length is None or length > len(data):
            continue
        try:
            assert isinstance(parse(data[:length]), ProxyHeader)
        except WireError:
            pass
