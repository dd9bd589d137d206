"""From a parsed request to the handler of its route, following local redirects."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from frontd.config.model import GATEWAY_KINDS, MAX_INTERNAL_REDIRECTS, Config, VHost
from frontd.errors import BadGateway, BadRequest, HTTPError, InternalServerError, MisdirectedRequest, NotFound
from frontd.gateway.backends import ConnectionPool
from frontd.gateway.fastcgi import FastCGIGateway
from frontd.gateway.scgi import SCGIGateway
from frontd.gateway.uwsgi import UwsgiGateway
from frontd.handlers.acme_challenge import AcmeChallengeHandler
from frontd.handlers.gateway import GatewayHandler
from frontd.handlers.proxy import ProxyHandler
from frontd.handlers.static import StaticHandler
from frontd.handlers.status import StatusHandler
from frontd.handlers.x_sendfile import KeptFields, XSendfile
from frontd.http.forwarded import TrustedProxies
from frontd.http.target import parse_target
from frontd.request import EMPTY_BODY, Request
from frontd.response import LocalRedirect, ResponseSink
from frontd.routing import Router
from frontd.rules.access import ACME_CHALLENGE_PREFIX, Access
from frontd.rules.error_pages import ErrorPages
from frontd.rules.limits import ClientLimits
from frontd.rules.redirect import RedirectHandler, send_redirect
from frontd.rules.rewrite import Rewrites
from frontd.rules.try_files import TryFiles
from frontd.rules.output import OutputRules, output_rules

Handler = Callable[[Request, ResponseSink], Awaitable["LocalRedirect | None"]]
MAX_LOCAL_REDIRECTS = MAX_INTERNAL_REDIRECTS
X_ACCEL = "x_accel_redirect"  # request.notes: the URI of the X-Accel-Redirect being served


class Dispatcher:
    """Routes each request (vhost, then longest prefix) to the handler of the route's kind."""

    def __init__(self, config: Config, *, https_port: int | None = None,
                 has_certificate: Callable[[VHost], bool] | None = None) -> None:
        """`https_port`: the port of the first TLS listener, where redirect_https sends clients;
        `has_certificate`: whether a vhost's certificate is loaded now. redirect_https waits for
        it, so that a vhost whose ACME certificate is not issued yet stays reachable over HTTP."""
        self.config = config
        self.https_port = https_port
        self.has_certificate = has_certificate or (lambda vhost: True)
        self.router = Router(config)
        # Compiled once: connections from these peers read the client from Forwarded / X-Forwarded-For.
        self.trusted_proxies = TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
        self.client_limits = ClientLimits.build(config.limits)
        self.rate_limit = self.client_limits if self.client_limits is not None and self.client_limits.rate else None
        self.access = Access(config)
        static = StaticHandler(config)
        self.handlers: dict[str, Handler] = {"static": static.handle}
        # Idle backend connections, per protocol and address, shared by all the worker's routes.
        pool = ConnectionPool()
        files = XSendfile(static)
        self.handlers["proxy"] = ProxyHandler(config, pool, files).handle
        self.handlers["status"] = StatusHandler(config).handle
        self.acme_challenge = AcmeChallengeHandler(config)
        gateway = GatewayHandler(config, {"fastcgi": FastCGIGateway(config, pool), "scgi": SCGIGateway(config),
                                          "uwsgi": UwsgiGateway(config)}, static=static.serve_file, files=files)
        for kind in ("cgi", "fastcgi", "scgi", "uwsgi"):
            self.handlers[kind] = gateway.handle
        self.handlers["redirect"] = RedirectHandler().handle
        # Site rules, built once; empty (and so skipped) when the config has none.
        self.rewrites = {id(vhost): Rewrites(vhost.rewrites) for vhost in config.vhosts if vhost.rewrites}
        self.try_files = try_files_by_owner(config)
        self.error_pages = ErrorPages(config) if any(
            vhost.error_pages or any(route.error_pages for route in vhost.routes) for vhost in config.vhosts) else None
        # headers and compress, per route (and per vhost root) that has any; empty when none has.
        self.output: dict[int, OutputRules] = output_rules(config)

    def rule_headers(self, request: Request | None, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The fields of a response frontd makes itself (an error, redirect_https's 308), with the
        `headers` of the request's route or vhost."""
        if not self.output or request is None or request.vhost is None:
            return headers
        rules = self.output.get(id(request.route if request.route is not None else request.vhost))
        return headers if rules is None or rules.headers is None else rules.headers.apply(headers)

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
        await sink.start(308, self.rule_headers(request, [(b"location", location), (b"content-type", b"text/html"),
                                                          (b"content-length", str(len(body)).encode())]))
        await sink.write(body)

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        if self.error_pages is None:
            await self.route_and_serve(request, sink)
            return
        try:
            await self.route_and_serve(request, sink)
        except HTTPError as exc:
            await self.error_pages.serve(request, sink, exc, self.serve_page)

    async def serve_page(self, request: Request, sink: ResponseSink) -> LocalRedirect | None:
        """An error page: the route of its path serves it (no rewrites, try_files or redirects)."""
        vhost = self.router.vhost(request.host)
        route = self.router.route(vhost, request.path)
        request.vhost, request.route = vhost, route
        handler = self.handlers.get(route.kind if route is not None else "static")
        if handler is None:
            raise NotFound(f"no handler for the error page {request.path!r}")
        return await self.run_handler(handler, request, sink)

    async def run_handler(self, handler: Handler, request: Request, sink: ResponseSink, *,
                          intercept: bool = False,
                          kept: list[tuple[bytes, bytes]] | None = None) -> LocalRedirect | None:
        """Call `handler` with the output rules (headers, compress) of the request's route or
        vhost around its sink; with `intercept`, error pages' interception goes outside them (a
        backend's error response is taken over before any rule sees it). `kept`: the fields of
        an X-Accel-Redirect answer, added before the rules see the response."""
        rules = self.output.get(id(request.route if request.route is not None else request.vhost)) \
            if self.output else None
        out = rules.wrap(request, sink) if rules is not None else None
        target: ResponseSink = out if out is not None else sink
        if kept is not None:
            target = KeptFields(target, kept)
        if intercept and self.error_pages is not None:
            target = self.error_pages.sink_for(request, target)
        result = await handler(request, target)
        if out is not None and result is None and out.started and not out.detached:
            await out.end()  # the encoder's last bytes
        return result

    def internal_redirect(self, request: Request, target: str, why: str) -> None:
        """Serve `target` ("/path?query") instead, with the same method and body; REQUEST_URI
        (request.target) stays what the client sent."""
        if request.redirects >= MAX_INTERNAL_REDIRECTS:
            raise InternalServerError(f"{why}: more than {MAX_INTERNAL_REDIRECTS} internal redirects "
                                      f"(last to {target!r})")
        try:
            parsed = parse_target(target.encode("ascii"), request.method)
        except HTTPError as exc:
            raise BadRequest(f"{why}: {target!r}: {exc.detail}") from None
        request.path, request.raw_path, request.query = parsed.path, parsed.raw_path, parsed.query
        request.redirects += 1

    async def route_and_serve(self, request: Request, sink: ResponseSink) -> None:
        rated = False  # client_rate counts a request once, whatever internal redirects follow
        kept: list[tuple[bytes, bytes]] | None = None  # an X-Accel-Redirect answer's fields
        while True:
            vhost = self.router.vhost(request.host)
            if self.acme_challenge.claims(vhost, request.path):
                # RFC 8555 §8.3: the CA's http-01 request, before any rewrite, route, redirect or
                # access rule, on plain and TLS listeners alike.
                request.vhost, request.route = vhost, None
                await self.acme_challenge.handle(request, sink)
                return
            if self.rewrites and id(vhost) in self.rewrites:
                request.vhost = vhost  # for the error page of an error the rules raise
                rewritten = self.rewrites[id(vhost)].apply(request.path, request.query)
                if rewritten is not None:
                    rule, target = rewritten
                    if rule.status is not None:
                        await send_redirect(sink, rule.status, target,
                                            lambda headers: self.rule_headers(request, headers))
                        return
                    self.internal_redirect(request, target, f"rewrite {rule.key}")
                    continue
            route = self.router.route(vhost, request.path)
            request.vhost, request.route = vhost, route
            if route is not None and route.internal and not request.redirects:
                raise NotFound(f"{request.path!r}: route {route.prefix} serves internal redirects only")
            if X_ACCEL in request.notes and (route is None or not route.internal):
                raise BadGateway(f"X-Accel-Redirect to {request.notes[X_ACCEL]}: not a static route "
                                 "with internal = true")
            if request.tls is not None:
                if vhost is not request.tls.vhost:
                    # RFC 9110 §15.5.20: the certificate of the handshake is not this vhost's.
                    raise MisdirectedRequest(f"host {request.host!r} is not served by the certificate of "
                                             f"SNI {request.tls.server_name!r}")
            elif (vhost.redirect_https and not request.path.startswith(ACME_CHALLENGE_PREFIX)
                  and self.has_certificate(vhost)):
                await self.redirect_https(request, vhost, sink)
                return
            if self.rate_limit is not None and not rated:
                rated = True
                self.rate_limit.check_rate(request.client_addr)
            gate = self.access.gate_for(vhost, route)  # allow/deny, auth, authorizer
            if gate is not None and await gate.check(request, sink):
                return
            kind: str = route.kind if route is not None else "static"
            if request.path == vhost.status:
                kind = "status"  # the status page comes before every route (exact path only)
            if self.try_files and kind != "status":
                try_files = self.try_files.get(id(route) if route is not None else id(vhost))
                if try_files is not None:
                    fallback = try_files.resolve(request)
                    if fallback is not None:
                        self.internal_redirect(request, fallback, "try_files")
                        continue
            handler = self.handlers.get(kind)
            if handler is None:
                raise NotFound(f"no handler for {kind} routes")
            result = await self.run_handler(handler, request, sink, intercept=True, kept=kept)
            if result is None:
                return
            # RFC 3875 §6.2.2: the server serves the new URL as if it had been requested (a GET).
            if request.redirects >= MAX_LOCAL_REDIRECTS:
                raise InternalServerError(f"more than {MAX_LOCAL_REDIRECTS} local redirects")
            target = parse_target(result.target.encode("latin-1", "replace"), "GET")
            if result.fields is not None:
                # X-Accel-Redirect: an internal static route answers, with the backend's fields
                # (handlers/x_sendfile.py); a HEAD stays a HEAD and the request as the client
                # sent it stays in the logs, as in nginx.
                assert route is not None
                request.notes[X_ACCEL] = f"{result.target!r} (from route {route.prefix})"
                kept = result.fields
            else:
                request.target = result.target
            if request.method != "HEAD" or result.fields is None:
                request.method = "GET"
            request.path, request.raw_path, request.query = target.path, target.raw_path, target.query
            request.body = EMPTY_BODY
            request.headers = [(k, v) for k, v in request.headers
                               if k not in (b"content-length", b"content-type", b"transfer-encoding")]
            request.redirects += 1


def try_files_by_owner(config: Config) -> dict[int, TryFiles]:
    """The `try_files` of each route (by id) and of each vhost's root, with their directories."""
    found: dict[int, TryFiles] = {}
    for vhost in config.vhosts:
        if vhost.try_files and vhost.root is not None:
            found[id(vhost)] = TryFiles(vhost.try_files, vhost.root, "/", vhost.index)
        for route in vhost.routes:
            if not route.try_files:
                continue
            directory = route.root if route.kind in GATEWAY_KINDS else route.directory
            if directory is not None:
                found[id(route)] = TryFiles(route.try_files, directory, route.prefix, route.index or vhost.index)
    return found
