"""frontd/wire/hpack.py: the vectors of RFC 7541 Appendix C, typed by hand, and blocks that a
stateful decoder (hpack's, as h2 clients use it) reads back without touching its dynamic table."""

from __future__ import annotations

import random

import hpack
import hpack.huffman
import hpack.huffman_constants
import pytest

from frontd.wire.hpack import STATIC_TABLE, encode_block, encode_field, encode_integer, encode_string

HUFFMAN = hpack.huffman.HuffmanEncoder(hpack.huffman_constants.REQUEST_CODES,
                                       hpack.huffman_constants.REQUEST_CODES_LENGTH).encode


@pytest.mark.parametrize(("value", "prefix", "wire"), [
    (10, 5, b"\x0a"),  # C.1.1
    (1337, 5, b"\x1f\x9a\x0a"),  # C.1.2
    (42, 8, b"\x2a"),  # C.1.3
    (31, 5, b"\x1f\x00"),  # the prefix full: a zero continuation byte
])
def test_integers(value: int, prefix: int, wire: bytes) -> None:
    assert encode_integer(value, prefix) == wire


def test_literal_without_indexing_with_a_static_name() -> None:
    # C.2.2: ":path: /sample/path", literal without indexing, name index 4.
    assert encode_field(b":path", b"/sample/path") == bytes.fromhex("040c2f73616d706c652f70617468")


def test_indexed_static_fields() -> None:
    # C.2.4: ":method: GET" is index 2.
    assert encode_field(b":method", b"GET") == b"\x82"
    assert encode_field(b":status", b"200") == b"\x88"
    assert encode_field(b":status", b"404") == b"\x8d"


def test_literal_new_name_and_long_names_and_values() -> None:
    # §6.2.2 with a new name: 0x00, then the name and the value as strings.
    assert encode_field(b"x-a", b"b") == b"\x00\x03x-a\x01b"
    # Name index 54 (server) does not fit 4 bits: 0x0f then 54 - 15 = 39.
    assert encode_field(b"server", b"x") == b"\x0f\x27\x01x"
    assert encode_string(b"v" * 127) == b"\x7f\x00" + b"v" * 127
    assert encode_string(b"v" * 300)[:3] == b"\x7f\xad\x01"


def test_huffman_coded_strings() -> None:
    # C.4.1: "www.example.com", Huffman-coded.
    assert encode_string(b"www.example.com", HUFFMAN) == bytes.fromhex("8cf1e3c2e5f23a6ba0ab90f4ff")
    # C.6.1: "302" and "private", here in literals without indexing (name indices 8 and 24).
    assert encode_field(b":status", b"302", HUFFMAN) == bytes.fromhex("08826402")
    assert encode_field(b"cache-control", b"private", HUFFMAN) == bytes.fromhex("0f0985aec3771a4b")
    # Bytes with long codes: the plain string is shorter, so it is sent plain.
    assert encode_string(b"\x00\x01", HUFFMAN) == b"\x02\x00\x01"
    assert encode_string(b"", HUFFMAN) == b"\x00"


def test_the_static_table_has_61_entries() -> None:
    assert len(STATIC_TABLE) == 61
    assert STATIC_TABLE[0] == (b":authority", b"") and STATIC_TABLE[60] == (b"www-authenticate", b"")


def test_a_stateful_decoder_reads_blocks_back_and_indexes_nothing() -> None:
    rng = random.Random(7541)
    names = [name for name, _ in STATIC_TABLE] + [b"x-custom", b"a" * 200]
    decoder = hpack.Decoder()
    for _ in range(300):
        fields = [(b":status", rng.choice([b"200", b"204", b"302", b"404"]))]
        for _ in range(rng.randrange(8)):
            value = bytes(rng.randrange(0x20, 0x7f) for _ in range(rng.choice([0, 3, 126, 127, 128, 5000])))
            fields.append((rng.choice(names).lstrip(b":") or b"x", value))
        assert decoder.decode(encode_block(fields), raw=True) == fields
        assert decoder.decode(encode_block(fields, HUFFMAN), raw=True) == fields
    assert len(decoder.header_table.dynamic_entries) == 0
