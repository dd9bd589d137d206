"""Seeded fuzzing of the wire codecs: random and mutated input yields values or WireError only.

Any other exception (IndexError, struct.error, ValueError from int(), ...) is a parser bug
that a misbehaving backend could trigger (see h11's fuzz/afl-server.py for the idea).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from frontd.wire import fastcgi, scgi, uwsgi
from frontd.wire.cgi_response import ResponseHeadParser
from frontd.wire.errors import WireError

ITERATIONS = 3000
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

FASTCGI_SEEDS = [
    # Appendix B, example 3 (application side), typed by hand.
    b"\x01\x06\x00\x01\x00\x1e\x02\x00Content-type: text/html\r\n\r\n<ht\x00\x00"
    b"\x01\x07\x00\x01\x00\x1d\x03\x00config error: missing SI_UID\n\x00\x00\x00"
    b"\x01\x06\x00\x01\x00\x0f\x00\x00ml>\n<head> ... "
    b"\x01\x06\x00\x01\x00\x00\x00\x00\x01\x07\x00\x01\x00\x00\x00\x00"
    b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x03\xaa\x00\x00\x00\x00",
    b"\x01\x0b\x00\x00\x00\x08\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00"
    b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00",
]
PARAMS_SEEDS = [
    b"\x0b\x02SERVER_PORT80\x0b\x0eSERVER_ADDR199.170.183.42",
    b"\x04\x80\x00\x01\x2cNAME" + b"v" * 300,
]
SCGI_SEEDS = [
    b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00"
    b"REQUEST_URI\x00/deepthought\x00,What is the answer to life?",
]
UWSGI_SEEDS = [
    b"\x00\x23\x00\x00\x0e\x00REQUEST_METHOD\x03\x00GET\x09\x00PATH_INFO\x01\x00/body",
]
CGI_SEEDS = [
    b"Content-Type: text/html\r\nX-Powered-By: sh\r\n\r\n<html>",
    b"Status: 404 Not Found\nContent-Type: text/plain\n\nnope",
    b"Location: /other?x=1\n\n",
    b"Status: 303 See Other\r\nLocation: http://example.com/\r\nContent-Type: text/html\r\n\r\n<a>",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
]
INTERESTING = [b"\r", b"\n", b"\r\n", b"\x00", b":", b" ", b"\t", b",", b"\xff", b"\x80", b"HTTP/1.1 ", b"0"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:
            del buf[pos:]
        else:
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 16)]
    return bytes(buf)


def inputs(rng: random.Random, seeds: list[bytes]) -> list[bytes]:
    out = []
    for i in range(ITERATIONS):
        if i % 3 == 0:
            out.append(rng.randbytes(rng.randint(0, 64)))
        else:
            out.append(mutate(rng, rng.choice(seeds)))
    return out


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    parts = []
    pos = 0
    while pos < len(data):
        size = rng.choice((1, 2, 3, 7, 64, len(data)))
        parts.append(data[pos : pos + size])
        pos += size
    return parts


def run_fastcgi(rng: random.Random, data: bytes) -> None:
    decoder = fastcgi.FastCGIResponseDecoder(1)
    fed = 0
    for part in chunks(rng, data):
        decoder.receive_data(part)
        fed += len(part)
        while True:
            event = decoder.next_event()
            if event is fastcgi.NEED_DATA:
                break
            assert isinstance(event, (fastcgi.Stdout, fastcgi.Stderr, fastcgi.EndRequest, fastcgi.OtherRequest))
            if isinstance(event, fastcgi.EndRequest):
                assert data[:fed].endswith(decoder.trailing_data)
                return
    decoder.eof()


def run_params(rng: random.Random, data: bytes) -> None:
    pairs = fastcgi.decode_params(data)
    assert sum(len(n) + len(v) for n, v in pairs) <= len(data)


def run_scgi(rng: random.Random, data: bytes) -> None:
    result = scgi.decode_request_head(data)
    if result is not None:
        headers, consumed = result
        assert headers[0][0] == b"CONTENT_LENGTH" and consumed <= len(data)


def run_uwsgi(rng: random.Random, data: bytes) -> None:
    result = uwsgi.decode_request(data)
    if result is not None:
        assert result[1] <= len(data)


def run_cgi(rng: random.Random, data: bytes) -> None:
    parser = ResponseHeadParser(max_size=rng.choice((16, 64, 65536)), allow_status_line=rng.random() < 0.5)
    for part in chunks(rng, data):
        head = parser.feed(part)
        if head is not None:
            # Whatever is accepted can be relayed by h11 unchanged.
            assert 200 <= head.status <= 599
            assert CONTROL.search(head.reason) is None
            for name, value in head.headers:
                assert TOKEN.fullmatch(name) and CONTROL.search(value) is None
                assert name.lower() != b"status"
            return
    parser.eof()


CASES: dict[str, tuple[Callable[[random.Random, bytes], None], list[bytes]]] = {
    "fastcgi": (run_fastcgi, FASTCGI_SEEDS),
    "params": (run_params, PARAMS_SEEDS),
    "scgi": (run_scgi, SCGI_SEEDS),
    "uwsgi": (run_uwsgi, UWSGI_SEEDS),
    "cgi_response": (run_cgi, CGI_SEEDS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_decoders_yield_values_or_wire_error(name: str) -> None:
    run, seeds = CASES[name]
    rng = random.Random(f"frontd-wire-{name}")
    outcomes = {"value": 0, "error": 0}
    for data in inputs(rng, seeds):
        try:
            run(rng, data)
        except WireError:
            outcomes["error"] += 1
        else:
            outcomes["value"] += 1
    # Both outcomes occur, so the mutations reach past the first check.
    assert outcomes["value"] > 0 and outcomes["error"] > 0, outcomes


def random_pairs(rng: random.Random) -> list[tuple[bytes, bytes]]:
    alphabet = [b"A", b"B", b"_", b"\x00", b"1", b"\xff", b""]
    pairs = []
    for _ in range(rng.randint(0, 5)):
        name = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
        value = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.05:
            value *= 30000
        pairs.append((name, value))
    if rng.random() < 0.5:
        pairs.insert(0, (b"CONTENT_LENGTH", rng.choice([b"0", b"12", b"1x", b""])))
    return pairs


def test_encoders_round_trip_or_refuse() -> None:
    rng = random.Random("frontd-wire-encoders")
    for _ in range(ITERATIONS):
        pairs = random_pairs(rng)
        try:
            records = fastcgi.encode_params(1, pairs)
        except WireError:
            assert any(not n or b"\x00" in n + v for n, v in pairs)
        else:
            decoder_input = bytearray()
            pos = 0
            while pos < len(records):
                length = records[pos + 4] << 8 | records[pos + 5]
                decoder_input += records[pos + 8 : pos + 8 + length]
                pos += 8 + length + records[pos + 6]
            assert fastcgi.decode_params(bytes(decoder_input)) == pairs
        try:
            head = scgi.encode_request_head(pairs)
        except WireError:
            pass
        else:
            decoded = scgi.decode_request_head(head)
            assert decoded is not None and decoded[1] == len(head)
            assert [p for p in decoded[0] if p != (b"SCGI", b"1")] == [p for p in pairs if p != (b"SCGI", b"1")]
        try:
            packet = uwsgi.encode_request(pairs)
        except uwsgi.UwsgiTooLarge:
            assert sum(4 + len(n) + len(v) for n, v in pairs) > 65535
        else:
            assert uwsgi.decode_request(packet) == (uwsgi.UwsgiRequest(0, 0, pairs), len(packet))
