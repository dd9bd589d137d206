"""Output rules of each route and vhost root: `headers` around `compress` around the handler's sink.

Built once per configuration (Dispatcher); a route with neither rule has no entry, so its
requests pay one dict lookup at most, and none when no route in the file has a rule.
"""

from __future__ import annotations

from frontd.config.model import Config, Route, VHost
from frontd.request import Request
from frontd.response import ResponseSink, SinkWrapper
from frontd.rules.compress import CompressRule
from frontd.rules.headers import HeaderRule


class OutputRules:
    __slots__ = ("headers", "compress")

    def __init__(self, owner: Route | VHost) -> None:
        self.headers = HeaderRule(owner.headers) if owner.headers else None
        self.compress = CompressRule(owner.compress) if owner.compress is not None else None

    def wrap(self, request: Request, sink: ResponseSink) -> SinkWrapper:
        # Configured fields are applied first (outermost), so compression sees them: a configured
        # Cache-Control: no-transform stops it, a configured Vary gets Accept-Encoding added.
        wrapped: SinkWrapper | None = None
        if self.compress is not None:
            wrapped = sink = self.compress.wrap(sink, request)
        if self.headers is not None:
            wrapped = self.headers.wrap(sink)
        assert wrapped is not None
        return wrapped


def output_rules(config: Config) -> dict[int, OutputRules]:
    """id(route) or id(vhost) -> its rules, for those that have any."""
    rules: dict[int, OutputRules] = {}
    for vhost in config.vhosts:
        for owner in (vhost, *vhost.routes):
            if owner.headers or owner.compress is not None:
                rules[id(owner)] = OutputRules(owner)
    return rules
