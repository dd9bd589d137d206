"""The configuration as frozen dataclasses: what `config/load.py` builds and the server runs on.

Every size is an int of bytes named `max_*`, every duration a float of seconds named `*_timeout`,
every path absolute (resolved against the config file's directory at load time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RouteKind = Literal["static", "cgi", "fastcgi", "scgi", "uwsgi", "proxy", "redirect"]
GATEWAY_KINDS: tuple[str, ...] = ("fastcgi", "scgi", "uwsgi")
ROUTE_KINDS: tuple[str, ...] = ("static", "cgi", "fastcgi", "scgi", "uwsgi", "proxy", "redirect")
REDIRECT_STATUSES: tuple[int, ...] = (301, 302, 303, 307, 308)
# Internal redirects one request may follow in all (rewrites, try_files, error pages, a gateway's
# local redirects); the next one is a 500.
MAX_INTERNAL_REDIRECTS = 10
TLSVersion = Literal["TLSv1.2", "TLSv1.3"]
TLSSource = Literal["acme", "internal"]
AcmeChallenge = Literal["http-01", "tls-alpn-01"]
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True, slots=True)
class Address:
    """A listener or backend address: TCP (`host`, `port`) or a Unix socket (`path`)."""

    kind: Literal["tcp", "unix"]
    host: str = ""  # "" = all addresses (":port"); IPv6 without brackets
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listener:
    """One entry of `listen`: an address, and whether connections to it speak TLS."""

    address: Address
    tls: bool = False
    # HTTP/2: offered by ALPN on TLS listeners, with prior knowledge (h2c) on plain ones.
    # None follows `[tls] http2` on TLS listeners and means no h2c on plain ones.
    http2: bool | None = None
    # Every connection starts with HAProxy's PROXY header (v1 or v2), before TLS (proxy_header.py).
    proxy_protocol: bool = False


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """`[tls]`: what every TLS listener offers (Mozilla's "intermediate" profile by default)."""

    min_version: TLSVersion = "TLSv1.2"
    http2: bool = True  # offer h2 by ALPN on TLS listeners (a listener's own `http2` wins)
    # Resumption by TLS session tickets (keys made per configuration, shared by its workers).
    session_tickets: bool = True


@dataclass(frozen=True, slots=True)
class AcmeConfig:
    """`[acme]`: where certificate state lives, and the ACME CA for vhosts with tls = "acme".

    Present on `Config.acme` whenever a vhost has tls = "acme" or "internal" (the local CA of
    "internal" lives under `storage` too), or when the file has an `[acme]` table.
    """

    storage: str  # absolute; see frontd/certs/store.py for the layout
    email: str | None = None
    directory: str = LETSENCRYPT_DIRECTORY
    ca_bundle: str | None = None  # PEM file trusted for the directory's HTTPS (test CAs)
    challenge: AcmeChallenge = "http-01"


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """An HTTP backend: its address and, when the URL had one, the path that replaces the prefix."""

    address: Address
    path: str | None = None  # "http://h:p/base/" -> "/base/"; None keeps the request path


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 1024
    max_header_size: int = 16 * 1024
    max_body_size: int = 16 * 1024 * 1024
    max_target_size: int = 8 * 1024  # request line over this -> 414
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    http2_max_streams: int = 128  # concurrent streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    file_cache_size: int = 16 * 1024 * 1024  # small static files' bytes kept per worker; 0 = none
    # Per client address, across all workers (frontd/rules/limits.py); 0 = no limit.
    client_connections: int = 0  # open connections; beyond -> 429 and close
    client_rate: float = 0.0  # requests per second refilling the bucket; beyond -> 429
    client_burst: int = 0  # the bucket's size; load.py sets one second's worth when left out


# `compress` default types: text, scripts, data and fonts that are not compressed already.
COMPRESS_TYPES: tuple[str, ...] = (
    "text/*", "application/javascript", "application/json", "application/*+json", "application/xml",
    "application/*+xml", "image/svg+xml", "application/wasm", "font/ttf", "font/otf", "font/collection",
    "application/vnd.ms-fontobject",
)
# `compress = true`: every coding whose library is installed, in this order of preference.
COMPRESS_ENCODINGS: tuple[str, ...] = ("zstd", "br", "gzip")
ACCESS_LOG_FORMATS: tuple[str, ...] = ("combined", "vhost_combined", "json")


@dataclass(frozen=True, slots=True)
class Compression:
    """A resolved `compress` (with `compress_types` and `compress_min_size`)."""

    encodings: tuple[str, ...]  # in the server's order of preference
    types: tuple[str, ...] = COMPRESS_TYPES
    min_size: int = 1024


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """`auth = { realm = "...", htpasswd = "path" }`: HTTP Basic authentication (RFC 7617)."""

    realm: str
    htpasswd: str  # absolute


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """One `[[vhost.rewrite]]`: checked at load (frontd/rules/rewrite.py compiles it per worker)."""

    match: str  # a Python regex, searched in the decoded, normalised path
    to: str  # "/new/$1?x=${name}": an internal path, or with `status` a redirect URL
    status: int | None = None  # None: internal rewrite; else an external redirect (301..308)
    key: str = ""  # "vhost[0].rewrite[2]", named in log lines


# `error_pages`: (status, page path) pairs, sorted by status.
ErrorPages = tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Route:
    """One `[[vhost.route]]`: a prefix and exactly one kind, with the options of that kind."""

    prefix: str  # always starts and ends with "/"
    kind: RouteKind
    directory: str | None = None  # static = DIR, cgi = DIR
    program: str | None = None  # cgi = FILE: this one program for every path under the prefix
    backends: tuple[Address, ...] = ()  # fastcgi / scgi / uwsgi
    proxy: tuple[ProxyTarget, ...] = ()
    root: str | None = None  # gateway script mode (php-fpm, fcgiwrap)
    index: tuple[str, ...] = ()
    # Script mode: what a script's name must end in, () for any file. load.py fills the
    # default from `index` (["index.php"] -> (".php",)).
    extensions: tuple[str, ...] = ()
    timeout: float = 60.0
    connect_timeout: float = 5.0
    env: tuple[tuple[str, str], ...] = ()
    interpreters: tuple[tuple[str, str], ...] = ()  # (".py", "/usr/bin/python3")
    path_env: str = "/usr/local/bin:/usr/bin:/bin"  # PATH given to CGI scripts
    max_processes: int = 64  # CGI processes per worker; beyond -> 503
    pass_authorization: bool = True
    keepalive: int = 0  # pooled idle backend connections per backend
    keepalive_timeout: float = 4.0  # a pooled connection idle this long is closed
    host: str | None = None  # proxy: Host header sent to the backend
    autoindex: bool = False
    # Spawned backends (fastcgi, scgi, uwsgi, proxy): the master creates `socket`, runs `processes`
    # copies of `spawn` on it, and `backends` (or `proxy`) holds that one address.
    spawn: tuple[str, ...] = ()  # argv; argv[0] resolved to an absolute path at load time
    processes: int = 1
    cwd: str | None = None  # the config file's directory when spawn is set
    user: str | None = None  # account of the spawned processes when frontd runs as root
    socket: Address | None = None  # the listening socket frontd creates for them
    # Output rules, resolved at load (the vhost's, overridden by the route's; docs/rules.md):
    # (lower-case name, value) pairs, b"" = remove the field; None = no compression.
    headers: tuple[tuple[bytes, bytes], ...] = ()
    compress: Compression | None = None
    precompressed: bool = False  # static routes: a.css.zst / .br / .gz beside a.css
    # Access rules, resolved at load (docs/access.md): the route's own value, else the vhost's.
    allow: tuple[str, ...] | None = None  # None: everyone (unless denied); () nobody
    deny: tuple[str, ...] = ()
    auth: BasicAuth | None = None
    # FastCGI authorizers (role FCGI_AUTHORIZER, FastCGI 1.0 §6.3) asked before the handler.
    authorizer: tuple[Address, ...] = ()
    # redirect routes: the URL every request under the prefix is sent to (the rest is appended)
    redirect: str | None = None
    redirect_status: int = 301
    # static routes and script-mode gateway routes: "$uri", "$uri/", ..., then a URI or "=404"
    try_files: tuple[str, ...] = ()
    # The vhost's table with the route's own entries over it (resolved at load).
    error_pages: ErrorPages = ()
    intercept_errors: bool = False  # a backend's own 4xx/5xx responses use error_pages too
    # gateway and proxy routes: receive the whole request body (memory, then a temporary file)
    # before a process is spawned or a backend connected; False streams it as it arrives.
    request_buffering: bool = True
    # gateway routes: read the application's output as fast as it comes (memory, then a
    # temporary file up to 1 GiB) while the client takes it; False relays at the client's pace.
    response_buffering: bool = True
    # gateway and proxy routes: the directories (real paths) whose files the backend may name in
    # X-Sendfile; set, X-Accel-Redirect is honoured too. (): both fields reach the client as sent.
    x_sendfile: tuple[str, ...] = ()
    # static routes: served only to internal redirects (X-Accel-Redirect, rewrites, try_files,
    # error pages); a client asking for the route directly gets 404.
    internal: bool = False


@dataclass(frozen=True, slots=True)
class VHost:
    names: tuple[str, ...]  # lower case, no trailing dot; "*.example.test" wildcards
    default: bool = False
    root: str | None = None
    index: tuple[str, ...] = ("index.html",)
    autoindex: bool = False
    routes: tuple[Route, ...] = ()
    status: str | None = None  # path of the status page (exact match, before every route)
    status_allow: tuple[str, ...] = ("127.0.0.1", "::1")  # client addresses or networks (CIDR)
    # TLS: either both files, or `tls` ("acme" | "internal": files under [acme] storage), or none.
    tls_certificate: str | None = None  # PEM chain, leaf first; absolute
    tls_key: str | None = None
    tls: TLSSource | None = None
    redirect_https: bool = False  # plain-HTTP requests -> 308 to the first TLS listener
    # Output rules for what the vhost's root serves (and errors outside any route).
    headers: tuple[tuple[bytes, bytes], ...] = ()
    compress: Compression | None = None
    precompressed: bool = False
    access_log: str | None = None  # None: the top-level access_log; a file or "off"
    access_log_format: str | None = None  # None: the top-level access_log_format
    # Access rules for requests no route takes (routes carry their effective copy).
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    auth: BasicAuth | None = None
    rewrites: tuple[RewriteRule, ...] = ()  # in order, before routing
    try_files: tuple[str, ...] = ()  # for requests the vhost's root serves (no route)
    error_pages: ErrorPages = ()  # for requests no route takes; routes hold their merged table

    @property
    def has_tls(self) -> bool:
        """Whether this vhost has (or will get) a certificate."""
        return self.tls is not None or self.tls_certificate is not None


@dataclass(frozen=True, slots=True)
class Config:
    path: str  # the config file, absolute
    listen: tuple[Address, ...]
    vhosts: tuple[VHost, ...]
    workers: int = 1
    pid_file: str | None = None
    error_log: str = "-"  # "-" = stderr
    access_log: str = "-"  # "-" = stdout, "off"
    access_log_format: str = "combined"  # one of ACCESS_LOG_FORMATS
    log_level: str = "info"
    user: str | None = None
    group: str | None = None
    shutdown_timeout: float = 30.0
    limits: Limits = field(default_factory=Limits)
    run_dir: str = ""  # where spawned backends' default Unix sockets live (see config/spawn.py)
    # Names ending in these (lower case, compared case-insensitively) are never served as static
    # files: the `extensions` of every script-mode route in the file and the CGI `interpreters`
    # extensions (see `script_extensions` in config/routes.py).
    script_extensions: tuple[str, ...] = ()
    # `listen` as written: the same addresses in the same order, with their options (TLS).
    listeners: tuple[Listener, ...] = ()
    tls: TLSSettings = field(default_factory=TLSSettings)
    acme: AcmeConfig | None = None
    # Peers (normalised networks) whose Forwarded / X-Forwarded-For / PROXY header names the client.
    trusted_proxies: tuple[str, ...] = ()
    # The workers' event loop: "asyncio" (the standard library's) or "uvloop" (the `speed` extra).
    event_loop: str = "asyncio"

    def listener_options(self) -> tuple[Listener, ...]:
        """One Listener per entry of `listen` (plain ones when only addresses were given)."""
        return self.listeners or tuple(Listener(address) for address in self.listen)

    def tls_listeners(self) -> tuple[Listener, ...]:
        return tuple(listener for listener in self.listener_options() if listener.tls)

    def http2(self, listener: Listener) -> bool:
        """Whether the listener takes HTTP/2: by ALPN on TLS (`[tls] http2` unless the listener
        says), with prior knowledge (h2c) on a plain listener that sets `http2 = true`."""
        if listener.http2 is not None:
            return listener.http2
        return listener.tls and self.tls.http2


class ConfigError(Exception):
    """A configuration mistake, as one line: `FILE: key.path: what is wrong (did you mean "x"?)`.

    Defined here, the lowest config module, so that `units.py`, `address.py` and `load.py` can all
    raise it; `frontd.config.load.ConfigError` is the same class.
    """
