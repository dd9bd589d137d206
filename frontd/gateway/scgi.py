"""The SCGI transport (protocol.txt, 2008-06-23): one request per connection, read to EOF.

`SCGIGateway` is the transport factory for scgi routes, built once per worker with a
`BackendSet` per route (round-robin and passive health; SCGI has no keep-alive, §2, so nothing
is pooled). A request is the netstring head, `CONTENT_LENGTH` first and always present ("0"
without a body), then `SCGI: 1` (§3), then exactly CONTENT_LENGTH body bytes; chunked bodies
were spooled by the handler to learn that length. The reply is CGI-style, or starts with an
HTTP status line as many SCGI servers send one; it ends when the server closes (§2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from frontd.config.model import Config, Route
from frontd.gateway.backends import BackendConnection, BackendSet
from frontd.gateway.exchange import StreamTransport
from frontd.request import Request
from frontd.wire.scgi import CONTENT_LENGTH, SCGI, encode_request_head

_SCGI_1: Final = (SCGI, b"1")
_NO_BODY: Final = (CONTENT_LENGTH, b"0")


class SCGIGateway:
    """The transport factory for scgi routes: `gateway(route, request)` -> a new transport."""

    def __init__(self, config: Config) -> None:
        self.routes: dict[int, BackendSet] = {}
        for vhost in config.vhosts:
            for route in vhost.routes:
                if route.kind == "scgi":
                    self.routes[id(route)] = _backend_set(route)

    def __call__(self, route: Route, request: Request) -> SCGITransport:
        backends = self.routes.get(id(route))
        if backends is None:
            backends = self.routes[id(route)] = _backend_set(route)
        return SCGITransport(backends)


def _backend_set(route: Route) -> BackendSet:
    # keepalive 0: §2, the server closes the connection after each response.
    return BackendSet(route.backends, route.connect_timeout, 0, name="scgi", bare=True)


class SCGITransport(StreamTransport):
    """One request to an SCGI server on a connection of its own."""

    # nginx's ngx_http_scgi_process_status_line: SCGI servers often answer "HTTP/1.x NNN".
    allow_status_line = True
    protocol = "scgi"  # the first word of log lines and error details

    def __init__(self, backends: BackendSet) -> None:
        super().__init__(self.protocol, _no_connect)
        self.backends = backends
        self.conn: BackendConnection | None = None

    def encode_head(self, environ: Mapping[bytes, bytes], content_length: int | None) -> bytes:
        # §3: CONTENT_LENGTH first, even when 0, then SCGI=1; the environ (a dict) has no
        # duplicate names, which §3 forbids.
        pairs = [(CONTENT_LENGTH, str(content_length).encode()) if content_length is not None else _NO_BODY,
                 _SCGI_1]
        pairs += [(name, value) for name, value in environ.items() if name != CONTENT_LENGTH and name != SCGI]
        return encode_request_head(pairs)

    def decode(self, data: bytes) -> bytes:
        if not data:
            self.finished = True  # §2: the server closes the connection after the response
        return data

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        head = self.encode_head(environ, content_length)
        self.conn = conn = await self.backends.acquire()
        self.reader, self.writer = conn.reader, conn.writer
        self.name = f"{self.protocol} {conn.address}"
        conn.writer.write(head)

    async def close(self) -> None:
        if self.conn is not None:
            self.backends.release(self.conn)


async def _no_connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # `open` connects through the route's BackendSet; StreamTransport's hook is unused.
    raise AssertionError("the transport connects through its BackendSet")
