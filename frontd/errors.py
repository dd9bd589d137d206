"""The HTTPError family: every failure a request can meet, each carrying its status.

`protocol/http1.py` turns an HTTPError into a response and one log line; any other
exception is a 500 with the traceback in the error log only.
"""

from __future__ import annotations


class HTTPError(Exception):
    """A failure with an HTTP status. `detail` goes to the error log, never to the client."""

    status: int = 500
    reason: str = "Internal Server Error"

    def __init__(self, detail: str = "", *, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason
        self.headers = headers


class BadRequest(HTTPError):
    status, reason = 400, "Bad Request"


class Unauthorized(HTTPError):
    status, reason = 401, "Unauthorized"


class Forbidden(HTTPError):
    status, reason = 403, "Forbidden"


class NotFound(HTTPError):
    status, reason = 404, "Not Found"


class MethodNotAllowed(HTTPError):
    status, reason = 405, "Method Not Allowed"


class RequestTimeout(HTTPError):
    status, reason = 408, "Request Timeout"


class LengthRequired(HTTPError):
    status, reason = 411, "Length Required"


class PreconditionFailed(HTTPError):
    status, reason = 412, "Precondition Failed"


class ContentTooLarge(HTTPError):
    status, reason = 413, "Content Too Large"


class URITooLong(HTTPError):
    status, reason = 414, "URI Too Long"


class RangeNotSatisfiable(HTTPError):
    status, reason = 416, "Range Not Satisfiable"


class HeaderFieldsTooLarge(HTTPError):
    status, reason = 431, "Request Header Fields Too Large"


class InternalServerError(HTTPError):
    status, reason = 500, "Internal Server Error"


class NotImplementedMethod(HTTPError):
    status, reason = 501, "Not Implemented"


class BadGateway(HTTPError):
    status, reason = 502, "Bad Gateway"


class ServiceUnavailable(HTTPError):
    status, reason = 503, "Service Unavailable"


class GatewayTimeout(HTTPError):
    status, reason = 504, "Gateway Timeout"


class MisdirectedRequest(HTTPError):
    status, reason = 421, "Misdirected Request"


class TooManyRequests(HTTPError):
    status, reason = 429, "Too Many Requests"


class HTTPVersionNotSupported(HTTPError):
    status, reason = 505, "HTTP Version Not Supported"


_BY_STATUS: dict[int, type[HTTPError]] = {
    cls.status: cls for cls in HTTPError.__subclasses__()
}


def error_for_status(status: int, detail: str = "") -> HTTPError:
    """The HTTPError for a status, e.g. the `error_status_hint` h11 gives."""
    cls = _BY_STATUS.get(status, BadRequest if 400 <= status < 500 else InternalServerError)
    return cls(detail)
