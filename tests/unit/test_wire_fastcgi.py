"""FastCGI 1.0 codec: vectors typed by hand from the specification (Open Market, 1996)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from frontd.wire import fastcgi
from frontd.wire.errors import WireError
from frontd.wire.fastcgi import (
    NEED_DATA,
    EndRequest,
    FastCGIResponseDecoder,
    OtherRequest,
    Stderr,
    Stdout,
    decode_params,
    encode_abort_request,
    encode_begin_request,
    encode_params,
    encode_record,
    encode_stdin,
)

# FastCGI 1.0, appendix B, example 2: PARAMS split inside a name ("SER" | "VER_ADDR").
PARAMS = [b"\x0b\x02SERVER_PORT80\x0b\x0eSER", b"VER_ADDR199.170.183.42"]
PAIRS = [(b"SERVER_PORT", b"80"), (b"SERVER_ADDR", b"199.170.183.42")]

# FastCGI 1.0, appendix B, example 3, the application's records, with the padding a sender
# might choose (2, 3, 0 bytes) so that the decoder has to skip it (§3.3 "Padding").
STDOUT_1 = b"\x01\x06\x00\x01\x00\x1e\x02\x00" + b"Content-type: text/html\r\n\r\n<ht" + b"\x00\x00"
STDERR_1 = b"\x01\x07\x00\x01\x00\x1d\x03\x00" + b"config error: missing SI_UID\n" + b"\x00\x00\x00"
STDOUT_2 = b"\x01\x06\x00\x01\x00\x0f\x00\x00" + b"ml>\n<head> ... "
STDOUT_END = b"\x01\x06\x00\x01\x00\x00\x00\x00"
STDERR_END = b"\x01\x07\x00\x01\x00\x00\x00\x00"
# {FCGI_END_REQUEST, 1, {938, FCGI_REQUEST_COMPLETE}}: appStatus 938 = 0x000003aa.
END_938 = b"\x01\x03\x00\x01\x00\x08\x00\x00" + b"\x00\x00\x03\xaa\x00\x00\x00\x00"
EXAMPLE_3 = STDOUT_1 + STDERR_1 + STDOUT_2 + STDOUT_END + STDERR_END + END_938
EXAMPLE_3_EVENTS = [
    Stdout(b"Content-type: text/html\r\n\r\n<ht"),
    Stderr(b"config error: missing SI_UID\n"),
    Stdout(b"ml>\n<head> ... "),
    EndRequest(938, fastcgi.FCGI_REQUEST_COMPLETE),
]


def test_hand_typed_lengths_match_their_headers() -> None:
    # Guard against typos in the vectors above: contentLength and paddingLength add up.
    for record in (STDOUT_1, STDERR_1, STDOUT_2, STDOUT_END, STDERR_END, END_938):
        assert len(record) == 8 + record[4] * 256 + record[5] + record[6]


def test_constants_from_section_8() -> None:
    assert fastcgi.FCGI_VERSION_1 == 1
    assert [
        fastcgi.FCGI_BEGIN_REQUEST,
        fastcgi.FCGI_ABORT_REQUEST,
        fastcgi.FCGI_END_REQUEST,
        fastcgi.FCGI_PARAMS,
        fastcgi.FCGI_STDIN,
        fastcgi.FCGI_STDOUT,
        fastcgi.FCGI_STDERR,
        fastcgi.FCGI_DATA,
        fastcgi.FCGI_GET_VALUES,
        fastcgi.FCGI_GET_VALUES_RESULT,
        fastcgi.FCGI_UNKNOWN_TYPE,
    ] == list(range(1, 12))
    assert (fastcgi.FCGI_RESPONDER, fastcgi.FCGI_AUTHORIZER, fastcgi.FCGI_FILTER) == (1, 2, 3)
    assert fastcgi.FCGI_KEEP_CONN == 1
    assert (
        fastcgi.FCGI_REQUEST_COMPLETE,
        fastcgi.FCGI_CANT_MPX_CONN,
        fastcgi.FCGI_OVERLOADED,
        fastcgi.FCGI_UNKNOWN_ROLE,
    ) == (0, 1, 2, 3)
    assert fastcgi.FCGI_MAX_RECORD_LEN == 8 + 65535 + 255


# --------------------------------------------------------------------------- encoders


def test_begin_request_responder() -> None:
    # {FCGI_BEGIN_REQUEST, 1, {FCGI_RESPONDER, 0}} (appendix B, example 1).
    assert encode_begin_request(1) == (
        b"\x01\x01\x00\x01\x00\x08\x00\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00"
    )


def test_begin_request_keep_conn_and_role() -> None:
    # {FCGI_BEGIN_REQUEST, 2, {FCGI_RESPONDER, FCGI_KEEP_CONN}} (appendix B, example 4).
    assert encode_begin_request(2, keep_conn=True) == (
        b"\x01\x01\x00\x02\x00\x08\x00\x00" + b"\x00\x01\x01\x00\x00\x00\x00\x00"
    )
    assert encode_begin_request(0x0102, role=fastcgi.FCGI_AUTHORIZER) == (
        b"\x01\x01\x01\x02\x00\x08\x00\x00" + b"\x00\x02\x00\x00\x00\x00\x00\x00"
    )


def test_params_example_pairs_then_empty_record() -> None:
    # The two pairs of example 1/2 in one record: 42 content bytes padded by 6 to 48 (§3.3),
    # then {FCGI_PARAMS, 1, ""} ending the stream (§5.2).
    assert encode_params(1, PAIRS) == (
        b"\x01\x04\x00\x01\x00\x2a\x06\x00"
        + b"\x0b\x02SERVER_PORT80\x0b\x0eSERVER_ADDR199.170.183.42"
        + b"\x00" * 6
        + b"\x01\x04\x00\x01\x00\x00\x00\x00"
    )


def test_params_empty_is_only_the_terminator() -> None:
    assert encode_params(3, []) == b"\x01\x04\x00\x03\x00\x00\x00\x00"


def test_params_length_127_is_one_byte_128_is_four() -> None:
    # §3.4: lengths <= 127 in one byte; longer in four with the high bit set.
    assert encode_params(1, [(b"X", b"v" * 127)]) == (
        b"\x01\x04\x00\x01\x00\x82\x06\x00"
        + b"\x01\x7fX"
        + b"v" * 127
        + b"\x00" * 6
        + b"\x01\x04\x00\x01\x00\x00\x00\x00"
    )
    assert encode_params(1, [(b"X", b"v" * 128)]) == (
        b"\x01\x04\x00\x01\x00\x86\x02\x00"
        + b"\x01\x80\x00\x00\x80X"
        + b"v" * 128
        + b"\x00" * 2
        + b"\x01\x04\x00\x01\x00\x00\x00\x00"
    )


def test_params_over_65535_bytes_split_across_records() -> None:
    # 70000 = 0x11170: the pair is 6 + 70000 = 70006 bytes, cut after 65535; the rest is
    # 4471 = 0x1177 bytes, padded by 1.
    stream = b"\x01\x80\x01\x11\x70A" + b"x" * 70000
    assert encode_params(1, [(b"A", b"x" * 70000)]) == (
        b"\x01\x04\x00\x01\xff\xff\x01\x00"
        + stream[:65535]
        + b"\x00"
        + b"\x01\x04\x00\x01\x11\x77\x01\x00"
        + stream[65535:]
        + b"\x00"
        + b"\x01\x04\x00\x01\x00\x00\x00\x00"
    )


def test_params_split_inside_a_name_decodes_back() -> None:
    # 65600 = 0x10040: the first record ends inside the name.
    name = b"N" * 65600
    encoded = encode_params(1, [(name, b"v")])
    contents = _split_records(encoded)
    assert [c[0] for c in contents] == [fastcgi.FCGI_PARAMS] * 3
    assert [len(c[2]) for c in contents] == [65535, 5 + 65600 + 1 - 65535, 0]
    assert contents[0][2].startswith(b"\x80\x01\x00\x40\x01NNN")
    assert decode_params(b"".join(c[2] for c in contents)) == [(name, b"v")]


@pytest.mark.parametrize(
    "pairs",
    [[(b"", b"x")], [(b"A\x00B", b"x")], [(b"SCRIPT_FILENAME", b"/x.php\x00.jpg")]],
)
def test_params_refuse_empty_names_and_nul(pairs: list[tuple[bytes, bytes]]) -> None:
    # §6.1: values carry no NUL; an application reading C strings would truncate.
    with pytest.raises(WireError, match="§6.1"):
        encode_params(1, pairs)


def test_stdin_records_and_terminator() -> None:
    # {FCGI_STDIN, 1, "quantity=100&item=3047936"} {FCGI_STDIN, 1, ""} (appendix B, example 2).
    assert encode_stdin(1, b"quantity=100&item=3047936") == (
        b"\x01\x05\x00\x01\x00\x19\x07\x00" + b"quantity=100&item=3047936" + b"\x00" * 7
    )
    assert encode_stdin(1, b"") == b"\x01\x05\x00\x01\x00\x00\x00\x00"


def test_stdin_splits_at_65535_and_request_id_is_big_endian() -> None:
    assert encode_stdin(0x0102, b"a" * 65536) == (
        b"\x01\x05\x01\x02\xff\xff\x01\x00"
        + b"a" * 65535
        + b"\x00"
        + b"\x01\x05\x01\x02\x00\x01\x07\x00"
        + b"a"
        + b"\x00" * 7
    )


def test_abort_request() -> None:
    assert encode_abort_request(1) == b"\x01\x02\x00\x01\x00\x00\x00\x00"


def test_encode_record_explicit_padding_and_management_id() -> None:
    assert encode_record(fastcgi.FCGI_GET_VALUES, 0, b"\x0e\x00FCGI_MAX_CONNS", padding=0) == (
        b"\x01\x09\x00\x00\x00\x10\x00\x00" + b"\x0e\x00FCGI_MAX_CONNS"
    )
    assert encode_record(fastcgi.FCGI_STDIN, 1, b"ab", padding=3) == b"\x01\x05\x00\x01\x00\x02\x03\x00ab\x00\x00\x00"


def test_every_encoded_record_is_8_byte_aligned() -> None:
    for size in range(0, 40):
        assert len(encode_stdin(1, b"z" * size)) % 8 == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_begin_request(0),
        lambda: encode_begin_request(65536),
        lambda: encode_stdin(0, b"x"),
        lambda: encode_params(0, []),
        lambda: encode_abort_request(-1),
        lambda: encode_record(256, 1),
        lambda: encode_record(6, 1, b"x" * 65536),
        lambda: encode_record(6, 1, b"x", padding=256),
        lambda: FastCGIResponseDecoder(0),
    ],
)
def test_out_of_range_arguments_are_caller_bugs(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- decode_params


def test_decode_params_example_2_split_inside_a_name() -> None:
    assert decode_params(b"".join(PARAMS)) == PAIRS


def test_decode_params_four_byte_lengths() -> None:
    # FCGI_NameValuePair14 and FCGI_NameValuePair41 (§3.4); 300 = 0x12c, 128 = 0x80.
    assert decode_params(b"\x04\x80\x00\x01\x2cNAME" + b"v" * 300) == [(b"NAME", b"v" * 300)]
    assert decode_params(b"\x80\x00\x00\x80\x00" + b"n" * 128) == [(b"n" * 128, b"")]
    # A short length may still be sent in four bytes; the top bit selects the encoding.
    assert decode_params(b"\x80\x00\x00\x01\x80\x00\x00\x01ab") == [(b"a", b"b")]


@pytest.mark.parametrize(
    "data",
    [
        b"\x0b\x02SERVER_PORT8",  # value cut short
        b"\x0b",  # valueLength missing
        b"\x80\x00\x01",  # four-byte nameLength cut short
        b"\x01\x80\x00",  # four-byte valueLength cut short
        b"\x7f\x00abc",  # name cut short
    ],
)
def test_decode_params_truncated(data: bytes) -> None:
    with pytest.raises(WireError, match="§3.4"):
        decode_params(data)


# --------------------------------------------------------------------------- response decoder


def _events(decoder: FastCGIResponseDecoder) -> list[object]:
    events: list[object] = []
    while not decoder.ended:
        event = decoder.next_event()
        if event is NEED_DATA:
            break
        events.append(event)
    return events


def test_decode_example_3_whole() -> None:
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(EXAMPLE_3)
    assert _events(decoder) == EXAMPLE_3_EVENTS
    assert decoder.ended
    assert decoder.trailing_data == b""
    decoder.eof()


def test_decode_example_3_byte_by_byte() -> None:
    decoder = FastCGIResponseDecoder(1)
    events: list[object] = []
    for i in range(len(EXAMPLE_3)):
        decoder.receive_data(EXAMPLE_3[i : i + 1])
        events += _events(decoder)
    assert events == EXAMPLE_3_EVENTS
    assert decoder.trailing_data == b""


def test_decode_leaves_trailing_bytes_untouched() -> None:
    trailing = b"\x01\x06\x00\x02garbage-that-is-not-ours"
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(EXAMPLE_3 + trailing)
    assert _events(decoder) == EXAMPLE_3_EVENTS
    assert decoder.trailing_data == trailing
    with pytest.raises(RuntimeError):
        decoder.next_event()
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"more")


def test_decode_need_data_before_a_whole_record() -> None:
    decoder = FastCGIResponseDecoder(1)
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(STDOUT_1[:-1])  # all but the last padding byte
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(STDOUT_1[-1:])
    assert decoder.next_event() == EXAMPLE_3_EVENTS[0]
    assert decoder.next_event() is NEED_DATA


def test_decode_maximum_padding_is_skipped() -> None:
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(b"\x01\x06\x00\x01\x00\x02\xff\x00ok" + b"\xee" * 255 + END_938)
    assert _events(decoder) == [Stdout(b"ok"), EndRequest(938, 0)]


def test_decode_rejected_request_statuses() -> None:
    # §5.5: {FCGI_END_REQUEST, 1, {0, FCGI_OVERLOADED}} without any output.
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(b"\x01\x03\x00\x01\x00\x08\x00\x00" + b"\x00\x00\x00\x00\x02\x00\x00\x00")
    assert decoder.next_event() == EndRequest(0, fastcgi.FCGI_OVERLOADED)


def test_decode_skips_management_records_with_null_id() -> None:
    # §4.1 / §4.2: GET_VALUES_RESULT and UNKNOWN_TYPE use request id 0; unsolicited, ignored.
    get_values_result = b"\x01\x0a\x00\x00\x00\x11\x00\x00" + b"\x0e\x01FCGI_MAX_CONNS1"
    unknown_type = b"\x01\x0b\x00\x00\x00\x08\x00\x00" + b"\x0c\x00\x00\x00\x00\x00\x00\x00"
    assert len(get_values_result) == 8 + 17
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(get_values_result + STDOUT_2 + unknown_type + END_938)
    assert _events(decoder) == [Stdout(b"ml>\n<head> ... "), EndRequest(938, 0)]


def test_records_of_another_request_are_skipped_and_reported() -> None:
    # A record for request 1 (type 6 STDOUT, 5 bytes, padding 3), then request 2's own answer,
    # on a kept connection whose active request is 2.
    stray_stdout = b"\x01\x06\x00\x01\x00\x05\x03\x00" + b"evil!" + b"\x00\x00\x00"
    stray_end = b"\x01\x03\x00\x01\x00\x08\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x00"
    own_stdout = b"\x01\x06\x00\x02\x00\x03\x05\x00" + b"own" + b"\x00" * 5
    own_end = b"\x01\x03\x00\x02\x00\x08\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x00"
    data = stray_stdout + stray_end + own_stdout + own_end
    expected = [OtherRequest(1, 6, 5), OtherRequest(1, 3, 8), Stdout(b"own"), EndRequest(0, 0)]
    whole = FastCGIResponseDecoder(2)
    whole.receive_data(data)
    assert _events(whole) == expected
    bytewise = FastCGIResponseDecoder(2)
    seen: list[object] = []
    for i in range(len(data)):
        bytewise.receive_data(data[i:i + 1])
        while (event := bytewise.next_event()) is not NEED_DATA:
            seen.append(event)
            if isinstance(event, EndRequest):
                break
    assert seen == expected


def test_decode_high_request_id() -> None:
    decoder = FastCGIResponseDecoder(0xFFFF)
    decoder.receive_data(b"\x01\x06\xff\xff\x00\x01\x07\x00x" + b"\x00" * 7)
    assert decoder.next_event() == Stdout(b"x")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (b"\x00\x06\x00\x01\x00\x00\x00\x00", "version"),  # version 0
        (b"\x02\x06\x00\x01\x00\x00\x00\x00", "version"),  # version 2
        (b"\x01\x06\x00\x00\x00\x00\x00\x00", "type"),  # STDOUT with the null id
        (b"\x01\x09\x00\x00\x00\x00\x00\x00", "type"),  # GET_VALUES is sent to applications
        (b"\x01\x00\x00\x01\x00\x00\x00\x00", "type"),  # type 0 does not exist
        (b"\x01\x01\x00\x01\x00\x08\x00\x00", "type"),  # BEGIN_REQUEST from the application
        (b"\x01\x05\x00\x01\x00\x00\x00\x00", "type"),  # STDIN from the application
        (b"\x01\x0c\x00\x01\x00\x00\x00\x00", "type"),  # beyond FCGI_MAXTYPE
        (b"\x01\x03\x00\x01\x00\x07\x00\x00", "FCGI_EndRequestBody"),
        (b"\x01\x03\x00\x01\x00\x09\x00\x00", "FCGI_EndRequestBody"),
    ],
)
def test_decode_rejects_bad_headers_before_their_content(record: bytes, field: str) -> None:
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(record)  # only the header: the error must not wait for content
    with pytest.raises(WireError, match=field):
        decoder.next_event()


def test_wire_error_names_field_bytes_and_section() -> None:
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(b"\x02\x06\x00\x01\x00\x00\x00\x00")
    with pytest.raises(WireError) as caught:
        decoder.next_event()
    message = str(caught.value)
    assert "FCGI_Header.version" in message
    assert "\\x02\\x06\\x00\\x01" in message
    assert "FastCGI 1.0 §3.3" in message
    assert caught.value.section == "FastCGI 1.0 §3.3"


def test_eof_before_end_request() -> None:
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(STDOUT_1 + STDOUT_END)
    assert _events(decoder) == [EXAMPLE_3_EVENTS[0]]
    with pytest.raises(WireError, match="§5.5"):
        decoder.eof()


def test_buffer_holds_at_most_one_record_between_drains() -> None:
    largest = b"\x01\x06\x00\x01\xff\xff\xff\x00" + b"o" * 65535 + b"\x00" * 255
    assert len(largest) == fastcgi.FCGI_MAX_RECORD_LEN
    decoder = FastCGIResponseDecoder(1)
    decoder.receive_data(largest[:-1])
    assert decoder.next_event() is NEED_DATA  # just under one record: still waiting
    decoder.receive_data(largest[-1:] + largest)
    # Two whole records are buffered and not drained: the caller must drain first.
    with pytest.raises(RuntimeError):
        decoder.receive_data(END_938)
    assert decoder.next_event() == Stdout(b"o" * 65535)
    assert decoder.next_event() == Stdout(b"o" * 65535)
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(END_938)
    assert decoder.next_event() == EndRequest(938, 0)


def _split_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """A second, independent reading of §3.3, used to check encoder output structure."""
    records = []
    pos = 0
    while pos < len(data):
        assert data[pos] == 1
        record_type, request_id = data[pos + 1], data[pos + 2] << 8 | data[pos + 3]
        length, padding = data[pos + 4] << 8 | data[pos + 5], data[pos + 6]
        records.append((record_type, request_id, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + padding
        assert pos % 8 == 0
    assert pos == len(data)
    return records


# -- encode_params against the implementation it replaced ----------------------------------------


def _reference_encode_params(request_id: int, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """encode_params as it was before it was made fast (a bytearray grown pair by pair, each
    length through a function, the stream cut by the generic record splitter): the same bytes
    and the same errors are expected from the fast one."""
    encoded = bytearray()
    for name, value in pairs:
        if not name:
            raise WireError("FCGI_PARAMS name", "empty name", name, section="FastCGI 1.0 §6.1")
        if b"\x00" in name:
            raise WireError("FCGI_PARAMS name", "contains NUL", name, section="FastCGI 1.0 §6.1")
        if b"\x00" in value:
            raise WireError(f"FCGI_PARAMS value of {name!r}", "contains NUL", value, section="FastCGI 1.0 §6.1")
        for length in (len(name), len(value)):
            encoded += bytes((length,)) if length <= 0x7F else (length | 0x80000000).to_bytes(4, "big")
        encoded += name
        encoded += value
    records = [encode_record(fastcgi.FCGI_PARAMS, request_id, bytes(encoded[start:start + 65535]))
               for start in range(0, len(encoded), 65535)]
    return b"".join(records) + encode_record(fastcgi.FCGI_PARAMS, request_id)


def _random_bytes(rng: random.Random, size: int, nul: float) -> bytes:
    data = bytearray(rng.randbytes(size).replace(b"\x00", b"0"))
    if data and rng.random() < nul:
        data[rng.randrange(len(data))] = 0
    return bytes(data)


@pytest.mark.parametrize("seed", range(40))
def test_params_same_bytes_and_errors_as_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    # Lengths around the 1/4-byte boundary (127/128), and now and then a payload over one record.
    lengths = [0, 1, 7, 126, 127, 128, 129, 255, 1000, 40000]
    pairs = []
    for _ in range(rng.randrange(0, 40)):
        name = _random_bytes(rng, rng.choice(lengths[1:6]) if rng.random() < 0.9 else rng.choice(lengths), 0.01)
        value = _random_bytes(rng, rng.choice(lengths), 0.01)
        if rng.random() < 0.005:
            name = b""
        pairs.append((name, value))
    request_id = rng.choice([1, 2, 255, 256, 65535])
    try:
        expected: bytes | str = _reference_encode_params(request_id, pairs)
    except WireError as exc:
        expected = str(exc)
    try:
        got: bytes | str = encode_params(request_id, pairs)
    except WireError as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize("pairs", [
    [(b"A", b"1"), (b"", b"x"), (b"B\x00", b"y")],  # the first bad pair is the one reported
    [(b"A\x00", b"\x00")],  # a NUL in the name is reported before one in the value
    [(b"N" * 200, b"v\x00")],
])
def test_params_first_error_as_the_reference(pairs: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(WireError) as reference:
        _reference_encode_params(1, pairs)
    with pytest.raises(WireError) as fast:
        encode_params(1, pairs)
    assert str(fast.value) == str(reference.value)


@pytest.mark.parametrize("size", [1, 7, 8, 9, 65535, 65536, 131070, 131071, 200003])
def test_stdin_same_records_as_one_encode_record_per_slice(size: int) -> None:
    data = random.Random(size).randbytes(size)
    expected = b"".join(encode_record(fastcgi.FCGI_STDIN, 7, data[start:start + 65535])
                        for start in range(0, size, 65535))
    assert encode_stdin(7, data) == expected
