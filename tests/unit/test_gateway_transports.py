"""The framing of the FastCGI, SCGI and uwsgi transports, without sockets: what `encode_head`
makes of the meta-variables, and how replies are decoded."""

from __future__ import annotations

import struct

import pytest

from frontd.config.model import Address, Route
from frontd.errors import HeaderFieldsTooLarge, ServiceUnavailable
from frontd.gateway.fastcgi import FastCGIRoute, FastCGITransport, printable
from frontd.gateway.scgi import SCGITransport
from frontd.gateway.backends import BackendSet
from frontd.gateway.uwsgi import UwsgiRoute, UwsgiTransport
from frontd.request import Request
from frontd.wire.errors import WireError

BACKEND = (Address("unix", path="/run/app.sock"),)
ENVIRON = {b"REQUEST_METHOD": b"GET", b"SCRIPT_NAME": b"/app", b"PATH_INFO": b"/x", b"QUERY_STRING": b""}


def request() -> Request:
    return Request(method="GET", target="/app/x", path="/app/x", raw_path="/app/x", query="", http_version="1.1",
                   headers=[], host="app.test", client_addr="127.0.0.1", client_port=5000,
                   server_addr="127.0.0.1", server_port=80)


def fastcgi(keepalive: int = 0) -> FastCGITransport:
    route = Route(prefix="/app/", kind="fastcgi", backends=BACKEND, keepalive=keepalive)
    return FastCGITransport(FastCGIRoute(route), request())


def record(rtype: int, content: bytes, padding: int = 0) -> bytes:
    return struct.pack(">BBHHBx", 1, rtype, 1, len(content), padding) + content + b"\0" * padding


# -- FastCGI ---------------------------------------------------------------------------------


def test_fastcgi_head_without_body_is_the_whole_request() -> None:
    transport = fastcgi()
    head = transport.encode_head(ENVIRON, None)
    # BEGIN_REQUEST {RESPONDER, flags 0}, PARAMS..., empty PARAMS, empty STDIN: one write.
    assert head.startswith(b"\x01\x01\x00\x01\x00\x08\x00\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00")
    assert head.endswith(b"\x01\x04\x00\x01\x00\x00\x00\x00" + b"\x01\x05\x00\x01\x00\x00\x00\x00")
    assert b"\x0e\x03REQUEST_METHODGET" in head
    assert transport.encode_end() == b""  # the empty STDIN already went out


def test_fastcgi_head_with_body_leaves_stdin_open() -> None:
    transport = fastcgi(keepalive=2)
    head = transport.encode_head({**ENVIRON, b"CONTENT_LENGTH": b"3"}, 3)
    assert head[8:11] == b"\x00\x01\x01"  # FCGI_KEEP_CONN with keepalive
    assert not head.endswith(b"\x01\x05\x00\x01\x00\x00\x00\x00")
    assert transport.encode_body(b"abc") == b"\x01\x05\x00\x01\x00\x03\x05\x00abc\0\0\0\0\0"
    assert transport.encode_end() == b"\x01\x05\x00\x01\x00\x00\x00\x00"
    assert transport.encode_end() == b""


def test_fastcgi_decode_stdout_stderr_end(caplog: pytest.LogCaptureFixture) -> None:
    transport = fastcgi()
    data = (record(6, b"Status: 200\r\n", 3) + record(7, b"warn\x1b[0m\n") + record(6, b"\r\nbody")
            + record(6, b"") + record(3, b"\0\0\0\0\0\0\0\0"))
    out = b"".join(transport.decode(data[i:i + 5]) for i in range(0, len(data), 5))
    assert out == b"Status: 200\r\n\r\nbody"
    assert transport.finished
    assert "fastcgi stderr: warn\\x1b[0m, client: 127.0.0.1" in caplog.text


@pytest.mark.parametrize("status", [1, 2, 3, 9])
def test_fastcgi_rejected_request_is_503(status: int) -> None:
    with pytest.raises(ServiceUnavailable):
        fastcgi().decode(record(3, struct.pack(">IB3x", 0, status)))


def test_fastcgi_eof_before_end_request_is_an_error() -> None:
    transport = fastcgi()
    transport.decode(record(6, b"Content-Type: text/plain\r\n\r\n"))
    with pytest.raises(WireError):
        transport.decode(b"")


def test_printable_escapes_controls() -> None:
    assert printable(b"a\tb\x00c\x7f\xff") == "a\tb\\x00c\\x7f\\xff"


# -- SCGI ------------------------------------------------------------------------------------


def scgi() -> SCGITransport:
    return SCGITransport(BackendSet(BACKEND, 1.0, 0, name="scgi"))


def test_scgi_content_length_first_and_zero_without_body() -> None:
    head = scgi().encode_head({**ENVIRON, b"SCGI": b"1"}, None)
    assert head.startswith(b"%d:CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00GET\x00" % (len(head) - 4,))
    assert head.count(b"SCGI\x00") == 1 and head.endswith(b"\x00,")


def test_scgi_content_length_moved_to_the_front() -> None:
    head = scgi().encode_head({**ENVIRON, b"CONTENT_LENGTH": b"12"}, 12)
    body = head.split(b":", 1)[1]
    assert body.startswith(b"CONTENT_LENGTH\x0012\x00SCGI\x001\x00")
    assert body.count(b"CONTENT_LENGTH") == 1


# -- uwsgi -----------------------------------------------------------------------------------


def uwsgi(env: tuple[tuple[str, str], ...] = ()) -> UwsgiTransport:
    return UwsgiTransport(UwsgiRoute(Route(prefix="/app/", kind="uwsgi", backends=BACKEND, env=env)))


def test_uwsgi_packet() -> None:
    head = uwsgi().encode_head({b"REQUEST_METHOD": b"GET"}, None)
    assert head == b"\x00\x15\x00\x00" + b"\x0e\x00REQUEST_METHOD\x03\x00GET"


def test_uwsgi_magic_variables_only_from_route_env() -> None:
    environ = {**ENVIRON, b"UWSGI_FILE": b"/tmp/x.py", b"UWSGI_SCHEME": b"https", b"HTTP_UWSGI_FILE": b"y"}
    head = uwsgi((("UWSGI_SCHEME", "https"),)).encode_head(environ, None)
    assert b"UWSGI_FILE" not in head.replace(b"HTTP_UWSGI_FILE", b"")
    assert b"UWSGI_SCHEME" in head and b"HTTP_UWSGI_FILE" in head


def test_uwsgi_vars_limit_just_under_and_over() -> None:
    # 4 bytes of lengths + 6 of name per var: pad to exactly 65535 bytes, then one byte more.
    fill = 65535 - (4 + len(b"X_PAD_"))
    assert len(uwsgi().encode_head({b"X_PAD_": b"v" * fill}, None)) == 4 + 65535
    with pytest.raises(HeaderFieldsTooLarge):
        uwsgi().encode_head({b"X_PAD_": b"v" * (fill + 1)}, None)
