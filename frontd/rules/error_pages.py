"""`error_pages`: frontd's own errors answered with a page of the site, under the ORIGINAL status.

The page is fetched by an internal GET (no body, no conditional or range fields) through the
route its path falls under: a static file or a script. It is sent with the status of the error
and the error's own fields (`Allow`, `WWW-Authenticate`, `Retry-After`). A page that is missing,
fails, answers anything but 200, or would exceed the request's internal redirects is not used:
the built-in page goes out instead, and an error met while serving a page never leads to another
page, so there is no loop.

A backend's own error responses pass through unchanged, unless its route sets `intercept_errors`:
then `InterceptSink` turns the start of a response whose status has a page into an
`InterceptedError` before anything is sent. The gateway or proxy handler aborts the exchange (the
rest of the backend's response is dropped, its connection not reused) and the page is served as
for frontd's own errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from frontd.config.model import MAX_INTERNAL_REDIRECTS, Config
from frontd.errors import HTTPError
from frontd.request import EMPTY_BODY, Request
from frontd.response import ResponseSink, SinkWrapper

log = logging.getLogger("frontd")

# Fields of the original request that must not shape the page's response.
_DROPPED_FIELDS = frozenset({b"content-length", b"content-type", b"transfer-encoding", b"range", b"if-range",
                             b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"})

# Serves a request through the route of its path (the dispatcher's routing, without rewrites).
PageServer = Callable[[Request, ResponseSink], Awaitable[object]]


# After these the request stream cannot be trusted (or its body was left unread on purpose), so
# the connection closes after the page, as protocol/http1.py closes it after a built-in page.
_CLOSING_STATUSES = frozenset({400, 408, 413, 414, 431, 501, 505})
# The page's validators describe the page file, not the resource that failed: a later conditional
# request for that resource must not be matched against them.
_PAGE_DROPPED_FIELDS = frozenset({b"etag", b"last-modified", b"accept-ranges"})
# Fields of a backend's intercepted error response that the page keeps (RFC 9110 §15.5.2, §10.2.3).
_KEPT_FIELDS = frozenset({b"www-authenticate", b"retry-after", b"allow"})


class InterceptedError(HTTPError):
    """A backend's error response, taken over by an error page (`intercept_errors`)."""

    def __init__(self, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        super().__init__(detail, headers=headers)
        self.status = status


class _PageFailed(Exception):
    """The page's handler answered something other than 200."""


class PageSink(SinkWrapper):
    """Passes the page's 200 on as the original error's status, with the error's fields."""

    __slots__ = ("_error",)

    def __init__(self, sink: ResponseSink, error: HTTPError) -> None:
        super().__init__(sink)
        self._error = error

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        if status != 200:
            raise _PageFailed(f"the page answered {status}")
        error = self._error
        closing = ((b"connection", b"close"),) if error.status in _CLOSING_STATUSES else ()
        kept = [(name, value) for name, value in headers if name not in _PAGE_DROPPED_FIELDS]
        await self.inner.start(error.status, [*kept, *error.headers, *closing])

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        raise _PageFailed("an error page cannot take over the connection")


class InterceptSink(SinkWrapper):
    """The sink of a route with `intercept_errors`: a response whose status has a page is not
    started but raised as an InterceptedError."""

    __slots__ = ("_statuses",)

    def __init__(self, sink: ResponseSink, statuses: frozenset[int]) -> None:
        super().__init__(sink)
        self._statuses = statuses

    async def start(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"") -> None:
        if status in self._statuses:
            kept = tuple((name, value) for name, value in headers if name.lower() in _KEPT_FIELDS)
            raise InterceptedError(status, f"the backend answered {status}; intercept_errors serves the page",
                                   kept)
        await self.inner.start(status, headers, reason)


class ErrorPages:
    """The effective tables, by route (merged with the vhost's at load) and by vhost."""

    def __init__(self, config: Config) -> None:
        self.tables: dict[int, dict[int, str]] = {}
        # Routes with intercept_errors: the statuses of their backends' responses to take over.
        self.intercepted: dict[int, frozenset[int]] = {}
        for vhost in config.vhosts:
            if vhost.error_pages:
                self.tables[id(vhost)] = dict(vhost.error_pages)
            for route in vhost.routes:
                if route.error_pages:
                    self.tables[id(route)] = dict(route.error_pages)
                    if route.intercept_errors:
                        self.intercepted[id(route)] = frozenset(dict(route.error_pages))

    def sink_for(self, request: Request, sink: ResponseSink) -> ResponseSink:
        """The handler's sink: an InterceptSink on a route with intercept_errors."""
        statuses = self.intercepted.get(id(request.route)) if self.intercepted else None
        return sink if statuses is None else InterceptSink(sink, statuses)

    def page(self, request: Request, status: int) -> str | None:
        owner = request.route if request.route is not None else request.vhost
        table = self.tables.get(id(owner))
        return table.get(status) if table is not None else None

    async def serve(self, request: Request, sink: ResponseSink, error: HTTPError, serve_page: PageServer) -> None:
        """Answer `error` with its page, or re-raise it for the built-in page."""
        page = self.page(request, error.status) if not sink.started else None
        if page is None or request.redirects >= MAX_INTERNAL_REDIRECTS or "error_page" in request.notes:
            raise error
        method = request.method
        request.notes["error_page"] = page
        path, _, query = page.partition("?")
        request.method, request.path, request.raw_path, request.query = "GET", path, path, query
        request.body = EMPTY_BODY
        request.headers = [(k, v) for k, v in request.headers if k not in _DROPPED_FIELDS]
        request.redirects += 1
        try:
            result = await serve_page(request, PageSink(sink, error))
            if result is not None:
                raise _PageFailed("the page asked for a local redirect")
        except (HTTPError, _PageFailed) as exc:
            if sink.started:
                raise
            log.warning("error page %s for %d could not be served (%s); the built-in page is sent%s",
                        page, error.status, exc, request.log_context())
            raise error from None
        finally:
            request.method = method
        level = logging.INFO if error.status in (403, 404) else logging.WARNING if error.status < 500 else logging.ERROR
        log.log(level, "%d: %s (error page %s)%s", error.status, error.detail, page, request.log_context())
