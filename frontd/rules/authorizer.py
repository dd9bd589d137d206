"""FastCGI authorizers (FastCGI 1.0 §6.3): an application in the AUTHORIZER role decides, before
the route's handler runs, whether a request may go on.

frontd sends the request's meta-variables (no body, no CONTENT_LENGTH) with role FCGI_AUTHORIZER
over the same transport as responders (`frontd.gateway.fastcgi`). A 200 lets the request through,
and each `Variable-NAME: value` field of that response becomes the variable NAME for the route's
gateway backend, or the request field `X-Variable-NAME` for a proxy backend (as lighttpd does);
any other status is the client's response, headers and body (a 401 with its WWW-Authenticate, a
302 to a login page). An authorizer that cannot be reached is a 502 (or 503), one that stays
silent past the route's `timeout` a 504: never a pass.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from frontd.config.model import Route
from frontd.errors import BadGateway, GatewayTimeout
from frontd.gateway.environ import ScriptPaths, build_environ
from frontd.gateway.fastcgi import FastCGIRoute, FastCGITransport
from frontd.request import Request
from frontd.response import ResponseSink
from frontd.wire.cgi_response import ResponseHeadParser
from frontd.wire.errors import WireError
from frontd.wire.fastcgi import FCGI_AUTHORIZER

MAX_RESPONSE = 64 * 1024  # an authorizer's whole answer, head and body
# As lighttpd sends it: one application serving both roles (`authorizer = true`) tells them apart.
ROLE_VARIABLE = ((b"FCGI_ROLE", b"AUTHORIZER"),)
VARIABLE_PREFIX = b"variable-"
PROXY_PREFIX = b"x-variable-"
_NAME_RE = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


class Authorizer:
    """The authorizer of one route: its backends (round-robin, passive health) and timeout."""

    def __init__(self, route: Route) -> None:
        # A route of any kind: the authorizer's addresses stand in for the route's backends, with
        # the route's connect_timeout and timeout. Connections are not kept (keepalive 0).
        setup = Route(prefix=route.prefix, kind="fastcgi", backends=route.authorizer,
                      connect_timeout=route.connect_timeout, timeout=route.timeout)
        self.setup = FastCGIRoute(setup, role=FCGI_AUTHORIZER)
        self.timeout = route.timeout

    async def check(self, request: Request, sink: ResponseSink) -> bool:
        """Ask the authorizer. False: the request goes on (with `request.auth_variables` set);
        True: the authorizer's own response has been sent to the client."""
        vhost = request.vhost
        paths = ScriptPaths("", request.path, vhost.root if vhost is not None and vhost.root else "", None)
        # §6.3: the authorizer gets the request's variables and headers, the credentials included,
        # but no body (CONTENT_LENGTH is not sent).
        environ = build_environ(request, paths, content_length=None, pass_authorization=True, extra=ROLE_VARIABLE)
        transport = FastCGITransport(self.setup, request)
        name = "fastcgi authorizer"
        output = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                await transport.open(environ, None)
                name = f"fastcgi authorizer {transport.name.removeprefix('fastcgi ')}"
                while chunk := await transport.read():
                    output += chunk
                    if len(output) > MAX_RESPONSE:
                        raise BadGateway(f"{name}: response over {MAX_RESPONSE} bytes")
        except TimeoutError:
            transport.abort()
            raise GatewayTimeout(f"{name}: no answer within {self.timeout:g}s") from None
        except WireError as exc:
            transport.abort()
            raise BadGateway(f"{name}: {exc}") from None
        except BaseException:
            transport.abort()
            raise
        finally:
            await transport.close()
        parser = ResponseHeadParser(MAX_RESPONSE)
        try:
            head = parser.feed(bytes(output))
            if head is None:
                parser.eof()
        except WireError as exc:
            raise BadGateway(f"{name}: {exc}") from None
        assert head is not None
        variables = [(n[len(VARIABLE_PREFIX):], v) for n, v in head.headers
                     if n.lower().startswith(VARIABLE_PREFIX)]
        if head.status == 200:
            request.auth_variables = tuple((n.decode("ascii"), v.decode("latin-1")) for n, v in variables
                                           if _NAME_RE.fullmatch(n))
            return False
        # §6.3: any other status is the response to the client, without the Variable- fields.
        fields = [(n, v) for n, v in head.headers if not n.lower().startswith(VARIABLE_PREFIX)
                  and n.lower() not in (b"content-length", b"transfer-encoding")]
        body = head.body_start
        fields.append((b"content-length", str(len(body)).encode()))
        await sink.start(head.status, fields)
        await sink.write(body)
        return True


def proxy_fields(headers: Iterable[tuple[bytes, bytes]], variables: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    """The request fields for a proxy backend behind an authorizer: the client's own
    `X-Variable-*` fields dropped (they could pose as the authorizer's), then one
    `X-Variable-NAME` field per variable of the authorizer's 200."""
    out = [(n, v) for n, v in headers if not n.lower().startswith(PROXY_PREFIX)]
    out.extend((PROXY_PREFIX + n.encode("ascii"), v.encode("latin-1")) for n, v in variables)
    return out
