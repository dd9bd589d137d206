"""HPACK (RFC 7541) encoding of response header lists that touches no dynamic table.

Each field is an index into the static table when name and value are both there (§6.1), else a
"literal header field without indexing" (§6.2.2) whose name is a static index when it has one;
a string is Huffman-coded when a coder is given and that makes it shorter (§5.2). Such a block
changes neither side's dynamic table, so it needs no encoder state and can be mixed freely with
blocks from a stateful encoder on the same connection, as long as that encoder's pending table
size updates (§4.2) go first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# A Huffman coder (RFC 7541 §5.2, Appendix B): the code of a string, padded to whole bytes.
Huffman = Callable[[bytes], bytes]

# RFC 7541 Appendix A: the static table, index 1 to 61.
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """§5.1: `value` in an N-bit prefix, the first byte's other bits taken from `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(value: bytes, huffman: Huffman | None = None) -> bytes:
    """§5.2: a string literal, Huffman-coded (H = 1) when `huffman` makes it shorter."""
    if huffman is not None and value:
        coded = huffman(value)
        if len(coded) < len(value):
            return encode_integer(len(coded), 7, 0x80) + coded
    n = len(value)
    return (bytes((n,)) if n < 127 else encode_integer(n, 7)) + value


# §6.1: an indexed field, for each (name, value) the static table holds whole (the first index
# of a repeated one).
_INDEXED: dict[tuple[bytes, bytes], bytes] = {}
# §6.2.2: the start of a literal field without indexing whose name is a static index.
_NAMED: dict[bytes, bytes] = {}
for _index, (_name, _value) in enumerate(STATIC_TABLE, 1):
    _INDEXED.setdefault((_name, _value), encode_integer(_index, 7, 0x80))
    _NAMED.setdefault(_name, encode_integer(_index, 4))
del _index, _name, _value


def encode_field(name: bytes, value: bytes, huffman: Huffman | None = None) -> bytes:
    """One field: a static index, or a literal without indexing. `name` is in lower case."""
    indexed = _INDEXED.get((name, value))
    if indexed is not None:
        return indexed
    head = _NAMED.get(name)
    if head is None:
        head = b"\x00" + encode_string(name, huffman)
    return head + encode_string(value, huffman)


def encode_block(fields: Iterable[tuple[bytes, bytes]], huffman: Huffman | None = None) -> bytes:
    """A header block: pseudo-header fields must come first in `fields` (RFC 9113 §8.3)."""
    return b"".join([encode_field(name, value, huffman) for name, value in fields])
