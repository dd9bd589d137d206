"""`compress`: responses of compressible types encoded on the fly (gzip, zstd, br).

gzip comes from the standard library's zlib and is always there; zstd (`zstandard`) and br
(`brotli`) are optional (`pip install frontd[compress]`), and config/rules.py refuses a list that
names one whose library is missing. Levels are chosen for speed at a ratio close to the best
(see docs/rules.md for the figures): gzip 5, zstd 3, br 4.

A response is encoded when every condition holds (RFC 9110 §8.4, §12.5.3): its status has a body
that is not a range (not 1xx, 204, 206, 304), the request is not HEAD and has no Range, the
response has no Content-Encoding and no `Cache-Control: no-transform`, its type is one of the
rule's types, its Content-Length (when given) is at least the minimum size, and the client's
Accept-Encoding weighs a coding above 0. Every compressible response gets `Vary:
Accept-Encoding`; an encoded one loses Content-Length and Accept-Ranges and its ETag is weakened
(the bytes differ from the identity representation's).

Bodies are encoded in chunks of at most CHUNK bytes, so memory stays bounded whatever the size;
a file is read chunk by chunk and the loop gets a turn between chunks. Each `write` from a
gateway or a proxy is flushed to the client at once (a sync flush), so streamed output is not
held back.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from typing import BinaryIO, Protocol

from frontd.config.model import Compression
from frontd.http import encoding
from frontd.request import Request
from frontd.response import ResponseSink, SinkWrapper

CHUNK = 64 * 1024
GZIP_LEVEL = 5
ZSTD_LEVEL = 3
BROTLI_QUALITY = 4
# A brotli window of 2^18 bytes (256 KiB) rather than 4 MiB: memory per stream stays small, and the
# allocator does not have to grow and trim the heap around every response.
BROTLI_LGWIN = 18
# zstd compressors (each holds a context of a few MiB) are reused, one per stream at a time:
# allocating one per response cost more than compressing 100 KiB of CSS.
MAX_IDLE_ZSTD = 16
_idle_zstd: list[object] = []
_NO_BODY_STATUSES = frozenset({204, 206, 304})
_DROPPED_WHEN_ENCODED = frozenset({b"content-length", b"accept-ranges"})


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...  # everything so far, decodable by the client now

    def finish(self) -> bytes: ...


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 16+15: the gzip format

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


class _Zstd:
    __slots__ = ("_c", "_z", "_block")

    def __init__(self) -> None:
        import zstandard

        self._c = _idle_zstd.pop() if _idle_zstd else zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._z = self._c.compressobj()  # type: ignore[attr-defined]
        self._block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush(self._block)

    def finish(self) -> bytes:
        out: bytes = self._z.flush()
        if len(_idle_zstd) < MAX_IDLE_ZSTD:
            _idle_zstd.append(self._c)  # a stream cut short never gets here: its compressor is dropped
        return out


class _Brotli:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        import brotli

        self._z = brotli.Compressor(quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)

    def compress(self, data: bytes) -> bytes:
        return self._z.process(data)

    def flush(self) -> bytes:
        return self._z.flush()

    def finish(self) -> bytes:
        return self._z.finish()


ENCODERS: dict[str, type[_Gzip] | type[_Zstd] | type[_Brotli]] = {"gzip": _Gzip, "zstd": _Zstd, "br": _Brotli}


class TypeMatcher:
    """Media types as configured: exact ("text/css"), "type/*" and "*+suffix" patterns."""

    __slots__ = ("exact", "prefixes", "suffixes")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.exact = frozenset(p.encode() for p in patterns if "*" not in p)
        self.prefixes = tuple(p[:-1].encode() for p in patterns if p.endswith("/*"))
        self.suffixes = tuple(p[p.index("*") + 1:].encode() for p in patterns if "/*+" in p)

    def __call__(self, content_type: bytes) -> bool:
        base = content_type.partition(b";")[0].strip().lower()
        if base in self.exact or base.startswith(self.prefixes):
            return True
        return bool(self.suffixes) and base.endswith(self.suffixes) and b"/" in base


class CompressRule:
    """The resolved `compress` of one (vhost, route): built once at load, consulted per response."""

    __slots__ = ("encodings", "types", "min_size")

    def __init__(self, config: Compression) -> None:
        self.encodings = config.encodings
        self.types = TypeMatcher(config.types)
        self.min_size = config.min_size

    def wrap(self, sink: ResponseSink, request: Request) -> CompressSink:
        return CompressSink(sink, self, request)

    def negotiate(self, request: Request, status: int,
                  headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], str | None]:
        """The headers to send and the coding to encode the body with (None: as it is)."""
        if status == 304:
            return _not_modified(request, headers), None
        if status < 200 or status in _NO_BODY_STATUSES:
            return headers, None
        ctype: bytes | None = None
        length: int | None = None
        for name, value in headers:
            if name == b"content-encoding":
                return headers, None  # already encoded (or precompressed), or marked identity
            if name == b"cache-control" and b"no-transform" in value.lower():
                return headers, None  # RFC 9111 §5.2.2.6
            if name == b"content-type":
                ctype = value
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        if ctype is None or not self.types(ctype):
            return headers, None
        accept = request.header(b"accept-encoding")
        if length is not None and length < self.min_size and not encoding.identity_refused(accept):
            return headers, None
        headers = _add_vary(headers)
        if request.method == "HEAD" or request.header(b"range") is not None:
            return headers, None  # a range is of the identity representation (CONFIG.md)
        coding = encoding.choose(accept, self.encodings)
        if coding is None:
            return headers, None
        out = [(b"content-encoding", coding.encode())]
        for name, value in headers:
            if name in _DROPPED_WHEN_ENCODED:
                continue
            if name == b"etag" and not value.startswith(b"W/"):
                value = b"W/" + value  # RFC 9110 §8.8.3: no longer byte-for-byte the same
            out.append((name, value))
        return out, coding


def _not_modified(request: Request, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A 304 answering the weakened ETag of an encoded response: RFC 9110 §15.4.5 wants the
    ETag and Vary that the 200 would have had, so the client's cached (encoded) copy stays valid."""
    condition = request.header(b"if-none-match")
    if condition is None:
        return headers
    for i, (name, value) in enumerate(headers):
        if name == b"etag" and not value.startswith(b"W/") and b"W/" + value in condition:
            return _add_vary([*headers[:i], (b"etag", b"W/" + value), *headers[i + 1:]])
    return headers


def _add_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers with Accept-Encoding in Vary (added to an existing Vary, unless it is "*")."""
    out: list[tuple[bytes, bytes]] = []
    done = False
    for name, value in headers:
        if name == b"vary" and not done:
            tokens = [t.strip().lower() for t in value.split(b",")]
            if b"accept-encoding" not in tokens and b"*" not in tokens:
                value = value + b", Accept-Encoding"
            done = True
        out.append((name, value))
    if not done:
        out.append((b"vary", b"Accept-Encoding"))
    return out


class CompressSink(SinkWrapper):
    __slots__ = ("rule", "request", "encoder", "ended")

    def __init__(self, inner: ResponseSink, rule: CompressRule, request: Request) -> None:
        super().__init__(inner)
        self.rule = rule
        self.request = request
        self.encoder: Encoder | None = None
        self.ended = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        headers, coding = self.rule.negotiate(self.request, status, headers)
        if coding is not None:
            self.encoder = ENCODERS[coding]()
        await self.inner.start(status, headers, reason)

    async def write(self, data: bytes) -> None:
        encoder = self.encoder
        if encoder is None:
            await self.inner.write(data)
            return
        if not data:
            return
        for i in range(0, len(data), CHUNK):
            out = encoder.compress(data[i:i + CHUNK])
            if out:
                await self.inner.write(out)
        # Streamed output (a gateway's, a proxy's) reaches the client as it comes.
        await self.inner.write(encoder.flush())

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> None:
        encoder = self.encoder
        if encoder is None:
            await self.inner.sendfile(file, offset, count)
            return
        fd = file.fileno()
        end = offset + count
        while offset < end:
            data = os.pread(fd, min(CHUNK, end - offset), offset)
            if not data:
                break  # the file shrank: what there was is sent, the encoding is still closed
            offset += len(data)
            out = encoder.compress(data)
            if out:
                await self.inner.write(out)
            if offset < end:
                await asyncio.sleep(0)  # other connections' turn between chunks of a large file

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.encoder is not None and self.inner.started:
            await self.inner.write(self.encoder.finish())
        await self.inner.end()
