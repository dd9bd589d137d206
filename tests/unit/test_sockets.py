"""SocketStream on a real socket pair: partial sends and drain, a peer that stops reading after it
answered, abort and set_exception waking a read, and the idle watch of a parked connection."""

from __future__ import annotations

import asyncio
import socket

import pytest

from frontd.gateway.sockets import SocketStream, connect


def pair() -> tuple[SocketStream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return SocketStream(asyncio.get_running_loop(), ours), theirs


def test_large_write_is_flushed_by_drain_as_the_peer_reads() -> None:
    async def main() -> bytes:
        stream, peer = pair()
        data = bytes(range(256)) * 40000  # 10 MB: far beyond the socket buffers
        stream.write(data)
        assert stream.get_write_buffer_size() > 0
        peer.setblocking(False)
        got = bytearray()
        loop = asyncio.get_running_loop()

        def read_some() -> None:
            try:
                got.extend(peer.recv(1 << 20))
            except BlockingIOError:
                pass

        loop.add_reader(peer.fileno(), read_some)
        async with asyncio.timeout(10):
            await stream.drain()
            while len(got) < len(data):
                await asyncio.sleep(0.001)
        loop.remove_reader(peer.fileno())
        assert stream.get_write_buffer_size() == 0
        stream.abort()
        peer.close()
        return bytes(got)

    assert asyncio.run(main()) == bytes(range(256)) * 40000


def test_answer_is_read_after_the_peer_stopped_reading() -> None:
    async def main() -> None:
        stream, peer = pair()
        peer.sendall(b"answer")
        peer.close()
        with pytest.raises(OSError):
            for _ in range(100):  # EPIPE (or a reset) once the peer is gone
                stream.write(b"x" * 65536)
                await stream.drain()
        assert stream.is_closing()
        assert await stream.read() == b"answer"
        assert await stream.read() == b""
        stream.abort()

    asyncio.run(main())


def test_abort_and_set_exception_wake_a_pending_read() -> None:
    async def main() -> None:
        stream, peer = pair()
        reading = asyncio.ensure_future(stream.read())
        await asyncio.sleep(0)
        stream.set_exception(ConnectionAbortedError("stop"))
        with pytest.raises(ConnectionAbortedError):
            await reading
        stream.abort()
        stream.abort()  # idempotent
        assert stream.at_eof() and stream.is_closing()
        peer.close()

        stream, peer = pair()
        reading = asyncio.ensure_future(stream.read())
        await asyncio.sleep(0)
        stream.abort()
        assert await reading == b""
        peer.close()

    asyncio.run(main())


def test_idle_watch_reports_bytes_then_eof() -> None:
    async def main() -> list[bytes]:
        stream, peer = pair()
        seen: list[bytes] = []
        got = asyncio.Event()

        def on_input(data: bytes) -> None:
            seen.append(data)
            got.set()

        stream.watch_idle(on_input)
        peer.sendall(b"stray")
        async with asyncio.timeout(5):
            await got.wait()
            got.clear()
            peer.close()
            await got.wait()
        stream.watch_idle(None)
        stream.abort()
        return seen

    assert asyncio.run(main()) == [b"stray", b""]


def test_connect_refused_and_connected() -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        address = listener.getsockname()
        listener.listen(1)
        stream = await connect(socket.AF_INET, address, 5)
        peer, _ = listener.accept()
        stream.write(b"ping")
        assert peer.recv(4) == b"ping"
        stream.abort()
        peer.close()
        listener.close()  # nothing listens there now
        with pytest.raises(ConnectionRefusedError):
            await connect(socket.AF_INET, address, 5)

    asyncio.run(main())


def test_peek_tells_nothing_bytes_or_eof_without_reading() -> None:
    async def main() -> None:
        stream, peer = pair()
        assert stream.peek() is False
        peer.sendall(b"late")
        assert stream.peek() == b"late"
        assert await stream.read() == b"late"  # peeked bytes stay unread
        peer.close()
        assert stream.peek() is True
        stream.abort()

    asyncio.run(main())


def test_ended_only_once_the_peer_closed_and_everything_was_read() -> None:
    async def main() -> None:
        stream, peer = pair()
        assert not stream.ended()  # nothing yet: the peer may still send
        peer.sendall(b"answer")
        assert not stream.ended()  # bytes to read: not the end, and none are consumed
        peer.close()
        assert not stream.ended()
        assert await stream.read() == b"answer"
        assert stream.ended() and stream.ended()  # the close is seen without a read, and kept
        assert await stream.read() == b""
        stream.abort()
        assert not stream.ended()  # closed by us: a read reports it, not the peer's end

    asyncio.run(main())
