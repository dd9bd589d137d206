"""WireError: bytes a peer sent (or values we were asked to send) that a wire format forbids.

Every codec in `frontd.wire` raises it; the gateway layer maps it to a status (502 for a
backend's reply, 431 for `UwsgiTooLarge`). The message is meant for one error-log line: the
field, the offending bytes and the spec section, so a misbehaving backend can be diagnosed
without a packet capture.
"""

from __future__ import annotations

# Enough bytes to recognise a header line or a record prefix, few enough for one log line.
MAX_SHOWN_BYTES = 48


class WireError(Exception):
    """A protocol violation found by a `frontd.wire` codec.

    `field` names what was being parsed or built ("FCGI_Header.version", "Status"), `problem`
    says what is wrong, `data` holds (at most `MAX_SHOWN_BYTES` of) the offending bytes and
    `section` cites the spec ("FastCGI 1.0 §3.3", "RFC 3875 §6.3.3").
    """

    field: str
    problem: str
    data: bytes
    section: str

    def __init__(
        self,
        field: str,
        problem: str,
        data: bytes | bytearray | memoryview = b"",
        *,
        section: str,
    ) -> None:
        # Keep a bounded copy: the exception may outlive a 64 KiB receive buffer.
        shown = bytes(data[: MAX_SHOWN_BYTES + 1])
        truncated = len(shown) > MAX_SHOWN_BYTES
        self.field = field
        self.problem = problem
        self.data = shown[:MAX_SHOWN_BYTES]
        self.section = section
        suffix = "..." if truncated else ""
        super().__init__(f"{field}: {problem}: {self.data!r}{suffix} ({section})")
