"""The TLS ClientHello, read before the handshake: which server name and which ALPN protocols.

Sans-IO: `parse_client_hello` takes the bytes a client sent first (read with MSG_PEEK, so that the
TLS library still sees them) and returns the server_name (RFC 6066 §3) and the ALPN protocol list
(RFC 7301 §3.1), or None while the ClientHello is incomplete. Malformed input is a WireError.

Why frontd needs it: RFC 8737 (ACME tls-alpn-01) asks the server to present a special certificate
when, and only when, the client offers ALPN "acme-tls/1". Python's ssl chooses the certificate in
the SNI callback, before the ALPN list is visible to it, so the choice is made here instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from frontd.wire.errors import WireError

RECORD_HEADER = 5
MAX_RECORD = 1 << 14  # RFC 8446 §5.1: TLSPlaintext.length must not exceed 2^14
MAX_CLIENT_HELLO = 1 << 16  # the handshake message, across records; real ones are under 2 KiB
CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
NAME_TYPE_HOST_NAME = 0


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str | None  # the host_name, lower case, as sent (ASCII; IDNA A-labels)
    alpn: tuple[str, ...]  # in the client's order; () when it sent no ALPN extension


class _Reader:
    """Bounds-checked reads from one structure; every overrun names the field."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, count: int, field: str) -> bytes:
        if self.pos + count > len(self.data):
            raise WireError(f"{self.where}.{field}", f"needs {count} bytes, {len(self.data) - self.pos} left",
                            self.data[self.pos:], section="RFC 8446 §4.1.2")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def number(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, size: int, field: str) -> bytes:
        """A `<..>` vector: a `size`-byte length, then that many bytes."""
        return self.take(self.number(size, field), field)

    def done(self) -> bool:
        return self.pos == len(self.data)


def handshake_bytes(data: bytes) -> bytes | None:
    """The handshake bytes carried by the leading TLS records, or None when more are needed to
    hold a whole ClientHello (RFC 8446 §5.1: a handshake message may span records)."""
    body = bytearray()
    pos = 0
    while True:
        if len(body) >= 4:
            need = 4 + int.from_bytes(body[1:4], "big")
            if need > MAX_CLIENT_HELLO:
                raise WireError("Handshake.length", f"over {MAX_CLIENT_HELLO} bytes", bytes(body[:4]),
                                section="RFC 8446 §4")
            if len(body) >= need:
                return bytes(body[:need])
        if len(data) - pos < RECORD_HEADER:
            return None
        header = data[pos:pos + RECORD_HEADER]
        if header[0] != CONTENT_HANDSHAKE:
            raise WireError("TLSPlaintext.type", "not a handshake record", header, section="RFC 8446 §5.1")
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > MAX_RECORD:
            raise WireError("TLSPlaintext.length", f"must be 1 to {MAX_RECORD}", header, section="RFC 8446 §5.1")
        if len(data) - pos - RECORD_HEADER < length:
            return None
        body += data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The server name and ALPN list of the ClientHello at the start of `data`; None until complete."""
    message = handshake_bytes(data)
    if message is None:
        return None
    if message[0] != HANDSHAKE_CLIENT_HELLO:
        raise WireError("Handshake.msg_type", "the first message is not a ClientHello", message[:4],
                        section="RFC 8446 §4")
    hello = _Reader(message[4:], "ClientHello")
    hello.take(2 + 32, "legacy_version/random")
    hello.vector(1, "legacy_session_id")
    hello.vector(2, "cipher_suites")
    hello.vector(1, "legacy_compression_methods")
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if hello.done():
        return ClientHello(None, ())  # a TLS 1.2 ClientHello may have no extensions at all
    extensions = _Reader(hello.vector(2, "extensions"), "ClientHello.extensions")
    seen: set[int] = set()
    while not extensions.done():
        kind = extensions.number(2, "extension_type")
        value = extensions.vector(2, "extension_data")
        if kind in seen:
            # RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type".
            raise WireError("ClientHello.extensions", f"extension {kind} twice", value, section="RFC 8446 §4.2")
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            server_name = _server_name(value)
        elif kind == EXT_ALPN:
            alpn = _alpn(value)
    return ClientHello(server_name, alpn)


def _server_name(value: bytes) -> str | None:
    """RFC 6066 §3: ServerNameList; the host_name entry (at most one of each type)."""
    names = _Reader(_Reader(value, "server_name").vector(2, "server_name_list"), "server_name_list")
    found: str | None = None
    while not names.done():
        name_type = names.number(1, "name_type")
        name = names.vector(2, "host_name")
        if name_type != NAME_TYPE_HOST_NAME:
            continue
        if not name or not name.isascii() or b"\x00" in name:
            raise WireError("server_name.host_name", "not an ASCII host name", name, section="RFC 6066 §3")
        found = name.decode("ascii").lower().rstrip(".")
    return found


def _alpn(value: bytes) -> tuple[str, ...]:
    """RFC 7301 §3.1: ProtocolNameList of non-empty ProtocolNames."""
    outer = _Reader(value, "application_layer_protocol_negotiation")
    names = _Reader(outer.vector(2, "protocol_name_list"), "protocol_name_list")
    if names.done():
        raise WireError("protocol_name_list", "empty", value, section="RFC 7301 §3.1")
    protocols: list[str] = []
    while not names.done():
        name = names.vector(1, "protocol_name")
        if not name:
            raise WireError("protocol_name", "empty", value, section="RFC 7301 §3.1")
        protocols.append(name.decode("latin-1"))
    return tuple(protocols)
