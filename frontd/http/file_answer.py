"""A backend's answer that names a file instead of carrying it: X-Sendfile, X-Accel-Redirect.

`file_answer` looks at the fields of a gateway's or a proxied backend's response head (only on
routes with `x_sendfile`) and splits them: the fields that ask frontd to send a file, and the
fields kept for the client. The fields that describe the backend's own body (its length,
validators, ranges, framing) are dropped: frontd discards that body and the file's own replace
them. What the request then gets is decided above (`frontd.handlers.x_sendfile`); this module
only reads fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from frontd.http.headers import HOP_BY_HOP

# lighttpd's and Apache mod_xsendfile's field (a filesystem path), nginx's (a URI).
X_SENDFILE: Final = b"x-sendfile"
X_ACCEL_REDIRECT: Final = b"x-accel-redirect"
FILE_FIELDS: Final = frozenset({X_SENDFILE, X_ACCEL_REDIRECT})
# The backend's body is discarded: what described it goes with it; the file's fields replace
# them. Server and Date are the connection's own.
_REPLACED: Final = HOP_BY_HOP | {b"content-length", b"etag", b"last-modified", b"content-range",
                                 b"accept-ranges", b"server", b"date"}


@dataclass(frozen=True, slots=True)
class FileAnswer:
    """The file fields of a response head (lower-case name, value), in order (normally one),
    and the other fields, lower-cased, for the client."""

    fields: tuple[tuple[bytes, bytes], ...]
    kept: list[tuple[bytes, bytes]]

    @property
    def content_type(self) -> bytes | None:
        for name, value in self.kept:
            if name == b"content-type":
                return value
        return None


def file_answer(headers: Iterable[tuple[bytes, bytes]]) -> FileAnswer | None:
    """The FileAnswer of a response head that has an X-Sendfile or X-Accel-Redirect field,
    else None (the response is relayed as it is)."""
    fields: list[tuple[bytes, bytes]] = []
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in FILE_FIELDS:
            fields.append((lower, value))
        elif lower not in _REPLACED:
            kept.append((lower, value))
    if not fields:
        return None
    return FileAnswer(tuple(fields), kept)
