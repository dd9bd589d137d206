"""HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): the header a load balancer sends
first on a connection to say which client it carries.

Sans-IO: `header_length` says how long the header at the start of some bytes is (once it can
tell), `parse` decodes a whole header. Nothing here reads a socket; the worker reads exactly the
header's bytes off the raw socket, before TLS, so that what follows is left to the next protocol.
Section numbers are those of proxy-protocol.txt.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Literal

from frontd.wire.errors import WireError

# §2.2: the v2 signature, chosen so that no v1 header and no HTTP request can start with it.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
# §2.1: "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n" is the longest v1 line.
V1_MAX_LENGTH = 107
V2_FIXED_LENGTH = 16
# §2.2: the address block of each family; TLVs (§2.2.7) fill the rest of the length.
_V2_ADDRESS_LENGTH = {0x1: 12, 0x2: 36, 0x3: 216}
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")

Command = Literal["PROXY", "LOCAL"]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header said. `source` is None when the connection's own endpoints stand (a LOCAL
    command, an UNKNOWN or unspecified family, Unix-socket addresses)."""

    version: int
    command: Command
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def header_length(data: bytes) -> int | None:
    """The length of the header at the start of `data`, or None while more bytes are needed.

    Raises WireError as soon as the bytes cannot start a header, so a client that speaks HTTP
    straight away is refused without waiting for bytes that will not come.
    """
    if not data:
        return None
    if data[:1] == b"\r":
        if not V2_SIGNATURE.startswith(data[:12]):
            raise WireError("PROXY v2 signature", "does not match", data, section="proxy-protocol.txt §2.2")
        if len(data) < V2_FIXED_LENGTH:
            return None
        (length,) = struct.unpack_from("!H", data, 14)
        return V2_FIXED_LENGTH + length
    if not V1_PREFIX.startswith(data[:6]):
        raise WireError("PROXY header", "neither a v1 nor a v2 signature", data, section="proxy-protocol.txt §2")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end >= 0:
        return end + 2
    if len(data) >= V1_MAX_LENGTH or b"\n" in data[:V1_MAX_LENGTH]:
        raise WireError("PROXY v1 line", f"no CRLF within {V1_MAX_LENGTH} bytes", data, section="proxy-protocol.txt §2.1")
    return None


def parse(header: bytes) -> ProxyHeader:
    """Decode one whole header (exactly `header_length` bytes)."""
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    return _parse_v1(header)


def _parse_v1(line: bytes) -> ProxyHeader:
    section = "proxy-protocol.txt §2.1"
    if not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n") or len(line) > V1_MAX_LENGTH:
        raise WireError("PROXY v1 line", "not \"PROXY \" ... CRLF", line, section=section)
    fields = line[:-2].split(b" ")
    if fields[1] == b"UNKNOWN":
        # §2.1: the receiver must ignore anything after UNKNOWN and use the real endpoints.
        return ProxyHeader(1, "PROXY")
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise WireError("PROXY v1 line", "expected TCP4, TCP6 or UNKNOWN with two addresses and two ports",
                        line, section=section)
    version = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], version, line), _v1_port(fields[4], line)
    destination = _v1_address(fields[3], version, line), _v1_port(fields[5], line)
    return ProxyHeader(1, "PROXY", source, destination)


def _v1_address(text: bytes, version: int, line: bytes) -> str:
    try:
        ip = ipaddress.ip_address(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        ip = None
    if ip is None or ip.version != version:
        raise WireError("PROXY v1 address", f"not an IPv{version} address", text, section="proxy-protocol.txt §2.1")
    return str(ip)


def _v1_port(text: bytes, line: bytes) -> int:
    # §2.1: a decimal integer in 0..65535 without leading zeroes.
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise WireError("PROXY v1 port", "not a port number (0..65535, no leading zero)", text,
                        section="proxy-protocol.txt §2.1")
    return int(text)


def _parse_v2(header: bytes) -> ProxyHeader:
    section = "proxy-protocol.txt §2.2"
    if len(header) < V2_FIXED_LENGTH:
        raise WireError("PROXY v2 header", "shorter than 16 bytes", header, section=section)
    ver_cmd, family_protocol, length = struct.unpack_from("!BBH", header, 12)
    if len(header) != V2_FIXED_LENGTH + length:
        raise WireError("PROXY v2 len", f"{length} does not match the {len(header) - 16} bytes given", header[:16],
                        section=section)
    # §2.2: the high nibble is the version (2); the low one LOCAL (0) or PROXY (1), nothing else.
    if ver_cmd >> 4 != 2:
        raise WireError("PROXY v2 version", f"{ver_cmd >> 4}, expected 2", header[12:13], section=section)
    if ver_cmd & 0xF not in (0, 1):
        raise WireError("PROXY v2 command", f"{ver_cmd & 0xF} is neither LOCAL (0) nor PROXY (1)", header[12:13],
                        section=section)
    family, protocol = family_protocol >> 4, family_protocol & 0xF
    if family > 3 or protocol > 2:
        raise WireError("PROXY v2 family", f"unassigned family {family} or protocol {protocol}", header[13:14],
                        section=section)
    block = header[V2_FIXED_LENGTH:]
    address_length = _V2_ADDRESS_LENGTH.get(family, 0)
    if len(block) < address_length:
        raise WireError("PROXY v2 addresses", f"{len(block)} bytes, family {family} needs {address_length}",
                        header[12:16], section=section)
    _check_tlvs(block[address_length:])
    # §2.2: LOCAL (a balancer's own health check) keeps the connection's endpoints whatever the
    # family says; so do an unspecified family and Unix-socket addresses.
    if ver_cmd & 0xF == 0 or family in (0, 3):
        return ProxyHeader(2, "LOCAL" if ver_cmd & 0xF == 0 else "PROXY")
    size = 4 if family == 1 else 16
    source_ip = ipaddress.ip_address(block[:size])
    destination_ip = ipaddress.ip_address(block[size:2 * size])
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * size)
    return ProxyHeader(2, "PROXY", (_plain(source_ip), source_port), (_plain(destination_ip), destination_port))


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """IPv4-mapped IPv6 as IPv4, as every other client address is compared and logged."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _check_tlvs(data: bytes) -> None:
    """§2.2.7: type (1 byte), length (2 bytes), value; none may run past the header. Their
    contents (ALPN, authority, CRC, SSL, ...) are skipped."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise WireError("PROXY v2 TLV", "a TLV header cut short", data[pos:], section="proxy-protocol.txt §2.2.7")
        (length,) = struct.unpack_from("!H", data, pos + 1)
        if pos + 3 + length > len(data):
            raise WireError("PROXY v2 TLV", f"type 0x{data[pos]:02x} of {length} bytes runs past the header",
                            data[pos:pos + 3], section="proxy-protocol.txt §2.2.7")
        pos += 3 + length
