"""External redirects: `redirect` routes and rewrite rules with a `status`.

A `redirect` route answers every request under its prefix with the configured URL plus the rest of
the path and the query, as Apache's `Redirect` does. The Location is built from the configuration
only: the request's Host appears in it only where the URL says `$host`. The rest of the path is
the decoded, normalised path (no empty or dot segments, so it never starts with "/"),
percent-encoded again: a backslash, CR, LF, "?" or "#" in it cannot end the path, start another
line or turn the Location into a scheme-relative `//host` URL.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Callable

from frontd.errors import BadRequest
from frontd.request import Request
from frontd.response import ResponseSink

HOST_VARIABLE = "$host"
# What the rest of the path keeps as it is in a Location; everything else is percent-encoded.
_URL_SAFE = "/!$&'()*+,;=:@-._~"


async def send_redirect(sink: ResponseSink, status: int, location: str,
                        fields: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]] | None = None) -> None:
    """A redirect response with a small HTML body naming the new place; `fields` adds the
    configured `headers` when the response does not go through a route's output rules."""
    body = f'<html><body><a href="{html.escape(location)}">moved here</a></body></html>\n'.encode()
    headers = [(b"location", location.encode("ascii")), (b"content-type", b"text/html"),
               (b"content-length", b"%d" % len(body))]
    await sink.start(status, fields(headers) if fields is not None else headers)
    await sink.write(body)


def redirect_location(url: str, prefix: str, request: Request) -> str:
    """`url` (from the config) with `$host`, the rest of the path below `prefix`, and the query."""
    if HOST_VARIABLE in url:
        host = request.host
        if not host and request.vhost is not None:
            host = next((name for name in request.vhost.names if not name.startswith("*.")), "")
        if not host:
            raise BadRequest(f"redirect to {url!r}: the request has no Host for $host")
        url = url.replace(HOST_VARIABLE, host)  # host_from_header allows only name characters
    path = request.path
    rest = path[len(prefix):] if path.startswith(prefix) else ""
    if rest:
        # The normalised path has no empty segment; lstrip is the second line of defence
        # against a "//evil.test" Location.
        url = url.rstrip("/") + "/" + urllib.parse.quote(rest.lstrip("/"), safe=_URL_SAFE)
    if request.query:
        url += "?" + request.query
    return url


class RedirectHandler:
    """The handler of `redirect` routes."""

    async def handle(self, request: Request, sink: ResponseSink) -> None:
        route = request.route
        assert route is not None and route.redirect is not None
        await send_redirect(sink, route.redirect_status, redirect_location(route.redirect, route.prefix, request))
