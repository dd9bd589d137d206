"""FastCGI 1.0 (Open Market, 29 April 1996), web-server side, sans-IO.

Encoders build the records frontd sends (BEGIN_REQUEST, PARAMS, STDIN, ABORT_REQUEST);
`FastCGIResponseDecoder` turns the bytes a responder sends back into `Stdout`, `Stderr` and
`EndRequest` events, h11-style (`receive_data` / `next_event`). `decode_params` reads a
name-value pair stream, for tests and for completeness.

Sections cited are those of the specification ("§3.3 Records", "§3.4 Name-Value Pairs", ...).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeAlias

from frontd.wire.errors import WireError

# §8 Types and constants.
FCGI_VERSION_1: Final = 1
FCGI_HEADER_LEN: Final = 8
FCGI_NULL_REQUEST_ID: Final = 0

FCGI_BEGIN_REQUEST: Final = 1
FCGI_ABORT_REQUEST: Final = 2
FCGI_END_REQUEST: Final = 3
FCGI_PARAMS: Final = 4
FCGI_STDIN: Final = 5
FCGI_STDOUT: Final = 6
FCGI_STDERR: Final = 7
FCGI_DATA: Final = 8
FCGI_GET_VALUES: Final = 9
FCGI_GET_VALUES_RESULT: Final = 10
FCGI_UNKNOWN_TYPE: Final = 11
FCGI_MAXTYPE: Final = FCGI_UNKNOWN_TYPE

FCGI_KEEP_CONN: Final = 1  # mask for FCGI_BeginRequestBody.flags

FCGI_RESPONDER: Final = 1
FCGI_AUTHORIZER: Final = 2
FCGI_FILTER: Final = 3

FCGI_REQUEST_COMPLETE: Final = 0
FCGI_CANT_MPX_CONN: Final = 1
FCGI_OVERLOADED: Final = 2
FCGI_UNKNOWN_ROLE: Final = 3

FCGI_MAX_CONNS: Final = b"FCGI_MAX_CONNS"
FCGI_MAX_REQS: Final = b"FCGI_MAX_REQS"
FCGI_MPXS_CONNS: Final = b"FCGI_MPXS_CONNS"

# §3.3: contentData is 0..65535 bytes, paddingData 0..255 bytes.
FCGI_MAX_CONTENT_LEN: Final = 0xFFFF
FCGI_MAX_PADDING_LEN: Final = 0xFF
# The largest record a peer can send; the decoder never holds more than one unparsed record.
FCGI_MAX_RECORD_LEN: Final = FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LEN + FCGI_MAX_PADDING_LEN

# §3.4: a length needing more than 31 bits cannot be encoded.
_MAX_NAME_VALUE_LEN: Final = 0x7FFFFFFF

_HEADER = struct.Struct(">BBHHBx")  # version, type, requestId, contentLength, paddingLength
_BEGIN_REQUEST_BODY = struct.Struct(">HB5x")  # role, flags, reserved[5]  (§5.1)
_END_REQUEST_BODY = struct.Struct(">IB3x")  # appStatus, protocolStatus, reserved[3]  (§5.5)
_LENGTH4 = struct.Struct(">I")
# §3.4: the one-byte encoding of each length from 0 to 127.
_SHORT_LENGTHS: Final = tuple(bytes((n,)) for n in range(0x80))
_PADDING: Final = tuple(b"\x00" * n for n in range(8))

_SECTION_RECORDS = "FastCGI 1.0 §3.3"
_SECTION_PAIRS = "FastCGI 1.0 §3.4"


# --------------------------------------------------------------------------- encoders


def encode_record(
    record_type: int,
    request_id: int,
    content: bytes = b"",
    padding: int | None = None,
) -> bytes:
    """One FCGI_Record. `padding=None` pads the content to a multiple of 8 bytes.

    §3.3 "Padding": the spec recommends records on 8-byte boundaries; the header is 8 bytes,
    so padding the content to a multiple of 8 keeps every record aligned.
    """
    if not 0 <= record_type <= 0xFF:
        raise ValueError(f"FastCGI record type {record_type} is not a byte")
    if not 0 <= request_id <= 0xFFFF:
        raise ValueError(f"FastCGI requestId {request_id} does not fit 16 bits")
    if len(content) > FCGI_MAX_CONTENT_LEN:
        raise ValueError(f"FastCGI contentLength {len(content)} > {FCGI_MAX_CONTENT_LEN}")
    if padding is None:
        padding = -len(content) % 8
    if not 0 <= padding <= FCGI_MAX_PADDING_LEN:
        raise ValueError(f"FastCGI paddingLength {padding} is not a byte")
    header = _HEADER.pack(FCGI_VERSION_1, record_type, request_id, len(content), padding)
    return b"".join((header, content, b"\x00" * padding))


def encode_begin_request(
    request_id: int, role: int = FCGI_RESPONDER, keep_conn: bool = False
) -> bytes:
    """`{FCGI_BEGIN_REQUEST, request_id, {role, flags}}` (§5.1).

    `keep_conn=False` asks the application to close the connection after this request;
    True leaves the connection to us (§3.5).
    """
    _check_application_request_id(request_id)
    if not 0 <= role <= 0xFFFF:
        raise ValueError(f"FastCGI role {role} does not fit 16 bits")
    flags = FCGI_KEEP_CONN if keep_conn else 0
    return encode_record(FCGI_BEGIN_REQUEST, request_id, _BEGIN_REQUEST_BODY.pack(role, flags))


def encode_params(request_id: int, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The whole FCGI_PARAMS stream: the pairs, then the empty record that ends it (§5.2).

    The encoded pairs are one byte sequence cut into records of at most 65535 bytes; a cut
    may fall anywhere, even inside a name (§3.3: a stream's value does not depend on how its
    bytes are divided among records).
    """
    _check_application_request_id(request_id)
    # Runs for every request: the pieces go into a list that is joined once, then framed. A
    # short length (§3.4: up to 127, nearly all of them) is a table lookup; `0 in name` is a
    # memchr where `b"\x00" in name` is a substring search several times slower.
    short = _SHORT_LENGTHS
    parts: list[bytes] = []
    append = parts.append
    for name, value in pairs:
        n = len(name)
        v = len(value)
        if not n or 0 in name or 0 in value:
            _refuse_pair(name, value)
        append(short[n] if n < 0x80 else _long_length(n, name))
        append(short[v] if v < 0x80 else _long_length(v, name))
        append(name)
        append(value)
    end = _HEADER.pack(FCGI_VERSION_1, FCGI_PARAMS, request_id, 0, 0)
    return _encode_stream(FCGI_PARAMS, request_id, b"".join(parts), end)


def _refuse_pair(name: bytes, value: bytes) -> NoReturn:
    # §6.1: names and values are NUL-free (the application may build C strings from them; a
    # NUL would truncate e.g. SCRIPT_FILENAME on the far side).
    if not name:
        raise WireError("FCGI_PARAMS name", "empty name", name, section="FastCGI 1.0 §6.1")
    if b"\x00" in name:
        raise WireError("FCGI_PARAMS name", "contains NUL", name, section="FastCGI 1.0 §6.1")
    raise WireError(f"FCGI_PARAMS value of {name!r}", "contains NUL", value, section="FastCGI 1.0 §6.1")


def encode_stdin(request_id: int, data: bytes) -> bytes:
    """FCGI_STDIN records carrying `data`; `data=b""` gives the empty end-of-stream record.

    §6.1: the stream must be sent even with no request body, so the caller always finishes
    with `encode_stdin(request_id, b"")`.
    """
    _check_application_request_id(request_id)
    if not data:
        return encode_record(FCGI_STDIN, request_id)
    return _encode_stream(FCGI_STDIN, request_id, data)


def encode_abort_request(request_id: int) -> bytes:
    """`{FCGI_ABORT_REQUEST, request_id}`: the HTTP client went away (§5.4)."""
    _check_application_request_id(request_id)
    return encode_record(FCGI_ABORT_REQUEST, request_id)


def _check_application_request_id(request_id: int) -> None:
    # §3.3 "Types of record types": application records have a nonzero requestId.
    if not 1 <= request_id <= 0xFFFF:
        raise ValueError(f"FastCGI application requestId {request_id} not in 1..65535")


def _long_length(length: int, name: bytes) -> bytes:
    # §3.4: lengths up to 127 take one byte (`_SHORT_LENGTHS`); longer ones four, with the top
    # bit set, and none needs more than 31 bits.
    if length > _MAX_NAME_VALUE_LEN:
        raise WireError(
            f"FCGI_PARAMS length for {name[:32]!r}",
            f"{length} does not fit 31 bits",
            section=_SECTION_PAIRS,
        )
    return _LENGTH4.pack(length | 0x80000000)


def _encode_stream(record_type: int, request_id: int, payload: bytes, end: bytes = b"") -> bytes:
    """`payload` as records of `record_type` (padded as `encode_record` pads), then `end`.

    An empty payload gives no record (an empty one would end the stream). One copy of the
    payload: the records of a long one are joined from views of it.
    """
    size = len(payload)
    if size <= FCGI_MAX_CONTENT_LEN:
        if not size:
            return end
        padding = -size % 8
        return b"".join((_HEADER.pack(FCGI_VERSION_1, record_type, request_id, size, padding), payload,
                         _PADDING[padding], end))
    view = memoryview(payload)
    parts: list[bytes | memoryview] = []
    for start in range(0, size, FCGI_MAX_CONTENT_LEN):
        content = view[start:start + FCGI_MAX_CONTENT_LEN]
        length = len(content)
        padding = -length % 8
        parts += (_HEADER.pack(FCGI_VERSION_1, record_type, request_id, length, padding), content,
                  _PADDING[padding])
    parts.append(end)
    return b"".join(parts)


# --------------------------------------------------------------------------- name-value pairs


def decode_params(data: bytes) -> list[tuple[bytes, bytes]]:
    """The name-value pairs of a complete FCGI_PARAMS (or GET_VALUES) stream value (§3.4).

    Strict: a pair cut short by the end of `data` raises WireError.
    """
    pairs: list[tuple[bytes, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        name_len, pos = _decode_length(data, pos, "nameLength")
        value_len, pos = _decode_length(data, pos, "valueLength")
        if end - pos < name_len + value_len:
            raise WireError(
                "FCGI_NameValuePair data",
                f"needs {name_len}+{value_len} bytes, {end - pos} left",
                data[pos:],
                section=_SECTION_PAIRS,
            )
        name = data[pos : pos + name_len]
        pos += name_len
        pairs.append((name, data[pos : pos + value_len]))
        pos += value_len
    return pairs


def _decode_length(data: bytes, pos: int, field: str) -> tuple[int, int]:
    # §3.4: the high bit of the first byte selects the one- or four-byte encoding.
    if pos >= len(data):
        raise WireError(f"FCGI_NameValuePair {field}", "missing", data[pos - 1 :], section=_SECTION_PAIRS)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if len(data) - pos < 4:
        raise WireError(
            f"FCGI_NameValuePair {field}", "four-byte length cut short", data[pos:], section=_SECTION_PAIRS
        )
    (length,) = _LENGTH4.unpack_from(data, pos)
    return length & _MAX_NAME_VALUE_LEN, pos + 4


# --------------------------------------------------------------------------- response decoder


@dataclass(frozen=True, slots=True)
class Stdout:
    """Content of one non-empty FCGI_STDOUT record: the CGI response, head then body (§6.2)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Stderr:
    """Content of one non-empty FCGI_STDERR record: text for the error log (§6.1)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndRequest:
    """FCGI_END_REQUEST (§5.5). `protocol_status` other than FCGI_REQUEST_COMPLETE means the
    application rejected the request (CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE)."""

    app_status: int
    protocol_status: int


@dataclass(frozen=True, slots=True)
class OtherRequest:
    """A record for another request id than the active one, skipped whole (its content is not
    kept). The web server picks request ids (§3.3); on a kept connection a record for an
    earlier id is one the application sent after that request had ended."""

    request_id: int
    record_type: int
    content_length: int


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by `next_event()` when the buffered bytes do not hold a complete record."""

Event: TypeAlias = Stdout | Stderr | EndRequest | OtherRequest

# §3.3 / Appendix A: the records an application sends for a request.
_RESPONSE_TYPES: Final = frozenset({FCGI_STDOUT, FCGI_STDERR, FCGI_END_REQUEST})
# Appendix A: management records an application may send with the null request id. They say
# nothing about this request (a GET_VALUES reply, or UNKNOWN_TYPE), so they are skipped.
_IGNORED_MANAGEMENT_TYPES: Final = frozenset({FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE})


class FastCGIResponseDecoder:
    """Decode the records an application sends back for one request, h11-style.

    Call `receive_data(data)` with what the socket gave, then `next_event()` until it returns
    `NEED_DATA`. Events are `Stdout`, `Stderr` (one per non-empty record; the empty records
    that end those streams produce no event) and finally `EndRequest`; a record with another
    request id is skipped and reported as `OtherRequest`. Bytes after the END_REQUEST record
    are left untouched in `trailing_data`.

    Buffering: once `next_event()` has returned `NEED_DATA`, fewer than `FCGI_MAX_RECORD_LEN`
    bytes (part of one record) are held. `receive_data` raises RuntimeError while
    `FCGI_MAX_RECORD_LEN` or more bytes are buffered, i.e. until the caller has drained them,
    so the buffer never exceeds one record plus one read.
    """

    def __init__(self, request_id: int) -> None:
        _check_application_request_id(request_id)
        self._request_id = request_id
        self._buffer = bytearray()
        self._ended = False

    @property
    def request_id(self) -> int:
        return self._request_id

    @property
    def ended(self) -> bool:
        """True once `EndRequest` has been returned."""
        return self._ended

    @property
    def trailing_data(self) -> bytes:
        """Bytes received but not consumed; after `EndRequest`, what followed that record."""
        return bytes(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the application."""
        if self._ended:
            raise RuntimeError("FCGI_END_REQUEST already decoded; trailing_data holds the rest")
        if len(self._buffer) >= FCGI_MAX_RECORD_LEN:
            raise RuntimeError("call next_event() until NEED_DATA before receive_data()")
        self._buffer += data

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        """The next event, or `NEED_DATA`. Raises WireError on a protocol violation."""
        if self._ended:
            raise RuntimeError("FCGI_END_REQUEST already decoded")
        buffer = self._buffer
        while True:
            if len(buffer) < FCGI_HEADER_LEN:
                return NEED_DATA
            version, record_type, request_id, content_len, padding_len = _HEADER.unpack_from(buffer)
            # Validate the header before waiting for content, so garbage fails fast instead of
            # making us wait for up to 64 KiB that will never be valid.
            self._check_header(version, record_type, request_id, content_len, buffer)
            record_len = FCGI_HEADER_LEN + content_len + padding_len
            if len(buffer) < record_len:
                return NEED_DATA
            # §3.3 "Padding": receivers must skip paddingLength bytes of paddingData.
            content = bytes(buffer[FCGI_HEADER_LEN : FCGI_HEADER_LEN + content_len])
            del buffer[:record_len]
            if request_id == FCGI_NULL_REQUEST_ID:
                continue
            if request_id != self._request_id:
                return OtherRequest(request_id, record_type, content_len)
            if record_type == FCGI_END_REQUEST:
                app_status, protocol_status = _END_REQUEST_BODY.unpack(content)
                self._ended = True
                return EndRequest(app_status, protocol_status)
            if not content:
                # §3.3: an empty record ends the stream; it carries no data for the caller.
                continue
            return Stdout(content) if record_type == FCGI_STDOUT else Stderr(content)

    def eof(self) -> None:
        """The application closed the connection. §5.5: a request ends with FCGI_END_REQUEST,
        not with EOF, so closing earlier is an error."""
        if not self._ended:
            raise WireError(
                "FCGI_END_REQUEST",
                "connection closed before the request ended",
                self._buffer,
                section="FastCGI 1.0 §5.5",
            )

    def _check_header(
        self, version: int, record_type: int, request_id: int, content_len: int, buffer: bytearray
    ) -> None:
        header = buffer[:FCGI_HEADER_LEN]
        if version != FCGI_VERSION_1:
            raise WireError(
                "FCGI_Header.version", f"{version} is not FCGI_VERSION_1", header, section=_SECTION_RECORDS
            )
        if request_id == FCGI_NULL_REQUEST_ID:
            if record_type not in _IGNORED_MANAGEMENT_TYPES:
                raise WireError(
                    "FCGI_Header.type",
                    f"type {record_type} is not a management record an application sends",
                    header,
                    section="FastCGI 1.0 §4, appendix A",
                )
            return
        if request_id != self._request_id:
            return  # skipped whole, whatever its type: it is not this request's
        if record_type not in _RESPONSE_TYPES:
            raise WireError(
                "FCGI_Header.type",
                f"type {record_type} is not one an application sends for a request",
                header,
                section="FastCGI 1.0 appendix A",
            )
        if record_type == FCGI_END_REQUEST and content_len != _END_REQUEST_BODY.size:
            raise WireError(
                "FCGI_EndRequestBody",
                f"contentLength {content_len}, expected {_END_REQUEST_BODY.size}",
                header,
                section="FastCGI 1.0 §5.5",
            )
