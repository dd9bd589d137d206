"""Run the interop WSGI app under the `scgi` package's pre-forking server (Quixote's).

    python scgi_peer.py unix:/path/to.sock|127.0.0.1:PORT

The package has no WSGI adapter, so `WSGIHandler.produce` is a minimal one: environ from the
SCGI headers, the body on wsgi.input, a CGI-style response (Status field) on the connection.
"""

import socket
import sys
from typing import Any, BinaryIO

from scgi.scgi_server import SCGIServer
from scgi.util import SCGIHandler

import wsgi_app


class WSGIHandler(SCGIHandler):
    def produce(self, env: dict[str, str], bodysize: int, input: BinaryIO, output: BinaryIO) -> None:
        environ: dict[str, Any] = dict(env)
        environ.update({
            "wsgi.input": input, "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.url_scheme": "https" if env.get("HTTPS") == "on" else "http",
        })
        head: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
            head[:] = [status, headers]
            return output.write

        result = wsgi_app.application(environ, start_response)
        try:
            pieces = iter(result)
            first = next(pieces, b"")  # start_response has run once the first piece is out
            status, headers = head
            lines = [f"Status: {status}"] + [f"{name}: {value}" for name, value in headers]
            output.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            output.write(first)
            for piece in pieces:
                output.write(piece)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


class Server(SCGIServer):
    def __init__(self, address: str) -> None:
        super().__init__(handler_class=WSGIHandler, max_children=4)
        self.address = address

    def get_listening_socket(self) -> socket.socket:
        if self.address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.address[len("unix:"):])
            return sock
        host, port = self.address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        return sock


if __name__ == "__main__":
    Server(sys.argv[1]).serve()
