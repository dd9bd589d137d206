"""SCGI request head: vectors typed by hand from protocol.txt (Schemenauer, 2008-06-23)."""

from __future__ import annotations

import pytest

from frontd.wire.errors import WireError
from frontd.wire.scgi import decode_request_head, encode_request_head

# SCGI protocol.txt, section 3: the whole request.
SCGI = (
    b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00"
    b"REQUEST_URI\x00/deepthought\x00,What is the answer to life?"
)
HEAD_LEN = 3 + 70 + 1  # "70:" + block + ","
HEADERS = [
    (b"CONTENT_LENGTH", b"27"),
    (b"SCGI", b"1"),
    (b"REQUEST_METHOD", b"POST"),
    (b"REQUEST_URI", b"/deepthought"),
]


def test_vector_lengths() -> None:
    assert SCGI[HEAD_LEN - 1 : HEAD_LEN] == b","
    assert SCGI[HEAD_LEN:] == b"What is the answer to life?"
    assert len(SCGI[HEAD_LEN:]) == 27


def test_encode_protocol_txt_example() -> None:
    assert encode_request_head(HEADERS) == SCGI[:HEAD_LEN]


def test_encode_inserts_scgi_after_content_length() -> None:
    without = [HEADERS[0], HEADERS[2], HEADERS[3]]
    assert encode_request_head(without) == SCGI[:HEAD_LEN]


def test_encode_content_length_zero_and_scgi_elsewhere() -> None:
    # §3: CONTENT_LENGTH is sent even when 0; SCGI may appear anywhere after it.
    assert encode_request_head([(b"CONTENT_LENGTH", b"0"), (b"A", b""), (b"SCGI", b"1")]) == (
        b"27:CONTENT_LENGTH\x000\x00A\x00\x00SCGI\x001\x00,"
    )


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"SCGI", b"1"), (b"CONTENT_LENGTH", b"0")],  # CONTENT_LENGTH not first
        [(b"REQUEST_METHOD", b"GET")],  # CONTENT_LENGTH absent
        [(b"CONTENT_LENGTH", b"")],
        [(b"CONTENT_LENGTH", b" 27")],
        [(b"CONTENT_LENGTH", b"+27")],
        [(b"CONTENT_LENGTH", b"2_7")],
        [(b"CONTENT_LENGTH", b"27\n")],
        [(b"CONTENT_LENGTH", b"-1")],
        [(b"CONTENT_LENGTH", "٢٧".encode())],  # Arabic-Indic digits: int() would accept them
        [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"2")],
        [(b"CONTENT_LENGTH", b"0"), (b"A", b"1"), (b"A", b"2")],  # duplicate
        [(b"CONTENT_LENGTH", b"0"), (b"CONTENT_LENGTH", b"0")],
        [(b"CONTENT_LENGTH", b"0"), (b"", b"x")],  # empty name
        [(b"CONTENT_LENGTH", b"0"), (b"A\x00B", b"x")],  # NUL in a name
        [(b"CONTENT_LENGTH", b"0"), (b"A", b"x\x00y")],  # NUL in a value
    ],
)
def test_encode_refuses(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(WireError, match="SCGI protocol.txt"):
        encode_request_head(headers)


def test_decode_whole_with_body_left_untouched() -> None:
    assert decode_request_head(SCGI) == (HEADERS, HEAD_LEN)


def test_decode_byte_by_byte() -> None:
    for end in range(HEAD_LEN):
        assert decode_request_head(SCGI[:end]) is None, end
    assert decode_request_head(SCGI[:HEAD_LEN]) == (HEADERS, HEAD_LEN)


def test_decode_minimal_and_max_size_boundary() -> None:
    head = b"27:CONTENT_LENGTH\x000\x00SCGI\x001\x00A\x00\x00,"
    assert decode_request_head(head) == ([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1"), (b"A", b"")], 31)
    assert decode_request_head(head, max_size=27) is not None
    with pytest.raises(WireError, match="limit"):
        decode_request_head(head, max_size=26)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"x", "1-10 decimal digits"),  # not a digit: fails before any ':'
        (b"01", "1-10 decimal digits"),  # leading zero: fails before any ':'
        (b"12345678901", "1-10 decimal digits"),  # eleven digits
        (b"070:", "1-10 decimal digits"),
        (b"00:", "1-10 decimal digits"),
        (b"7a:", "1-10 decimal digits"),
        (b"-1:", "1-10 decimal digits"),
        (b" 7:", "1-10 decimal digits"),
        (b"+7:", "1-10 decimal digits"),
        (b":", "1-10 decimal digits"),
        (b"0:,", "does not end with NUL"),  # empty block: no CONTENT_LENGTH
        (b"4:A\x00B\x00;", "missing ','"),
        (b"3:A\x00B,", "does not end with NUL"),
        (b"2:A\x00,", "a name has no value"),
        (b"4:A\x00B\x00,", "first header must be CONTENT_LENGTH"),
        (b"17:CONTENT_LENGTH\x000\x00,", "SCGI: 1 is missing"),
        (b"24:CONTENT_LENGTH\x00x\x00SCGI\x001\x00,", "ASCII digits"),
        (b"24:CONTENT_LENGTH\x000\x00SCGI\x002\x00,", "must be '1'"),
        (b"31:CONTENT_LENGTH\x000\x00SCGI\x001\x00SCGI\x001\x00,", "duplicate"),
        (b"26:CONTENT_LENGTH\x000\x00SCGI\x001\x00\x00\x00,", "empty"),
    ],
)
def test_decode_refuses(data: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        decode_request_head(data)


def test_decode_valid_prefixes_wait() -> None:
    assert decode_request_head(b"") is None
    assert decode_request_head(b"0") is None
    assert decode_request_head(b"1234567890") is None
    assert decode_request_head(b"70:CONTENT") is None
