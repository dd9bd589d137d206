"""The WSGI application the Python peers (flup, scgi, uWSGI) serve in the interop tests.

Standard library only: uWSGI's Debian plugin embeds the system Python, not the test runner's.
The instance name comes from the PEER_NAME environment variable, so a test can tell which of two
backends answered.

    /info      (and any other path) the environ entries the tests look at, as JSON
    /echo      POST: length and SHA-256 of the body read through wsgi.input
    /status    409 with X-Peer-Test: relayed, and a text body
    /slow      sleeps 3 s before answering (the route's timeout is 1 s)
    /big       10 MiB in 64 KiB pieces, a known pattern
    /fields    200 with the fields the query gives (`?X-Sendfile=/srv/a.pdf`) and a short body
"""

import hashlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

NAME = os.environ.get("PEER_NAME", "?")
BIG_PIECE = bytes(range(256)) * 256  # 64 KiB
BIG_PIECES = 160  # 10 MiB
INFO_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH", "CONTENT_TYPE",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REQUEST_URI", "HTTP_HOST",
    "HTTP_X_TEST", "HTTP_PROXY", "HTTPS", "GATEWAY_INTERFACE", "SCGI",
)


def _read_body(environ: dict[str, Any]) -> tuple[int, str]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    left = length
    while left > 0:
        data = stream.read(min(left, 65536))
        if not data:
            break
        digest.update(data)
        left -= len(data)
    return length - left, digest.hexdigest()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # The first segment of PATH_INFO names the endpoint: /echo, /echo/anything.
    path = "/" + environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    if path == "/echo":
        size, digest = _read_body(environ)
        body = json.dumps({"peer": NAME, "length": size, "sha256": digest,
                           "CONTENT_LENGTH": environ.get("CONTENT_LENGTH")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/status":
        start_response("409 Conflict", [("Content-Type", "text/plain"), ("X-Peer-Test", "relayed")])
        return [b"conflict from " + NAME.encode() + b"\n"]
    if path == "/slow":
        time.sleep(3)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late\n"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (BIG_PIECE for _ in range(BIG_PIECES))
    if path == "/fields":
        fields = urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""))
        if not any(name.lower() == "content-type" for name, _ in fields):
            fields.insert(0, ("Content-Type", "text/plain"))
        start_response("200 OK", fields)
        return [b"the body of " + NAME.encode() + b"\n"]
    info = {key: environ.get(key) for key in INFO_KEYS}
    info["peer"] = NAME
    info["app_url"] = environ.get("SCRIPT_NAME", "") + "/"
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Peer", NAME)])
    return [json.dumps(info).encode()]
