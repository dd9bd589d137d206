"""The demo's WSGI application: a page showing what frontd passed to it.

frontd starts this file itself (the `spawn` key on the /app/ route of conf/frontd.conf), with the
listening socket already open on fd 0, and flup's FastCGI server takes the socket from there
(FastCGI 1.0 §2.2). It needs flup: `pip install '.[demo]'`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable

from flup.server.fcgi import WSGIServer

# The request as the application sees it; the rest of the environ follows in a second table.
HIGHLIGHT = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
             "REMOTE_ADDR", "HTTP_HOST", "SERVER_SOFTWARE", "wsgi.url_scheme")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>frontd demo: a WSGI application</title>
  <link rel="stylesheet" href="/style.css">
</head>
<body>
  <h1>A WSGI application over FastCGI</h1>
  <p>Process {pid}, started by frontd and served by flup. <a href="/">Back to the demo</a>.</p>
  <h2>The request</h2>
  {highlight}
  <h2>The whole environ</h2>
  {rest}
</body>
</html>
"""


def table(items: Iterable[tuple[str, object]]) -> str:
    """Names and values as HTML rows; values that are not strings (wsgi.input, ...) by their repr."""
    rows = []
    for name, value in items:
        text = value if isinstance(value, str) else repr(value)
        rows.append(f"<tr><th>{html.escape(name)}</th><td><code>{html.escape(text)}</code></td></tr>\n")
    return "<table>\n" + "".join(rows) + "</table>"


def application(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    shown = [(name, environ.get(name, "")) for name in HIGHLIGHT]
    rest = sorted((name, value) for name, value in environ.items() if name not in HIGHLIGHT)
    body = PAGE.format(pid=os.getpid(), highlight=table(shown), rest=table(rest)).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    # No bindAddress: flup takes the socket frontd opened on fd 0.
    WSGIServer(application).run()
