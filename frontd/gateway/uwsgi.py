"""The uwsgi transport: one request per connection, an HTTP response back, read to EOF.

`UwsgiGateway` is the transport factory for uwsgi routes, built once per worker with a
`BackendSet` per route. A request is the 4-byte packet header (modifier1 = 0, WSGI; modifier2
= 0) and the vars block, then the body unframed (CONTENT_LENGTH tells the application how much;
chunked bodies were spooled by the handler to learn it). The reply is a raw HTTP/1.x response
(status line, fields, body) that ends when uWSGI closes the connection.

Two rules of the packet format are enforced here:

- the vars block has a 16-bit size: a request whose variables do not fit is refused with 431,
  never sent with a wrapped or truncated size (Apache's CVE-2020-11984);
- uWSGI reads "magic" variables (UWSGI_FILE, UWSGI_SCRIPT, UWSGI_SETENV, ...) that load code or
  change the application. Only the route's own `env` may set them: any other variable named so
  is dropped. Request headers arrive as HTTP_* and cannot be named so, and this keeps it that
  way whatever else comes to be passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from frontd.config.model import Config, Route
from frontd.errors import HeaderFieldsTooLarge
from frontd.gateway.backends import BackendSet
from frontd.gateway.scgi import SCGITransport
from frontd.request import Request
from frontd.wire.uwsgi import UwsgiTooLarge, encode_request

# uWSGI's magic variables all start so (uwsgi_parse_vars in core/protocol.c).
MAGIC_PREFIX: Final = b"UWSGI_"


class UwsgiRoute:
    """One uwsgi route in one worker: its backends and the magic variables it may set."""

    __slots__ = ("backends", "allowed_magic")

    def __init__(self, route: Route) -> None:
        self.backends = BackendSet(route.backends, route.connect_timeout, 0, name="uwsgi", bare=True)
        self.allowed_magic = frozenset(
            name.encode() for name, _ in route.env if name.encode().startswith(MAGIC_PREFIX)
        )


class UwsgiGateway:
    """The transport factory for uwsgi routes: `gateway(route, request)` -> a new transport."""

    def __init__(self, config: Config) -> None:
        self.routes: dict[int, UwsgiRoute] = {}
        for vhost in config.vhosts:
            for route in vhost.routes:
                if route.kind == "uwsgi":
                    self.routes[id(route)] = UwsgiRoute(route)

    def __call__(self, route: Route, request: Request) -> UwsgiTransport:
        setup = self.routes.get(id(route))
        if setup is None:
            setup = self.routes[id(route)] = UwsgiRoute(route)
        return UwsgiTransport(setup)


class UwsgiTransport(SCGITransport):
    """One request to a uWSGI server (--socket) on a connection of its own."""

    allow_status_line = True  # the reply is a raw HTTP response
    protocol = "uwsgi"

    def __init__(self, setup: UwsgiRoute) -> None:
        super().__init__(setup.backends)
        self.allowed_magic = setup.allowed_magic

    def encode_head(self, environ: Mapping[bytes, bytes], content_length: int | None) -> bytes:
        allowed = self.allowed_magic
        pairs = [(name, value) for name, value in environ.items()
                 if not name.startswith(MAGIC_PREFIX) or name in allowed]
        try:
            return encode_request(pairs)
        except UwsgiTooLarge as exc:
            # Said before connecting: nothing reaches the backend (CVE-2020-11984).
            raise HeaderFieldsTooLarge(f"uwsgi: request variables do not fit a packet: {exc}") from None
