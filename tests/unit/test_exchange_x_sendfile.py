"""exchange(x_sendfile=True): a head naming a file comes back as a FileAnswer, the application's
body read away (up to MAX_DISCARD) and the transport closed, or aborted when it goes on."""

from __future__ import annotations

import asyncio
from typing import Any

from frontd.gateway.exchange import MAX_DISCARD, exchange
from frontd.gateway.spool import NoBody
from frontd.http.file_answer import FileAnswer
from tests.unit.test_exchange import FakeSink, FakeTransport, request

HEAD = b"Content-Type: application/pdf\nX-Sendfile: /srv/a.pdf\nContent-Length: 4\nCache-Control: private\n\n"


def run(transport: FakeTransport, sink: FakeSink, *, x_sendfile: bool = True, timeout: float = 5.0) -> Any:
    return asyncio.run(exchange(request(), sink, transport, {}, NoBody(), timeout=timeout, x_sendfile=x_sendfile))


def test_the_answer_is_returned_and_the_application_closed() -> None:
    transport = FakeTransport([HEAD + b"bo", b"dy"])
    sink = FakeSink()
    answer = run(transport, sink)
    assert isinstance(answer, FileAnswer)
    assert answer.fields == ((b"x-sendfile", b"/srv/a.pdf"),)
    assert answer.kept == [(b"content-type", b"application/pdf"), (b"cache-control", b"private")]
    assert not sink.started  # nothing of the application's answer reached the client
    assert transport.closed and not transport.aborted and not transport.output


def test_a_body_past_the_limit_aborts_the_application() -> None:
    transport = FakeTransport([HEAD, b"x" * MAX_DISCARD, b"x", b"never read"])
    sink = FakeSink()
    assert isinstance(run(transport, sink), FileAnswer)
    assert transport.aborted and not transport.closed and transport.output == [b"never read"]
    assert not sink.started


def test_just_under_the_limit_is_read_away() -> None:
    transport = FakeTransport([HEAD, b"x" * (MAX_DISCARD - 1), b"x"])
    assert isinstance(run(transport, FakeSink()), FileAnswer)
    assert transport.closed and not transport.aborted


def test_a_silent_application_is_aborted_not_a_504() -> None:
    transport = FakeTransport([HEAD, 5.0, b"late"])
    assert isinstance(run(transport, FakeSink(), timeout=0.05), FileAnswer)
    assert transport.aborted and not transport.closed


def test_without_x_sendfile_the_fields_are_relayed() -> None:
    transport = FakeTransport([HEAD + b"body"])
    sink = FakeSink()
    assert run(transport, sink, x_sendfile=False) is None
    assert (b"x-sendfile", b"/srv/a.pdf") in sink.headers and bytes(sink.body) == b"body"
