"""From a parsed request to the handler of its route, following local redirects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from frontd.config.model import Config
from frontd.errors import InternalServerError, NotFound
from frontd.gateway.fastcgi import FastCGIGateway
from frontd.gateway.scgi import SCGIGateway
from frontd.gateway.uwsgi import UwsgiGateway
from frontd.handlers.acme_challenge import AcmeChallengeHandler
from frontd.handlers.gateway import GatewayHandler
from frontd.handlers.proxy import ProxyHandler
from frontd.handlers.static import StaticHandler
from frontd.handlers.status import StatusHandler
from frontd.http.target import parse_target
from frontd.request import EMPTY_BODY, Request
from frontd.response import LocalRedirect, ResponseSink
from frontd.routing import Router

Handler = Callable[[Request, ResponseSink], Awaitable["LocalRedirect | None"]]
MAX_LOCAL_REDIRECTS = 5


class Dispatcher:
    """Routes each request (vhost, then longest prefix) to the handler of the route's kind."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.router = Router(config)
        static = StaticHandler(config)
        self.handlers: dict[str, Handler] = {"static": static.handle}
        self.handlers["proxy"] = ProxyHandler(config).handle
        self.handlers["status"] = StatusHandler(config).handle
        self.acme_challenge = AcmeChallengeHandler(config)
        self.handlers["acme-challenge"] = self.acme_challenge.handle
        gateway = GatewayHandler(config, {"fastcgi": FastCGIGateway(config), "scgi": SCGIGateway(config),
                                          "uwsgi": UwsgiGateway(config)})
        for kind in ("cgi", "fastcgi", "scgi", "uwsgi"):
            self.handlers[kind] = gateway.handle

    def close(self) -> None:
        """Worker shutdown: each handler object with a `close` method (one that keeps backend
        connections between requests) lets them go."""
        owners = {id(owner): owner for owner in (getattr(h, "__self__", None) for h in self.handlers.values())}
        for owner in owners.values():
            close = getattr(owner, "close", None)
            if close is not None:
                close()

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        while True:
            vhost = self.router.vhost(request.host)
            route = self.router.route(vhost, request.path)
            request.vhost, request.route = vhost, route
            kind: str = route.kind if route is not None else "static"
            if request.path == vhost.status:
                kind = "status"  # the status page comes before every route (exact path only)
            elif self.acme_challenge.claims(vhost, request.path):
                kind = "acme-challenge"  # RFC 8555 §8.3: before any route or rewrite
            handler = self.handlers.get(kind)
            if handler is None:
                raise NotFound(f"no handler for {kind} routes")
            result = await handler(request, sink)
            if result is None:
                return
            # RFC 3875 §6.2.2: the server serves the new URL as if it had been requested (a GET).
            if request.redirects >= MAX_LOCAL_REDIRECTS:
                raise InternalServerError(f"more than {MAX_LOCAL_REDIRECTS} local redirects")
            target = parse_target(result.target.encode("latin-1", "replace"), "GET")
            request.method = "GET"
            request.target = result.target
            request.path, request.raw_path, request.query = target.path, target.raw_path, target.query
            request.body = EMPTY_BODY
            request.headers = [(k, v) for k, v in request.headers
                               if k not in (b"content-length", b"content-type", b"transfer-encoding")]
            request.redirects += 1
