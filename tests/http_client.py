"""A raw-socket HTTP/1.1 client for tests: send exact bytes, parse answers with h11's client side."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import h11


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    reason: bytes = b""
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class RawClient:
    """Reads responses off one socket in order, for keep-alive and pipelining tests."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h = h11.Connection(h11.CLIENT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, method: str = "GET") -> Answer:
        """The next response; `method` tells whether a body follows (HEAD has none)."""
        # Let h11 know a request went out so it frames the response correctly.
        if self.h.our_state is h11.IDLE:
            self.h.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            self.h.send(h11.EndOfMessage())
        answer: Answer | None = None
        body = []
        while True:
            event = self.h.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                self.h.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                answer = Answer(event.status_code, {k.decode(): v.decode("latin-1") for k, v in event.headers},
                                reason=event.reason, raw_headers=list(event.headers))
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                assert answer is not None, "connection closed before a response"
                answer.body = b"".join(body)
                if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
                    self.h.start_next_cycle()
                return answer

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF or reset) within the timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return data == b""


def parse_one(data: bytes, method: str = "GET") -> Answer:
    """Parse the first response in a byte string (the server's whole output)."""
    h = h11.Connection(h11.CLIENT)
    h.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    h.send(h11.EndOfMessage())
    h.receive_data(data)
    h.receive_data(b"")
    answer: Answer | None = None
    body = []
    while True:
        event = h.next_event()
        if isinstance(event, h11.Response):
            answer = Answer(event.status_code, {k.decode(): v.decode("latin-1") for k, v in event.headers},
                            reason=event.reason, raw_headers=list(event.headers))
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.NEED_DATA:
            assert answer is not None, f"no response in {data[:200]!r}"
            answer.body = b"".join(body)
            return answer


def count_responses(data: bytes) -> int:
    return data.count(b"HTTP/1.1 ")
