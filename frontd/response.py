"""ResponseSink: how handlers send a response without knowing the connection behind it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from frontd.request import Request


class ResponseSink(Protocol):
    """The response side of one request.

    `start` once, then any number of `write`/`sendfile`, then `end`. Framing (Content-Length,
    chunked, close-delimited for HTTP/1.0) follows the headers given to `start`; a HEAD
    request's body is discarded here, so handlers can treat HEAD like GET.
    """

    started: bool
    status: int
    bytes_sent: int

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None: ...

    async def end(self) -> None: ...

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Take over the raw connection (non-parsed-header output, Upgrade tunnels).

        Returns the reader, the writer and the bytes already received after the request.
        The connection is closed once the handler returns.
        """
        ...


class AccessRecorder(Protocol):
    """Where a connection reports each finished request (the worker's access logs)."""

    def record(self, request: Request, status: int, size: int, duration: float = 0.0, *,
               cut: bool = False) -> None: ...


class LocalRedirect:
    """A handler's answer meaning "serve this local URL instead, as a GET" (RFC 3875 §6.2.2)."""

    __slots__ = ("target", "fields")

    def __init__(self, target: str, fields: list[tuple[bytes, bytes]] | None = None) -> None:
        self.target = target  # "/path?query", as the script wrote it
        # X-Accel-Redirect: the backend's fields for the response, which only an internal static
        # route may serve (handlers/x_sendfile.py); None for a CGI local redirect.
        self.fields = fields


class SinkWrapper:
    """A ResponseSink that passes everything to another one; output rules override what they change.

    `started`, `status` and `bytes_sent` are the inner sink's (what the client got).
    """

    __slots__ = ("inner", "detached")

    def __init__(self, inner: ResponseSink) -> None:
        self.inner = inner
        self.detached = False

    @property
    def started(self) -> bool:
        return self.inner.started

    @property
    def status(self) -> int:
        return self.inner.status

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        await self.inner.start(status, headers, reason)

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        await self.inner.sendfile(file, offset, count)

    async def end(self) -> None:
        await self.inner.end()

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        self.detached = True
        return self.inner.detach()
