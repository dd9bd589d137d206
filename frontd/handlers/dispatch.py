"""From a parsed request to the handler of its route, following local redirects."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from frontd.config.model import Config, VHost
from frontd.errors import BadRequest, InternalServerError, MisdirectedRequest, NotFound
from frontd.gateway.fastcgi import FastCGIGateway
from frontd.gateway.scgi import SCGIGateway
from frontd.gateway.uwsgi import UwsgiGateway
from frontd.handlers.gateway import GatewayHandler
from frontd.handlers.proxy import ProxyHandler
from frontd.handlers.static import StaticHandler
from frontd.handlers.status import StatusHandler
from frontd.http.forwarded import TrustedProxies
from frontd.http.target import parse_target
from frontd.request import EMPTY_BODY, Request
from frontd.response import LocalRedirect, ResponseSink
from frontd.routing import Router
from frontd.rules.limits import ClientLimits

Handler = Callable[[Request, ResponseSink], Awaitable["LocalRedirect | None"]]
MAX_LOCAL_REDIRECTS = 5
# RFC 8555 §8.3: the CA fetches http-01 answers over plain HTTP; redirect_https never touches them.
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class Dispatcher:
    """Routes each request (vhost, then longest prefix) to the handler of the route's kind."""

    def __init__(self, config: Config, *, https_port: int | None = None) -> None:
        """`https_port`: the port of the first TLS listener, where redirect_https sends clients."""
        self.config = config
        self.https_port = https_port
        self.router = Router(config)
        # Compiled once: connections from these peers read the client from Forwarded / X-Forwarded-For.
        self.trusted_proxies = TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
        self.client_limits = ClientLimits.build(config.limits)
        self.rate_limit = self.client_limits if self.client_limits is not None and self.client_limits.rate else None
        static = StaticHandler(config)
        self.handlers: dict[str, Handler] = {"static": static.handle}
        self.handlers["proxy"] = ProxyHandler(config).handle
        self.handlers["status"] = StatusHandler(config).handle
        gateway = GatewayHandler(config, {"fastcgi": FastCGIGateway(config), "scgi": SCGIGateway(config),
                                          "uwsgi": UwsgiGateway(config)}, static=static.serve_file)
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

    async def redirect_https(self, request: Request, vhost: VHost, sink: ResponseSink) -> None:
        """308 to the same path and query on the TLS listener (the method and body are kept)."""
        host = request.host
        if not host:
            if not vhost.names or vhost.names[0].startswith("*."):
                raise BadRequest("redirect_https: the request has no Host to redirect to")
            host = vhost.names[0]
        port = "" if self.https_port in (443, None) else f":{self.https_port}"
        # "OPTIONS *" has no path to keep: the site's root.
        path = (request.raw_path if request.raw_path.startswith("/") else "/") + (
            f"?{request.query}" if request.query else "")
        location = f"https://{host}{port}{path}".encode("latin-1")
        body = f'<html><body><a href="{html.escape(location.decode("latin-1"))}">moved here</a></body></html>\n'.encode()
        await sink.start(308, [(b"location", location), (b"content-type", b"text/html"),
                               (b"content-length", str(len(body)).encode())])
        await sink.write(body)

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        while True:
            vhost = self.router.vhost(request.host)
            route = self.router.route(vhost, request.path)
            request.vhost, request.route = vhost, route
            if request.tls is not None:
                if vhost is not request.tls.vhost:
                    # RFC 9110 §15.5.20: the certificate of the handshake is not this vhost's.
                    raise MisdirectedRequest(f"host {request.host!r} is not served by the certificate of "
                                             f"SNI {request.tls.server_name!r}")
            elif vhost.redirect_https and not request.path.startswith(ACME_CHALLENGE_PREFIX):
                await self.redirect_https(request, vhost, sink)
                return
            if self.rate_limit is not None and not request.redirects:
                self.rate_limit.check_rate(request.client_addr)
            kind: str = route.kind if route is not None else "static"
            if request.path == vhost.status:
                kind = "status"  # the status page comes before every route (exact path only)
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
