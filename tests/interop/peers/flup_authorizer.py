"""A FastCGI authorizer (FastCGI 1.0 §6.3) and a responder that shows its environment, under
flup's threaded FastCGI server.

    python flup_authorizer.py authorizer|responder unix:/path/to.sock|127.0.0.1:PORT
    python flup_authorizer.py both          (spawned: the socket is fd 0; FCGI_ROLE tells the role)

The authorizer lets in `Authorization: Bearer good` with two Variable- fields, stalls on paths
containing "/stall" (5 s, past the route's 1 s timeout: bounded), and answers anything else with a 401 of its own.
"""

import json
import sys
import time

from flup.server.fcgi import WSGIServer
from flup.server.fcgi_base import FCGI_AUTHORIZER, FCGI_RESPONDER
from flup_peer import bind_address

SHOWN = ("REMOTE_USER", "AUTH_TYPE", "USER_ID", "ROLE", "SAW_LENGTH", "REQUEST_METHOD", "PATH_INFO",
         "HTTP_X_VARIABLE_USER_ID")


def authorizer(environ, start_response):
    if "/stall" in environ.get("PATH_INFO", ""):
        time.sleep(5)
    if environ.get("HTTP_AUTHORIZATION") == "Bearer good":
        start_response("200 OK", [("Variable-USER_ID", "42"), ("Variable-ROLE", "admin"),
                                  ("Variable-SAW_LENGTH", environ.get("CONTENT_LENGTH", "none"))])
        return [b""]
    body = b"authorizer says no\n"
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="api"'), ("Content-Type", "text/plain"),
                                        ("Variable-LEAK", "not for the client")])
    return [body]


def responder(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({key: environ.get(key) for key in SHOWN}).encode()]


def both(environ, start_response):
    if environ.get("FCGI_ROLE") == "AUTHORIZER":
        return authorizer(environ, start_response)
    return responder(environ, start_response)


def main() -> None:
    if sys.argv[1] == "both":
        # bindAddress None: the listening socket frontd passes as fd 0 (FastCGI 1.0 §2.2).
        WSGIServer(both, roles=(FCGI_RESPONDER, FCGI_AUTHORIZER)).run()
        return
    mode, bind = sys.argv[1], bind_address(sys.argv[2])
    if mode == "authorizer":
        WSGIServer(authorizer, bindAddress=bind, roles=(FCGI_AUTHORIZER,)).run()
    else:
        WSGIServer(responder, bindAddress=bind, roles=(FCGI_RESPONDER,)).run()


if __name__ == "__main__":
    main()
