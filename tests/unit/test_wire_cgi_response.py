"""CGI-style response heads (RFC 3875 §6): vectors typed by hand from the RFC's grammar."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from frontd.wire.cgi_response import ResponseHead, ResponseHeadParser
from frontd.wire.errors import WireError


def parse(data: bytes, *, max_size: int = 65536, allow_status_line: bool = False) -> ResponseHead:
    parser = ResponseHeadParser(max_size=max_size, allow_status_line=allow_status_line)
    head = parser.feed(data)
    assert head is not None
    return head


def parse_bytewise(data: bytes, *, allow_status_line: bool = False) -> ResponseHead:
    parser = ResponseHeadParser(allow_status_line=allow_status_line)
    for i in range(len(data)):
        head = parser.feed(data[i : i + 1])
        if head is not None:
            # Fed one byte at a time, nothing follows the blank line yet.
            assert head.body_start == b""
            assert i + 1 + len(data[i + 1 :]) == len(data)
            return head
    raise AssertionError("head never completed")


# --------------------------------------------------------------------------- documents

LF_DOC = b"Content-Type: text/html\nX-Powered-By: sh\n\n<html>\n"
CRLF_DOC = b"Content-Type: text/html\r\nX-Powered-By: sh\r\n\r\n<html>\r\n"
DOC_HEADERS = [(b"Content-Type", b"text/html"), (b"X-Powered-By", b"sh")]


@pytest.mark.parametrize(("data", "body"), [(LF_DOC, b"<html>\n"), (CRLF_DOC, b"<html>\r\n")])
def test_document_lf_and_crlf(data: bytes, body: bytes) -> None:
    # RFC 3875 §6.2.1 / §6.3.1: Content-Type, default status 200 OK; NL is LF or CRLF.
    head = parse(data)
    assert head == ResponseHead(200, b"OK", DOC_HEADERS, None, body, "document")


@pytest.mark.parametrize("data", [LF_DOC, CRLF_DOC])
def test_document_byte_by_byte(data: bytes) -> None:
    head = parse_bytewise(data)
    assert (head.status, head.headers, head.kind) == (200, DOC_HEADERS, "document")


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type: text/html\r\nX-Powered-By: sh\n\r\nbody",
        b"Content-Type: text/html\nX-Powered-By: sh\r\n\nbody",
        b"Content-Type: text/html\r\nX-Powered-By: sh\r\n\nbody",
    ],
)
def test_mixed_line_ends(data: bytes) -> None:
    head = parse(data)
    assert head.headers == DOC_HEADERS
    assert head.body_start == b"body"


def test_body_bytes_after_the_head_are_untouched() -> None:
    body = b"\r\n\r\nStatus: 500\n\nnot a head\x00\xff"
    head = parse(b"Content-Type: application/octet-stream\r\n\r\n" + body)
    assert head.body_start == body
    assert head.status == 200


def test_values_lose_surrounding_whitespace_and_may_be_empty() -> None:
    head = parse(b"Content-Type:text/plain\nX-A:  \t a b \t\nX-Empty:\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n")
    assert head.headers == [
        (b"Content-Type", b"text/plain"),
        (b"X-A", b"a b"),
        (b"X-Empty", b""),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]


# --------------------------------------------------------------------------- Status


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        (b"Status: 404 Not Found", 404, b"Not Found"),
        (b"status: 201 Created", 201, b"Created"),
        (b"STATUS: 503 Busy, try later", 503, b"Busy, try later"),
        (b"Status: 404", 404, b"Not Found"),  # reason omitted: standard phrase
        (b"Status:204\t", 204, b"No Content"),
        (b"Status: 599", 599, b""),  # no standard phrase
        (b"Status: 200 ", 200, b"OK"),
    ],
)
def test_status_field(line: bytes, status: int, reason: bytes) -> None:
    # RFC 3875 §6.3.3; Status is a CGI field and is not relayed as a header.
    head = parse(line + b"\nContent-Type: text/plain\n\n")
    assert (head.status, head.reason) == (status, reason)
    assert head.headers == [(b"Content-Type", b"text/plain")]


def test_status_alone_is_a_valid_head() -> None:
    head = parse(b"Status: 204 No Content\r\n\r\n")
    assert (head.status, head.headers, head.kind) == (204, [], "document")


@pytest.mark.parametrize(
    "value",
    [
        b"99",
        b"099",
        b"1000",
        b"600 Nope",
        b"999",
        b"100 Continue",  # interim, cannot end a CGI response
        b"abc",
        b"",
        b"+20",
        b"2 00",
        b" 20x",
        "٢٠٠".encode(),  # Arabic-Indic digits: int() would accept them
        b"200OK",
    ],
)
def test_bad_status(value: bytes) -> None:
    with pytest.raises(WireError, match="Status|status code"):
        parse(b"Status: " + value + b"\nContent-Type: text/plain\n\n")


def test_status_twice() -> None:
    with pytest.raises(WireError, match="twice"):
        parse(b"Status: 200 OK\nStatus: 404 Not Found\nContent-Type: text/plain\n\n")


# --------------------------------------------------------------------------- Location


@pytest.mark.parametrize("data", [b"Location: /other?x=1\n\n", b"Location: /other?x=1\r\n\r\n"])
def test_local_redirect(data: bytes) -> None:
    # RFC 3875 §6.2.2: local-Location and no other field.
    head = parse(data)
    assert head.kind == "local-redirect"
    assert head.location == b"/other?x=1"
    assert head.headers == [(b"Location", b"/other?x=1")]


def test_client_redirect_defaults_to_302() -> None:
    # RFC 3875 §6.2.3: absolute Location, no body: 302 Found.
    head = parse(b"Location: http://example.com/new\n\n")
    assert (head.kind, head.status, head.reason) == ("client-redirect", 302, b"Found")
    assert head.location == b"http://example.com/new"


def test_client_redirect_with_extension_field_and_status() -> None:
    head = parse(b"Status: 301 Moved Permanently\nLocation: https://example.com/\nX-Why: moved\n\n")
    assert (head.kind, head.status, head.reason) == ("client-redirect", 301, b"Moved Permanently")
    assert head.headers == [(b"Location", b"https://example.com/"), (b"X-Why", b"moved")]


def test_client_redirect_with_document() -> None:
    # RFC 3875 §6.2.4: Location, Status and Content-Type, then a body.
    head = parse(
        b"Status: 303 See Other\r\nLocation: http://example.com/\r\nContent-Type: text/html\r\n\r\n<a href>"
    )
    assert (head.kind, head.status) == ("client-redirect-with-document", 303)
    assert head.body_start == b"<a href>"


@pytest.mark.parametrize(
    ("data", "kind", "status"),
    [
        # A path with more fields is not a local redirect; it is relayed (as PHP does).
        (b"Location: /x\nContent-Type: text/html\n\n", "client-redirect-with-document", 302),
        (b"Status: 302 Found\nLocation: /x\n\n", "client-redirect", 302),
        (b"Location: /x\nX-A: 1\n\n", "client-redirect", 302),
        # "//host/p" names another host: never served internally.
        (b"Location: //evil.example/p\n\n", "client-redirect", 302),
    ],
)
def test_location_that_is_not_a_local_redirect(data: bytes, kind: str, status: int) -> None:
    head = parse(data)
    assert (head.kind, head.status) == (kind, status)


def test_location_twice() -> None:
    with pytest.raises(WireError, match="twice"):
        parse(b"Location: /a\nlocation: /b\n\n")


def test_content_type_twice() -> None:
    with pytest.raises(WireError, match="twice"):
        parse(b"Content-Type: text/html\nContent-Type: text/plain\n\n")


# --------------------------------------------------------------------------- missing head, EOF


def test_no_output_at_all() -> None:
    parser = ResponseHeadParser()
    with pytest.raises(WireError, match="no output"):
        parser.eof()


@pytest.mark.parametrize("data", [b"Content-Type: text/html\n", b"Content-Type: text/ht", b"Hello, world"])
def test_output_ends_inside_the_head(data: bytes) -> None:
    parser = ResponseHeadParser()
    assert parser.feed(data) is None
    with pytest.raises(WireError, match="before the blank line"):
        parser.eof()


def test_eof_after_the_head_is_fine() -> None:
    parser = ResponseHeadParser()
    assert parser.feed(b"Content-Type: text/plain\n\n") is not None
    assert parser.complete
    parser.eof()
    with pytest.raises(RuntimeError):
        parser.feed(b"body")


@pytest.mark.parametrize(
    "data",
    [
        b"\n",  # a blank line first: no field at all
        b"\r\nbody",
        b"X-Powered-By: sh\n\nbody",  # fields, but none of Content-Type, Location, Status
    ],
)
def test_head_without_cgi_field(data: bytes) -> None:
    with pytest.raises(WireError, match="no Content-Type, Location or Status"):
        parse(data)


# --------------------------------------------------------------------------- size limit


def test_head_of_exactly_max_size_passes_one_more_fails() -> None:
    head = b"Content-Type: text/plain\nX-Pad: " + b"p" * 30 + b"\n\n"
    size = len(head)
    assert parse(head + b"body", max_size=size).body_start == b"body"
    with pytest.raises(WireError, match=f"no blank line within {size - 1} bytes"):
        parse(head + b"body", max_size=size - 1)


def test_oversized_head_fed_byte_by_byte_fails_at_the_limit() -> None:
    parser = ResponseHeadParser(max_size=100)
    for _ in range(99):
        assert parser.feed(b"x") is None
    with pytest.raises(WireError, match="no blank line within 100 bytes"):
        parser.feed(b"x")


def test_oversized_crlf_head_just_under_passes() -> None:
    head = b"Content-Type: text/plain\r\n\r\n"
    parser = ResponseHeadParser(max_size=len(head))
    for i in range(len(head) - 1):
        assert parser.feed(head[i : i + 1]) is None
    result = parser.feed(head[-1:])
    assert result is not None and result.headers == [(b"Content-Type", b"text/plain")]


# --------------------------------------------------------------------------- injection, syntax


@pytest.mark.parametrize(
    "line",
    [
        b"X-A: a\rSet-Cookie: x=1",  # response splitting through a bare CR
        b"X-A: a\r",  # CR that is not part of the line end ("X-A: a\r\r\n")
        b"X-A: a\x00b",
        b"X-A: a\x01b",
        b"X-A: a\x7fb",
        b"X-A: a\x1bb",
    ],
)
def test_control_bytes_in_values(line: bytes) -> None:
    with pytest.raises(WireError, match="control byte"):
        parse(b"Content-Type: text/html\r\n" + line + b"\r\n\r\n")


def test_lf_ends_a_line_so_it_cannot_hide_in_a_value() -> None:
    # RFC 3875 §6.2: a bare LF is a line end; what follows must itself be a valid field.
    head = parse(b"Content-Type: text/html\r\nX-A: a\nSet-Cookie: x=1\r\n\r\n")
    assert head.headers[1:] == [(b"X-A", b"a"), (b"Set-Cookie", b"x=1")]
    with pytest.raises(WireError, match="not an RFC 9110 token"):
        parse(b"Content-Type: text/html\r\nX-A: a\n<script>: x\r\n\r\n")


@pytest.mark.parametrize("continuation", [b" folded", b"\tfolded"])
def test_obsolete_line_folding(continuation: bytes) -> None:
    with pytest.raises(WireError, match="folding"):
        parse(b"Content-Type: text/html\nX-A: a\n" + continuation + b"\n\n")


@pytest.mark.parametrize(
    "line",
    [
        b"X A: b",
        b"X-A : b",  # whitespace before the colon (RFC 9112 §5.1)
        b"X@A: b",
        b": b",
        b"X\x80: b",
        b"(X): b",
    ],
)
def test_names_must_be_tokens(line: bytes) -> None:
    with pytest.raises(WireError, match="not an RFC 9110 token"):
        parse(b"Content-Type: text/html\n" + line + b"\n\n")


def test_line_without_colon() -> None:
    with pytest.raises(WireError, match="no ':'"):
        parse(b"Content-Type: text/html\ngarbage\n\n")


# --------------------------------------------------------------------------- HTTP status line


def test_status_line_is_refused_in_cgi_mode() -> None:
    # RFC 3875 §5, §6.2: only an NPH script sends a status line.
    with pytest.raises(WireError, match="HTTP status line not allowed here"):
        parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "status", "reason", "headers"),
    [
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
            404,
            b"Not Found",
            [(b"Content-Type", b"text/plain")],
        ),
        (b"HTTP/1.0 204 No Content\r\n\r\n", 204, b"No Content", []),  # HTTP allows no fields
        (b"HTTP/1.1 200\r\nX-A: 1\r\n\r\n", 200, b"", [(b"X-A", b"1")]),
        (b"HTTP/1.1 302 \nLocation: /x\n\n", 302, b"", [(b"Location", b"/x")]),
        # Status line wins; a Status field is not relayed.
        (b"HTTP/1.1 201 Created\r\nStatus: 500 Oops\r\n\r\n", 201, b"Created", []),
    ],
)
def test_status_line_mode(data: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    for head in (parse(data, allow_status_line=True), parse_bytewise(data, allow_status_line=True)):
        assert (head.status, head.reason, head.headers, head.kind) == (status, reason, headers, "document")


def test_status_line_mode_accepts_cgi_heads() -> None:
    head = parse(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", allow_status_line=True)
    assert (head.status, head.headers) == (404, [(b"Content-Type", b"text/plain")])
    assert parse(b"Location: /x\n\n", allow_status_line=True).kind == "local-redirect"


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/2 200 OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 600 High",
        b"HTTP/1.1 200 O\x01K",
        b"HTTP/1.1 200 O\rK",
        b"HTTP/1.1\t200 OK",
    ],
)
def test_bad_status_line(line: bytes) -> None:
    with pytest.raises(WireError, match="status"):
        parse(line + b"\r\n\r\n", allow_status_line=True)


def test_status_line_only_on_the_first_line() -> None:
    with pytest.raises(WireError, match="only as the first line"):
        parse(b"Content-Type: text/plain\r\nHTTP/1.1 200 OK\r\n\r\n", allow_status_line=True)


def test_wire_error_message_names_field_bytes_and_section() -> None:
    with pytest.raises(WireError) as caught:
        parse(b"Content-Type: text/html\nX-A: a\rSet-Cookie: x=1\n\n")
    message = str(caught.value)
    assert message.startswith("header X-A: control byte b'\\r' in value: b'X-A: a\\rSet-Cookie: x=1'")
    assert "RFC 9110 §5" in message


def _outcome(feed: Callable[[], ResponseHead]) -> object:
    try:
        head = feed()
    except WireError as exc:
        return ("error", str(exc))
    return (head.status, head.reason, head.headers, head.location, head.body_start, head.kind)


@pytest.mark.parametrize("data", [
    LF_DOC, CRLF_DOC, b"Content-Type: a\r\nX: b\n\nbody\n\nmore", b"Content-Type: a\n\r\nbody\r\n\r\n",
    b"\nContent-Type: a\n\n", b"\r\nContent-Type: a\n\n", b"Content-Type: a\r\r\n\r\n", b"X: a\rY: b\n\n",
    b"Location: /p\n\n", b"Status: 404\nStatus: 200\n\n", b"Content-Type: a\n b\n\n", b"Bad Name: x\n\n",
    b"HTTP/1.1 204 No Content\r\n\r\n", b"Content-Type: a\nHTTP/1.1 200 OK\n\n", b"X: " + b"x" * 120 + b"\n\n",
])
@pytest.mark.parametrize("allow_status_line", [False, True])
def test_whole_head_in_one_piece_parses_as_line_by_line(data: bytes, allow_status_line: bool) -> None:
    """The first output holding the whole head takes a shortcut; it must agree with the parse
    of the same bytes one at a time, errors included."""
    whole = _outcome(lambda: parse(data, max_size=100, allow_status_line=allow_status_line))
    bytewise = _outcome(lambda: parse_bytewise_max(data, 100, allow_status_line))
    assert whole == bytewise


def parse_bytewise_max(data: bytes, max_size: int, allow_status_line: bool) -> ResponseHead:
    parser = ResponseHeadParser(max_size, allow_status_line=allow_status_line)
    for i in range(len(data)):
        head = parser.feed(data[i:i + 1])
        if head is not None:
            return ResponseHead(head.status, head.reason, head.headers, head.location,
                                head.body_start + data[i + 1:], head.kind)
    parser.eof()
    raise AssertionError("eof() should have raised")
