"""`headers`: response fields a vhost or route sets on every response it sends.

The table was checked and resolved (route over vhost, field by field) at load; here it only
replaces fields. A configured field replaces every field of that name the handler or backend
gave; a field configured as "" removes it. Error responses get the same fields
(`apply` is called by the connection's error rendering), and so do 304s.
"""

from __future__ import annotations

from frontd.response import ResponseSink, SinkWrapper


class HeaderRule:
    """The resolved `headers` of one (vhost, route): built once at load, applied per response."""

    __slots__ = ("names", "fields")

    def __init__(self, fields: tuple[tuple[bytes, bytes], ...]) -> None:
        self.names = frozenset(name for name, _ in fields)  # replaced or removed
        self.fields = tuple((name, value) for name, value in fields if value)  # added

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        names = self.names
        return [field for field in headers if field[0] not in names] + list(self.fields)

    def wrap(self, sink: ResponseSink) -> HeadersSink:
        return HeadersSink(sink, self)


class HeadersSink(SinkWrapper):
    __slots__ = ("rule",)

    def __init__(self, inner: ResponseSink, rule: HeaderRule) -> None:
        super().__init__(inner)
        self.rule = rule

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        await self.inner.start(status, self.rule.apply(headers), reason)
