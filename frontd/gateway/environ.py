"""RFC 3875 meta-variables: the one environment builder for CGI, FastCGI, SCGI and uwsgi.

`build_environ(request, paths, ...)` returns the meta-variables of §4.1 as an ordered
`dict[bytes, bytes]`: the CGI transport hands it to `exec` as the environment, the other
gateways encode it as their parameters. Values are bytes because request headers may carry
obs-text (RFC 9110 §5.5) that is not UTF-8; nothing is decoded on the way through.

Request headers become `HTTP_*` variables (§4.1.18) under three rules that guard the
script from a client posing as the server:

- a name with anything but letters, digits and "-" is dropped (with a debug log line):
  "X_Forwarded_For" would otherwise land on the same `HTTP_X_FORWARDED_FOR` as the
  "X-Forwarded-For" a front proxy set, and "Remote_User" would sit next to `REMOTE_USER`;
- `Proxy` never becomes `HTTP_PROXY`, which many HTTP libraries read as their proxy
  setting (httpoxy, CVE-2016-5385);
- `Proxy-Authorization` is never passed, `Authorization` only if the route allows (§9.2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from frontd import SERVER_SOFTWARE
from frontd.request import Request

log = logging.getLogger("frontd")

Environ = dict[bytes, bytes]

_GATEWAY_INTERFACE: Final = b"CGI/1.1"
_SERVER_SOFTWARE: Final = SERVER_SOFTWARE.encode()
_PROTOCOLS: Final = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "2.0": b"HTTP/2.0"}

# §4.1.18: what a header name may hold to become a variable; h11 gives names in lower case.
_HEADER_NAME: Final = re.compile(rb"[A-Za-z0-9-]+")

# Headers that never become HTTP_* variables, whatever the route says.
_NEVER: Final = frozenset({
    b"content-length",  # §4.1.18: given as CONTENT_LENGTH (after de-chunking, §4.1.2)
    b"content-type",  # §4.1.18: given as CONTENT_TYPE
    b"transfer-encoding",  # the body on the script's input is de-chunked (§4.2)
    b"proxy",  # httpoxy: HTTP_PROXY is read as a proxy setting (CVE-2016-5385)
    b"proxy-authorization",  # §9.2: credentials for the previous hop, not for the script
})
_DROPPED: Final = b""  # cache mark: a header name that is never passed
_INVALID: Final = b"!"  # cache mark: a header name that is dropped with a log line
_MAX_CACHED_NAMES: Final = 4096

# Header name -> variable name (or a mark), filled as names are met: a request costs a dict
# lookup per header instead of an upper() and a replace().
_names: dict[bytes, bytes] = {}


@dataclass(frozen=True, slots=True)
class ScriptPaths:
    """Where the request landed, as the handler worked it out for the route.

    `script_name` and `path_info` are decoded URI paths (§4.1.13, §4.1.5): `script_name`
    is "" or starts with "/" and never ends with one that belongs to `path_info`, which is
    "" or starts with "/". `document_root` is the directory `PATH_TRANSLATED` is mapped into
    ("" when there is none); `script_filename` the script's file, when the script is one.
    """

    script_name: str
    path_info: str
    document_root: str = ""
    script_filename: str | None = None


def _variable(name: bytes) -> bytes:
    """The variable for a header name, `_DROPPED` or `_INVALID`; memoised in `_names`."""
    found = _names.get(name)
    if found is not None:
        return found
    lower = name.lower()
    if _HEADER_NAME.fullmatch(name) is None:
        found = _INVALID
    elif lower in _NEVER:
        found = _DROPPED
    else:
        found = b"HTTP_" + lower.upper().replace(b"-", b"_")
    if len(_names) < _MAX_CACHED_NAMES:
        _names[name] = found
    return found


def server_name(request: Request) -> str:
    """§4.1.14: the Host name the client asked for, else the vhost's first plain name,
    else the address the request came in on."""
    if request.host:
        return request.host
    vhost = request.vhost
    if vhost is not None:
        for name in vhost.names:
            if not name.startswith("*"):
                return name
    return request.server_addr


def request_uri(request: Request) -> str:
    """The path and query as the client sent them (nginx's and Apache's REQUEST_URI)."""
    if request.target.startswith("/"):
        return request.target
    # Absolute-form ("http://host/p?q", RFC 9112 §3.2.2): the origin-form part of it.
    return request.raw_path + ("?" + request.query if request.query else "")


def build_environ(
    request: Request,
    paths: ScriptPaths,
    *,
    content_length: int | None,
    pass_authorization: bool = True,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> Environ:
    """The meta-variables for one request (RFC 3875 §4.1), then the headers, then `extra`.

    `content_length` is the body's length after de-chunking, or None when the request has
    no body: CONTENT_LENGTH is set if and only if there is one (§4.1.2). `extra` (a route's
    `env`, and PATH for CGI) comes last and wins over what came before: it is the
    administrator's word.
    """
    env: Environ = {
        b"GATEWAY_INTERFACE": _GATEWAY_INTERFACE,  # §4.1.4
        b"SERVER_SOFTWARE": _SERVER_SOFTWARE,  # §4.1.17
        b"SERVER_PROTOCOL": _PROTOCOLS.get(request.http_version, b"HTTP/1.1"),  # §4.1.16
        b"SERVER_NAME": server_name(request).encode(),  # §4.1.14
        b"SERVER_ADDR": request.server_addr.encode(),
        b"SERVER_PORT": str(request.server_port).encode(),  # §4.1.15: even the default port
        b"REQUEST_METHOD": request.method.encode(),  # §4.1.12
        b"REQUEST_SCHEME": request.scheme.encode(),
        b"REQUEST_URI": request_uri(request).encode(),
        b"QUERY_STRING": request.query.encode(),  # §4.1.7: raw, "" when there is none
        b"SCRIPT_NAME": paths.script_name.encode(),  # §4.1.13: set even when empty
        b"PATH_INFO": paths.path_info.encode(),  # §4.1.5: decoded
        b"DOCUMENT_ROOT": paths.document_root.encode(),
        b"REMOTE_ADDR": request.client_addr.encode(),  # §4.1.8
        b"REMOTE_PORT": str(request.client_port).encode(),
        # php-cgi runs only when this says the request came through a server (its
        # cgi.force_redirect guard); 200 because the server did not redirect internally.
        b"REDIRECT_STATUS": b"200",
    }
    if paths.path_info and paths.document_root:
        # §4.1.6: the path-info mapped as if it were a URI path into the document root;
        # unset when PATH_INFO is empty.
        env[b"PATH_TRANSLATED"] = (paths.document_root.rstrip("/") + paths.path_info).encode()
    if paths.script_filename is not None:
        env[b"SCRIPT_FILENAME"] = paths.script_filename.encode()
    if request.scheme == "https":
        # As Apache's mod_ssl and nginx's fastcgi_params name them: applications (Django, flup,
        # PHP) build https:// URLs from HTTPS without any setting of their own.
        env[b"HTTPS"] = b"on"
    tls = request.tls
    if tls is not None:
        env[b"SSL_PROTOCOL"] = tls.protocol.encode()
        env[b"SSL_CIPHER"] = tls.cipher.encode()
        if tls.server_name:
            env[b"SSL_TLS_SNI"] = tls.server_name.encode()
    if content_length is not None:
        env[b"CONTENT_LENGTH"] = str(content_length).encode()  # §4.1.2
    headers: dict[bytes, bytes] = {}
    content_type: bytes | None = None
    cached = _names.get  # per header, a dict lookup: `_variable` runs for names not seen yet
    for name, value in request.headers:
        variable = cached(name)
        if variable is None:
            variable = _variable(name)
        if not variable:
            if content_type is None and name == b"content-type":
                content_type = value  # the first one, as request.header() gives it
            continue
        if variable == _INVALID:
            log.debug("request header %r left out of the gateway environment: only letters, digits "
                      "and \"-\" make a variable name (RFC 3875 §4.1.18)%s", name.decode("latin-1"),
                      request.log_context())
            continue
        if variable == b"HTTP_AUTHORIZATION" and not pass_authorization:
            continue  # §9.2: the route keeps credentials from the script
        previous = headers.get(variable)
        if previous is None:
            headers[variable] = value
        elif variable == b"HTTP_COOKIE":
            headers[variable] = previous + b"; " + value  # RFC 6265 §5.4: one Cookie line
        else:
            headers[variable] = previous + b", " + value  # §4.1.18, RFC 9110 §5.3
    if content_type is not None:
        env[b"CONTENT_TYPE"] = content_type  # §4.1.3: whenever the request carried one
    env.update(headers)
    if request.remote_user is not None:
        env[b"REMOTE_USER"] = request.remote_user.encode()  # §4.1.11: the user Basic auth let in
        env[b"AUTH_TYPE"] = b"Basic"  # §4.1.1
    for name, value in request.auth_variables:
        env[name.encode()] = value.encode("latin-1")  # a FastCGI authorizer's Variable-NAME
    env.update(extra)
    return env


def environ_pairs(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    """Configuration pairs (a route's `env`) as the bytes `build_environ` takes in `extra`."""
    return tuple((name.encode(), value.encode()) for name, value in pairs)
