"""The ClientHello peeker: server_name and ALPN from the first bytes of a TLS connection."""

from __future__ import annotations

import random
import ssl

import pytest

from frontd.protocol.client_hello import ClientHello, parse_client_hello
from frontd.wire.errors import WireError

# Typed from RFC 8446 §5.1 (record), §4 and §4.1.2 (ClientHello), RFC 6066 §3 (server_name) and
# RFC 7301 §3.1 (ALPN): a TLS 1.3 ClientHello for example.com offering "acme-tls/1" (RFC 8737 §6.2).
EXTENSIONS = (
    b"\x00\x00\x00\x10"                  # server_name, 16 bytes
    b"\x00\x0e"                          #   ServerNameList, 14 bytes
    b"\x00\x00\x0bexample.com"           #   host_name (0), 11 bytes
    b"\x00\x10\x00\x0d"                  # application_layer_protocol_negotiation, 13 bytes
    b"\x00\x0b"                          #   ProtocolNameList, 11 bytes
    b"\x0aacme-tls/1"                    #   "acme-tls/1"
    b"\x00\x2b\x00\x03\x02\x03\x04"      # supported_versions: TLS 1.3
)
BODY = (
    b"\x03\x03"                          # legacy_version TLS 1.2
    + b"\x11" * 32                       # random
    + b"\x00"                            # legacy_session_id, empty
    + b"\x00\x02\x13\x01"                # cipher_suites: TLS_AES_128_GCM_SHA256
    + b"\x01\x00"                        # legacy_compression_methods: null
    + b"\x00\x2c" + EXTENSIONS           # extensions, 44 bytes
)
HANDSHAKE = b"\x01\x00\x00\x57" + BODY    # client_hello, 87 bytes
RECORD = b"\x16\x03\x01\x00\x5b" + HANDSHAKE  # handshake record, 91 bytes
EXPECTED = ClientHello("example.com", ("acme-tls/1",))


def test_whole_hello() -> None:
    assert len(BODY) == 0x57 and len(HANDSHAKE) == 0x5b
    assert parse_client_hello(RECORD) == EXPECTED


def test_byte_by_byte_then_trailing_bytes_untouched() -> None:
    for end in range(len(RECORD)):
        assert parse_client_hello(RECORD[:end]) is None, end
    # What follows (the client's next records) does not change the result.
    assert parse_client_hello(RECORD + b"\x14\x03\x03\x00\x01\x01") == EXPECTED


def test_hello_split_across_records() -> None:
    # RFC 8446 §5.1: a handshake message may be fragmented over several records.
    first, second = HANDSHAKE[:40], HANDSHAKE[40:]
    data = b"\x16\x03\x01\x00\x28" + first + b"\x16\x03\x01\x00" + bytes([len(second)]) + second
    for end in range(len(data)):
        assert parse_client_hello(data[:end]) is None, end
    assert parse_client_hello(data) == EXPECTED


def test_no_extensions() -> None:
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
    hello = b"\x01\x00\x00" + bytes([len(body)]) + body
    assert parse_client_hello(b"\x16\x03\x01\x00" + bytes([len(hello)]) + hello) == ClientHello(None, ())


@pytest.mark.parametrize("data, field", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "TLSPlaintext.type"),
    (b"\x16\x03\x01\x00\x00", "TLSPlaintext.length"),
    (b"\x16\x03\x01\x40\x01", "TLSPlaintext.length"),  # 2^14 + 1
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "Handshake.msg_type"),  # a ServerHello first
    (b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "Handshake.length"),
])
def test_malformed_records(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_client_hello(data)
    assert info.value.field == field


def _with_extensions(extensions: bytes) -> bytes:
    body = BODY[:-(2 + len(EXTENSIONS))] + len(extensions).to_bytes(2, "big") + extensions
    hello = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello


@pytest.mark.parametrize("extensions, field", [
    (EXTENSIONS + b"\x00\x2b\x00\x03\x02\x03\x04", "ClientHello.extensions"),  # supported_versions twice
    (b"\x00\x10\x00\x02\x00\x00", "protocol_name_list"),  # empty ProtocolNameList
    (b"\x00\x10\x00\x03\x00\x01\x00", "protocol_name"),  # empty ProtocolName
    (b"\x00\x10\x00\x04\x00\x05\x01a", "negotiation.protocol_name_list"),  # list longer than its extension
    (b"\x00\x00\x00\x06\x00\x04\x00\x00\x01\x00", "server_name.host_name"),  # NUL in the name
])
def test_malformed_extensions(extensions: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_client_hello(_with_extensions(extensions))
    assert info.value.field.endswith(field)


def openssl_hello(server_name: str, alpn: list[str]) -> bytes:
    """The ClientHello that the real OpenSSL behind Python's ssl sends."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_openssl_client_hello() -> None:
    data = openssl_hello("WWW.Example.Test", ["acme-tls/1", "http/1.1"])
    assert parse_client_hello(data) == ClientHello("www.example.test", ("acme-tls/1", "http/1.1"))
    assert parse_client_hello(data[:-1]) is None


def test_seeded_mutations_yield_a_result_or_wire_error() -> None:
    rng = random.Random(8737)
    base = openssl_hello("example.test", ["acme-tls/1"])
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            result = parse_client_hello(bytes(data[:rng.randint(0, len(data))]))
        except WireError:
            continue
        assert result is None or isinstance(result, ClientHello)
