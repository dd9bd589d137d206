"""Run the interop WSGI app under flup's threaded FastCGI or SCGI server.

    python flup_peer.py fcgi|scgi unix:/path/to.sock|127.0.0.1:PORT
"""

import sys

import wsgi_app


def bind_address(address: str) -> object:
    """flup's bindAddress for "unix:/path" or "127.0.0.1:PORT"."""
    if address.startswith("unix:"):
        return address[len("unix:"):]
    host, port = address.rsplit(":", 1)
    return (host, int(port))


def main() -> None:
    protocol, address = sys.argv[1], sys.argv[2]
    bind = bind_address(address)
    if protocol == "fcgi":
        from flup.server.fcgi import WSGIServer
    else:
        from flup.server.scgi import WSGIServer
    # multiplexed=False: flup then honours FCGI_KEEP_CONN per request, as php-fpm does.
    WSGIServer(wsgi_app.application, bindAddress=bind).run()


if __name__ == "__main__":
    main()
