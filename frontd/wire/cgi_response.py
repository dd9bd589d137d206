"""CGI-style response heads (RFC 3875 §6), shared by CGI, FastCGI, SCGI and uwsgi; sans-IO.

`ResponseHeadParser` is fed the script's (or backend's) output until it has seen the blank
line ending the header block, then returns a `ResponseHead`: the status, the header fields to
relay, the Location if any, the kind of response (§6.2: document, local redirect, client
redirect, client redirect with document) and the body bytes that arrived with the head.

With `allow_status_line=True` the first line may be an HTTP status line (`HTTP/1.1 404 Not
Found`): uwsgi replies are raw HTTP responses, and SCGI servers often send one too (nginx's
`ngx_http_scgi_process_status_line` accepts both).

Everything the parser accepts can be relayed by h11 unchanged: header names are RFC 9110
tokens and values hold no control characters, so a script cannot split the client response.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeAlias

from frontd.wire.ascii import find_forbidden_value_byte, is_token
from frontd.wire.errors import WireError

DEFAULT_MAX_HEAD_SIZE: Final = 64 * 1024

ResponseKind: TypeAlias = Literal["document", "local-redirect", "client-redirect", "client-redirect-with-document"]

# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; some backends
# omit the second SP when the reason is empty, which nginx tolerates and so do we.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?", re.DOTALL)
# RFC 3875 §6.3.3: Status = "Status:" status-code SP reason-phrase; the reason is often left
# out ("Status: 404"), then we supply the standard phrase.
_STATUS_VALUE: Final = re.compile(rb"([0-9]{3})(?:[ \t]+(.*))?", re.DOTALL)

_SECTION_HEAD: Final = "RFC 3875 §6.2"
_SECTION_FIELDS: Final = "RFC 3875 §6.3, RFC 9110 §5"
_SECTION_STATUS: Final = "RFC 3875 §6.3.3"

# Fields that may appear once only: two values would leave the response ambiguous.
_SINGLETONS: Final = (b"status", b"location", b"content-type")


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed response head.

    `headers` are the fields to relay to the client, in order, names as sent, values with
    surrounding whitespace removed; the CGI `Status` field is not among them (it is not an
    HTTP field). `kind` follows RFC 3875 §6.2:

    - "document": relay status, headers and body.
    - "local-redirect": `Location` is a path ("/p?q") and the only field; serve that URL
      internally instead, discarding any body (§6.2.2).
    - "client-redirect": `Location` without `Content-Type`; `status` is 302 unless a Status
      field said otherwise (§6.2.3).
    - "client-redirect-with-document": `Location` with a `Content-Type` and body (§6.2.4).

    A raw HTTP response (status line) is always "document": the backend chose its own status.
    """

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    location: bytes | None
    body_start: bytes
    kind: ResponseKind = "document"


class ResponseHeadParser:
    """Incremental parser for one response head; feed it output until it returns the head.

    Line ends may be LF or CRLF, mixed freely, and the head ends at the first empty line
    (RFC 3875 §6.2: NL is LF or CRLF on input). A head longer than `max_size` bytes, counting
    the blank line, raises WireError.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_HEAD_SIZE, allow_status_line: bool = False) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self._max_size = max_size
        self._allow_status_line = allow_status_line
        self._buffer = bytearray()
        self._line_start = 0  # start of the first line not yet parsed
        self._scanned = 0  # no LF in buffer[_line_start:_scanned]; resume searching here
        self._first_line = True
        self._status_line: tuple[int, bytes] | None = None
        self._status_field: tuple[int, bytes] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._seen: set[bytes] = set()
        self._result: ResponseHead | None = None

    @property
    def complete(self) -> bool:
        """True once the head has been returned by `feed`."""
        return self._result is not None

    def feed(self, data: bytes) -> ResponseHead | None:
        """Add output; return the head once the blank line has been seen, else None.

        Raises WireError on a malformed or oversized head. Bytes after the head are in
        `ResponseHead.body_start`; later output is body and is not fed here.
        """
        if self._result is not None:
            raise RuntimeError("the response head is complete; the rest is body")
        if not self._buffer:
            head = self._whole_head(data)
            if head is not None:
                return head
        buffer = self._buffer
        buffer += data
        while True:
            newline = buffer.find(b"\n", max(self._line_start, self._scanned))
            if newline < 0:
                self._scanned = len(buffer)
                if len(buffer) >= self._max_size:
                    self._too_large()
                return None
            if newline + 1 > self._max_size:
                self._too_large()
            line = bytes(buffer[self._line_start : newline])
            self._line_start = self._scanned = newline + 1
            # RFC 3875 §6.2 / §7.2: a line ends in LF or CRLF; only that one CR is removed,
            # any other CR stays in the line and is rejected below.
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._result = self._finish(bytes(buffer[self._line_start :]))
                self._buffer = bytearray()
                return self._result
            self._parse_line(line)

    def _whole_head(self, data: bytes) -> ResponseHead | None:
        """The common case: the first output holds the whole head. Its lines are split at once
        instead of searched for one by one; None (nothing consumed) when the head is not all
        there, or starts with its blank line."""
        if not self._first_line or data.startswith((b"\n", b"\r\n")):
            return None
        end = data.find(b"\n\n")
        crlf = data.find(b"\n\r\n")
        if crlf >= 0 and (end < 0 or crlf < end):
            end, body = crlf, crlf + 3
        else:
            body = end + 2
        if end < 0 or body > self._max_size:
            return None
        for line in data[:end].split(b"\n"):
            # §6.2: a line ends in LF or CRLF; only that one CR goes (see `feed`).
            self._parse_line(line[:-1] if line.endswith(b"\r") else line)
        self._result = self._finish(data[body:])
        return self._result

    def eof(self) -> None:
        """The output ended. Raises WireError unless the head was complete (§6.2: a response
        is a header block, a blank line, then an optional body)."""
        if self._result is not None:
            return
        if not self._buffer:
            raise WireError("response head", "no output at all", section=_SECTION_HEAD)
        raise WireError(
            "response head",
            "output ended before the blank line ending the header block",
            self._buffer[-32:],
            section=_SECTION_HEAD,
        )

    def _too_large(self) -> NoReturn:
        raise WireError(
            "response head",
            f"no blank line within {self._max_size} bytes",
            self._buffer[:32],
            section=_SECTION_HEAD,
        )

    def _parse_line(self, line: bytes) -> None:
        if self._first_line:
            self._first_line = False
            if self._allow_status_line and line.startswith(b"HTTP/"):
                self._status_line = self._parse_status_line(line)
                return
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obs-fold is obsolete; RFC 3875 §6.3 has no continuation lines.
            # Refusing it also stops a value from smuggling a line break into the response.
            raise WireError("header line", "obsolete line folding", line, section="RFC 9112 §5.2")
        if line.startswith(b"HTTP/"):
            # Said separately because it is a common mistake: an NPH-style status line from a
            # script that is not run as NPH (RFC 3875 §5), or not as the first line.
            where = "expected only as the first line" if self._allow_status_line else "not allowed here"
            raise WireError("header line", f"HTTP status line {where}", line, section=_SECTION_HEAD)
        colon = line.find(b":")
        if colon < 0:
            raise WireError("header line", "no ':'", line, section=_SECTION_FIELDS)
        name = line[:colon]
        if not is_token(name):
            # RFC 9110 §5.1: field-name = token (this also rejects "Name :" with a space).
            raise WireError("header name", "not an RFC 9110 token", line, section=_SECTION_FIELDS)
        value = line[colon + 1 :].strip(b" \t")
        bad = find_forbidden_value_byte(value)
        if bad >= 0:
            # RFC 9110 §5.5: CR, NUL and other controls are not field-value characters; a CR
            # here ("X-A: a\rSet-Cookie: x=1") would split the response we send.
            raise WireError(
                f"header {name.decode('ascii')}",
                f"control byte {value[bad : bad + 1]!r} in value",
                line,
                section=_SECTION_FIELDS,
            )
        folded = name.lower()
        if folded in _SINGLETONS:
            if folded in self._seen:
                raise WireError(f"header {name.decode('ascii')}", "appears twice", line, section=_SECTION_FIELDS)
            self._seen.add(folded)
        if folded == b"status":
            # §6.3.3: Status is a CGI field, not an HTTP one; it is never relayed.
            self._status_field = self._parse_status_field(value, line)
            return
        self._headers.append((name, value))

    @staticmethod
    def _parse_status_line(line: bytes) -> tuple[int, bytes]:
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise WireError("status line", "not 'HTTP/1.x NNN reason'", line, section="RFC 9112 §4")
        reason = match.group(2) or b""
        if find_forbidden_value_byte(reason) >= 0:
            raise WireError("status line", "control byte in reason-phrase", line, section="RFC 9112 §4")
        return _check_status(match.group(1), line, "RFC 9112 §4"), reason

    @staticmethod
    def _parse_status_field(value: bytes, line: bytes) -> tuple[int, bytes]:
        match = _STATUS_VALUE.fullmatch(value)
        if match is None:
            raise WireError("Status", "not 'NNN reason'", line, section=_SECTION_STATUS)
        status = _check_status(match.group(1), line, _SECTION_STATUS)
        return status, match.group(2) or _standard_reason(status)

    def _finish(self, body_start: bytes) -> ResponseHead:
        headers = self._headers
        location: bytes | None = None
        has_content_type = False
        for name, value in headers:
            folded = name.lower()
            if folded == b"location":
                location = value
            elif folded == b"content-type":
                has_content_type = True

        if self._status_line is not None:
            # A raw HTTP response: its status line wins over any Status field, and HTTP allows
            # a head without fields (e.g. "HTTP/1.1 204 No Content").
            status, reason = self._status_line
            return ResponseHead(status, reason, headers, location, body_start, "document")

        if self._status_field is None and location is None and not has_content_type:
            # §6.2: document, local-redirect and client-redirect responses each need at least
            # one CGI field (Content-Type, Location or Status).
            raise WireError(
                "response head",
                "no Content-Type, Location or Status field",
                b"\n".join(name for name, _ in headers),
                section=_SECTION_HEAD,
            )
        if location is None:
            status, reason = self._status_field or (200, b"OK")
            return ResponseHead(status, reason, headers, None, body_start, "document")

        kind: ResponseKind
        if (
            _is_local_location(location)
            and self._status_field is None
            and len(headers) == 1
        ):
            # §6.2.2: local-redir-response = local-Location NL, no other field, no body.
            kind = "local-redirect"
        elif has_content_type:
            kind = "client-redirect-with-document"  # §6.2.4
        else:
            kind = "client-redirect"  # §6.2.3
        # §6.2.3: a redirect without a Status field is a 302 Found.
        status, reason = self._status_field or (302, b"Found")
        return ResponseHead(status, reason, headers, location, body_start, kind)


def _check_status(digits: bytes, line: bytes, section: str) -> int:
    status = int(digits)  # digits: exactly three ASCII digits matched by the caller's regex
    # A final status only: 1xx responses are interim and cannot end a CGI response, and
    # codes above 599 are undefined (RFC 9110 §15).
    if not 200 <= status <= 599:
        raise WireError("status code", f"{status} is not a final status 200-599", line, section=section)
    return status


def _standard_reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _is_local_location(location: bytes) -> bool:
    # §6.2.2: local-Location is an abs-path with an optional query. "//host/p" is a
    # network-path reference to another host, so it is treated as a client redirect.
    return location.startswith(b"/") and not location.startswith(b"//")
