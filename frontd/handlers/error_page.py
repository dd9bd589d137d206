"""Error response bodies: the status and its reason, nothing else (never a path or a traceback)."""

from __future__ import annotations

import functools
from http import HTTPStatus


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@functools.cache
def error_body(status: int) -> bytes:
    title = f"{status} {reason_phrase(status)}"
    return (f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
            f"<body><h1>{title}</h1><hr><p>frontd</p></body></html>\n").encode()


def error_headers(status: int, *, close: bool) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"text/html; charset=utf-8"),
               (b"content-length", str(len(error_body(status))).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return headers
