"""The known HTTP/2 attacks against a real frontd, each from an h2-based client (h2_client.py).

Each test checks the defence (GOAWAY, RST_STREAM or a closed connection, with a log line) and
that the worker goes on serving other clients. The server is test_http2.py's module server.
"""

from __future__ import annotations

import os
import time

import h2.errors
import h2.settings
import hpack
import hyperframe.frame
from hpack.hpack import encode_integer

from tests.conftest import wait_for
from tests.integration.h2_client import H2Client, Stream
from tests.integration.test_http2 import H2Server, backends, captures, srv  # noqa: F401 - the fixtures

PREFACE_HEADERS = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/hello.txt")]


def still_serving(srv: H2Server) -> None:
    with srv.client() as other:
        assert other.get("/hello.txt").status == 200


def worker_rss(srv: H2Server) -> int:
    pid = int(srv.server.wait_error_log(r"worker (\d+) started").group(1))
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def send_quietly(client: H2Client, data: bytes) -> None:
    """Write what the attack sends; the server may close before all of it is taken."""
    try:
        client.raw(data)
    except OSError:
        pass


def expect_goaway(client: H2Client, code: int) -> None:
    """The server closes the connection; its GOAWAY carries `code` when the client got it (a close
    with the attack's bytes unread may reset the connection before the GOAWAY is read)."""
    client.wait_closed()
    if client.goaway is not None:
        assert client.goaway.error_code == code


def open_and_reset(client: H2Client, count: int) -> None:
    """`count` streams, each opened and reset at once, sent in one write."""
    for _ in range(count):
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, PREFACE_HEADERS, end_stream=True)
        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    send_quietly(client, client.conn.data_to_send())


def test_rapid_reset_gets_goaway_enhance_your_calm(srv: H2Server) -> None:
    """CVE-2023-44487: streams opened and reset at once cost the server a handler each."""
    with srv.client() as c:
        open_and_reset(c, 300)
        expect_goaway(c, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    srv.server.wait_error_log(r"reset \d+ streams .*ENHANCE_YOUR_CALM")
    srv.server.wait_access_log(r'"GET /hello.txt HTTP/2\.0" 499')
    still_serving(srv)


def test_a_few_cancelled_streams_are_fine(srv: H2Server) -> None:
    with srv.client() as c:
        open_and_reset(c, 20)
        assert c.get("/hello.txt").status == 200 and c.goaway is None


def test_continuation_flood_is_bounded(srv: H2Server) -> None:
    """CVE-2024-27316 family: a header block that never ends must not be buffered without end."""
    with srv.client() as c:
        c.flush()
        block = hpack.Encoder().encode(PREFACE_HEADERS)
        frames = [hyperframe.frame.HeadersFrame(1, data=block, flags=["END_STREAM"]).serialize()]
        piece = hyperframe.frame.ContinuationFrame(1, data=b"\x00" * 16384).serialize()
        rss = worker_rss(srv)
        send_quietly(c, b"".join(frames))
        send_quietly(c, piece * 1000)  # 16 MiB if it were all taken
        expect_goaway(c, h2.errors.ErrorCodes.PROTOCOL_ERROR)
    srv.server.wait_error_log(r"Too many continuation frames")
    assert worker_rss(srv) - rss < 8 * 1024 * 1024
    still_serving(srv)


def test_hpack_bomb_is_bounded(srv: H2Server) -> None:
    """One large field in the dynamic table, then a block naming it thousands of times."""
    with srv.client() as c:
        c.flush()
        encoder = hpack.Encoder()
        bomb = ("x-bomb", "b" * 4000)
        first = encoder.encode([*PREFACE_HEADERS, bomb])
        c.raw(hyperframe.frame.HeadersFrame(1, data=first, flags=["END_STREAM", "END_HEADERS"]).serialize())
        index = encoder.header_table.search(b"x-bomb", b"b" * 4000)[0]  # type: ignore[index]
        ref = bytearray(encode_integer(index, 7))
        ref[0] |= 0x80  # RFC 7541 §6.1: indexed header field
        second = encoder.encode(PREFACE_HEADERS) + bytes(ref) * 4000  # 16 MB once decoded
        send_quietly(c, hyperframe.frame.HeadersFrame(3, data=second, flags=["END_STREAM", "END_HEADERS"]).serialize())
        expect_goaway(c, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    srv.server.wait_error_log(r"Oversized header block")
    still_serving(srv)


def test_header_list_over_max_header_size_is_431(srv: H2Server) -> None:
    with srv.client() as c:
        answer = c.get("/hello.txt", [("x-big", "v" * 9000)])  # max_header_size = 8KiB
        assert answer.status == 431
        assert c.get("/hello.txt", [("x-big", "v" * 7000)]).status == 200


def flood(srv: H2Server, frame: bytes, count: int, setup: bool = False) -> None:
    with srv.client() as c:
        if setup:
            c.request("/wait/slow.cgi", "POST", end=False)
        c.flush()
        send_quietly(c, frame * count)
        expect_goaway(c, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    srv.server.wait_error_log(r"flood of SETTINGS/PING/PRIORITY/empty DATA")
    still_serving(srv)


def test_ping_flood(srv: H2Server) -> None:
    flood(srv, hyperframe.frame.PingFrame(0, opaque_data=b"12345678").serialize(), 3000)


def test_settings_flood(srv: H2Server) -> None:
    flood(srv, hyperframe.frame.SettingsFrame(0).serialize(), 3000)


def test_empty_data_flood(srv: H2Server) -> None:
    flood(srv, hyperframe.frame.DataFrame(1, data=b"").serialize(), 3000, setup=True)


def test_zero_window_held_open_is_reset_after_send_timeout(srv: H2Server) -> None:
    with srv.client(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}) as c:
        sid = c.request("/big.bin")
        started = time.monotonic()
        c.wait(lambda: c.streams[sid].reset is not None, timeout=15, what="the stream's reset")
        assert c.streams[sid].reset == h2.errors.ErrorCodes.CANCEL
        assert c.streams[sid].status == 200 and not c.streams[sid].body
        assert time.monotonic() - started >= 1.5  # send_timeout = "2s"
    srv.server.wait_error_log(r"window stayed shut for 2s")
    still_serving(srv)


def test_stream_id_exhaustion(srv: H2Server) -> None:
    """The last client stream id is served; an id at or below it after that ends the connection."""
    with srv.client() as c:
        last = 2**31 - 1
        c.conn.send_headers(last, PREFACE_HEADERS, end_stream=True)
        c.streams[last] = Stream()
        c.flush()
        assert c.response(last).status == 200
        # h2 would not send this: a new stream below the last one (RFC 9113 §5.1.1).
        block = hpack.Encoder().encode(PREFACE_HEADERS)
        send_quietly(c, hyperframe.frame.HeadersFrame(5, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize())
        c.wait_closed()
        # Nothing unread here: the GOAWAY arrives.
        assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert c.goaway.last_stream_id == last
    still_serving(srv)


def test_client_that_never_reads(srv: H2Server) -> None:
    """Windows wide open, nothing read: the server stops at its buffer, then send_timeout ends it."""
    big = 2**31 - 1
    rss = worker_rss(srv)
    c = H2Client(srv.tls, context=srv.site.client_context(), auto_ack=False,
                 settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: big})
    try:
        c.conn.increment_flow_control_window(big - 65535)
        for _ in range(10):
            c.request("/big.bin")  # 40 MiB asked for
        ping = hyperframe.frame.PingFrame(0, opaque_data=b"87654321").serialize()
        send_quietly(c, ping * 500)  # answers that must not pile up either
        # Meanwhile other clients are served.
        still_serving(srv)
        srv.server.wait_error_log(r"HTTP/2 client read nothing for 2s; closing", timeout=20)
        assert worker_rss(srv) - rss < 16 * 1024 * 1024
    finally:
        c.close()
    still_serving(srv)


def test_memory_and_fds_after_the_attacks(srv: H2Server) -> None:
    pid = int(srv.server.wait_error_log(r"worker (\d+) started").group(1))
    wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) < 40, what="connections closed")


def test_malformed_requests(srv: H2Server) -> None:
    """RFC 9113 §8.2.2, §8.3: connection-specific fields, a te other than trailers and upper-case
    names end the connection (PROTOCOL_ERROR), as does a request with neither :authority nor Host."""
    for fields in [[("connection", "keep-alive")], [("te", "gzip")], [("X-Upper", "1")],
                   [("transfer-encoding", "chunked")], [("x-space", " before")], [("x-nul", "a\x00b")],
                   [(":path", "/again")], [("accept", "*/*"), (":custom", "1")], [("host", "b.test")]]:
        with srv.client() as c:
            c.flush()
            block = hpack.Encoder().encode([*PREFACE_HEADERS, *fields])
            send_quietly(c, hyperframe.frame.HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize())
            c.wait_closed()
            assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR, fields
    with srv.client() as c:
        assert c.get("/hello.txt", [("te", "trailers")]).status == 200
        c.conn.config.validate_outbound_headers = False  # h2 would not send it
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":path", "/hello.txt")], end_stream=True)
        c.flush()
        c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_trailers_with_a_pseudo_header_field_end_the_connection(srv: H2Server) -> None:
    """RFC 9113 §8.1: trailers carry no pseudo-header field; a block that does is malformed."""
    with srv.client() as c:
        c.flush()
        encoder = hpack.Encoder()
        head = encoder.encode([(":method", "POST"), *PREFACE_HEADERS[1:3], (":path", "/hello.txt")])
        trailers = encoder.encode([(":path", "/other")])
        send_quietly(c, hyperframe.frame.HeadersFrame(1, data=head, flags=["END_HEADERS"]).serialize()
                     + hyperframe.frame.HeadersFrame(1, data=trailers, flags=["END_STREAM", "END_HEADERS"]).serialize())
        c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    still_serving(srv)
