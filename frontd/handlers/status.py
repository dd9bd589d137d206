"""The status page: `status = "/frontd-status"` on a vhost, for the addresses in `status_allow`.

The dispatcher sends a request here when its path is exactly the vhost's `status` path, before
any route. The answering worker reads every worker's counters from the shared area (so the page
shows the whole server, whichever worker took the request), and renders `?format=html` (the
default), `json` or `prometheus`. Other clients get 403: the page tells which backends exist
and how busy the server is.
"""

from __future__ import annotations

import urllib.parse

from frontd.certs.acme import status as acme_status
from frontd.certs.files import certificate_status
from frontd.config.model import Config, VHost
from frontd.errors import BadRequest, Forbidden, MethodNotAllowed
from frontd.http.addresses import Network, client_allowed, compile_networks
from frontd.request import Request
from frontd.response import ResponseSink
from frontd.status import metrics
from frontd.status.render import (
    PROMETHEUS_CONTENT_TYPE,
    backend_routes,
    render_html,
    render_json,
    render_prometheus,
)

FORMATS = {
    "html": (render_html, b"text/html; charset=utf-8"),
    "json": (render_json, b"application/json"),
    "prometheus": (render_prometheus, PROMETHEUS_CONTENT_TYPE),
}
ALLOW = b"GET, HEAD"


def status_format(query: str) -> str:
    """The `format` query parameter (html when absent); BadRequest for an unknown one."""
    values = urllib.parse.parse_qs(query, keep_blank_values=True).get("format")
    name = values[-1] if values else "html"
    if name not in FORMATS:
        raise BadRequest(f"status page: unknown format {name[:40]!r} (html, json or prometheus)")
    return name


class StatusHandler:
    """Answers the status path of every vhost that has one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.allow: dict[int, tuple[Network, ...]] = {
            id(vhost): compile_networks(vhost.status_allow)
            for vhost in config.vhosts if vhost.status is not None
        }
        self.routes = backend_routes(config)
        self.has_certificates = any(vhost.has_tls for vhost in config.vhosts)

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        vhost: VHost | None = request.vhost
        networks = self.allow.get(id(vhost), ()) if vhost is not None else ()
        if not client_allowed(request.client_addr, networks):
            raise Forbidden(f"status page: client {request.client_addr} is not in status_allow")
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"status page: method {request.method}", headers=((b"allow", ALLOW),))
        render, content_type = FORMATS[status_format(request.query)]
        area = metrics.STATS.area
        if area is None:
            # A worker run without a master (no shared area): its own process only, from scratch.
            area = metrics.AREA = metrics.create(self.config)
            metrics.STATS.attach(area, area.claim(0), 0)
        certificates = certificate_status(self.config) if self.has_certificates else []
        body = render(area.snapshot(metrics.STATS.worker), self.routes, certificates, acme_status(self.config))
        await sink.start(200, [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ])
        await sink.write(body)
