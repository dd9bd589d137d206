"""frontd/protocol/http2.py's RepeatingDecoder: a block of indexed fields seen before decodes
as before, until the dynamic table changes (RFC 7541 §6.1, §6.2.1, §6.3)."""

from __future__ import annotations

import hpack
import pytest

from frontd.protocol.http2 import MAX_REPEATED_BLOCK, MAX_REPEATED_BLOCKS, RepeatingDecoder

INDEX_62 = b"\xbe"  # §6.1: indexed field 62, the newest entry of the dynamic table


def test_repeated_block_follows_the_dynamic_table() -> None:
    encoder, decoder = hpack.Encoder(), RepeatingDecoder()
    # §6.2.1: a literal with incremental indexing puts x-a at index 62.
    assert decoder.decode(encoder.encode([(b"x-a", b"1")]), raw=True) == [(b"x-a", b"1")]
    assert decoder.decode(b"\x82" + INDEX_62, raw=True) == [(b":method", b"GET"), (b"x-a", b"1")]
    assert decoder.decode(b"\x82" + INDEX_62, raw=True) == [(b":method", b"GET"), (b"x-a", b"1")]
    # x-b takes index 62, x-a moves to 63: the same bytes now name x-b.
    assert decoder.decode(encoder.encode([(b"x-b", b"2")]), raw=True) == [(b"x-b", b"2")]
    assert decoder.decode(b"\x82" + INDEX_62, raw=True) == [(b":method", b"GET"), (b"x-b", b"2")]
    # §6.3: a table size update to 0 empties the table; index 62 no longer exists.
    assert decoder.decode(b"\x20\x82", raw=True) == [(b":method", b"GET")]
    with pytest.raises(hpack.HPACKError):
        decoder.decode(INDEX_62, raw=True)


def test_remembers_a_bounded_number_of_short_blocks() -> None:
    decoder = RepeatingDecoder()
    for index in range(1, 62):
        decoder.decode(bytes((0x80 | index, 0x82)), raw=True)
    assert 0 < len(decoder._repeats) <= MAX_REPEATED_BLOCKS
    decoder._repeats.clear()
    assert len(decoder.decode(b"\x82" * (MAX_REPEATED_BLOCK + 1), raw=True)) == MAX_REPEATED_BLOCK + 1
    assert not decoder._repeats
