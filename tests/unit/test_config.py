"""frontd.conf loading: one exact message per mistake, and the values a good file produces."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from frontd.config.load import ConfigError, load_config, parse_config, summary
from frontd.config.model import Address, Config, Limits, ProxyTarget, Route

VHOST = '[[vhost]]\nnames = ["example.test"]\nroot = "www"\n'


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config directory with the directories that snippets name."""
    for name in ("www", "cgi-bin", "php", "files"):
        (tmp_path / name).mkdir()
    (tmp_path / "plain.txt").write_text("not a directory\n")
    return tmp_path


def load(site: Path, text: str) -> Config:
    path = site / "frontd.conf"
    path.write_text(text)
    return load_config(str(path))


def error(site: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(site, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def route(body: str, *, before: str = "") -> str:
    """A file with one vhost whose route [0] is `before` (if given) and then `body`."""
    routes = ""
    if before:
        routes += f"[[vhost.route]]\n{before}\n"
    return f"{VHOST}{routes}[[vhost.route]]\n{body}\n"


# (id, file text, the message after "FILE: "; {dir} is the config directory)
MISTAKES: list[tuple[str, str, str]] = [
    # TOML syntax, with tomllib's line and column
    ("toml-syntax", "workers = \n" + VHOST, "line 1, column 11: invalid TOML: Invalid value"),
    (
        "toml-duplicate-key",
        "workers = 1\nworkers = 2\n" + VHOST,
        "line 2, column 12: invalid TOML: Cannot overwrite a value",
    ),
    ("toml-end", 'pid_file = "run', "end of file: invalid TOML: Unterminated string"),
    # unknown keys at every level
    ("unknown-top", "wokers = 2\n" + VHOST, 'unknown key "wokers" (did you mean "workers"?)'),
    ("unknown-top-far", "frobnicate = 1\n" + VHOST, 'unknown key "frobnicate"'),
    (
        "unknown-limits",
        VHOST + '[limits]\nmax_body = "1MiB"\n',
        'limits: unknown key "max_body" (did you mean "max_body_size"?)',
    ),
    (
        "unknown-vhost",
        '[[vhost]]\nname = ["a.test"]\nroot = "www"\n',
        'vhost[0]: unknown key "name" (did you mean "names"?)',
    ),
    (
        "unknown-route",
        VHOST
        + '[[vhost.route]]\nprefix = "/a/"\nstatic = "files"\n'
        + '[[vhost.route]]\nprefix = "/b/"\nstatic = "files"\n'
        + '[[vhost.route]]\nprefix = "/php/"\nfastcgi_pas = "127.0.0.1:9000"\n',
        'vhost[0].route[2]: unknown key "fastcgi_pas" (did you mean "fastcgi"?)',
    ),
    # wrong types
    ("workers-string", 'workers = "two"\n' + VHOST, 'workers: expected an integer >= 1 or "auto", got "two"'),
    ("workers-bool", "workers = true\n" + VHOST, 'workers: expected an integer >= 1 or "auto", got true'),
    ("workers-zero", "workers = 0\n" + VHOST, 'workers: must be at least 1 (or "auto"), got 0'),
    ("limits-not-table", 'limits = "big"\n' + VHOST, 'limits: expected a table, got "big"'),
    (
        "max-connections-float",
        VHOST + "[limits]\nmax_connections = 1.5\n",
        "limits.max_connections: expected an integer, got 1.5",
    ),
    ("default-string", VHOST + 'default = "yes"\n', 'vhost[0].default: expected true or false, got "yes"'),
    ("pid-file-number", "pid_file = 1\n" + VHOST, "pid_file: expected a file path, got 1"),
    ("pid-file-directory", 'pid_file = "www"\n' + VHOST, 'pid_file: "{dir}/www" is a directory'),
    ("error-log-off", 'error_log = "off"\n' + VHOST, 'error_log: cannot be "off"; use "-" for stderr or a file'),
    ("error-log-empty", 'error_log = ""\n' + VHOST, "error_log: expected a file path, got an empty string"),
    # What would fail at start is found at load (issue 12, item 2).
    ("pid-file-no-dir", 'pid_file = "run/x.pid"\n' + VHOST,
     'pid_file: directory "{dir}/run" for the file does not exist'),
    ("error-log-no-dir", 'error_log = "logs/e.log"\n' + VHOST,
     'error_log: directory "{dir}/logs" for the file does not exist'),
    ("access-log-no-dir", 'access_log = "noaccess/access.log"\n' + VHOST,
     'access_log: directory "{dir}/noaccess" for the file does not exist'),
    ("run-dir-no-parent", 'run_dir = "a/b"\n' + VHOST, 'run_dir: directory "{dir}/a" does not exist'),
    (
        "log-level",
        'log_level = "warn"\n' + VHOST,
        'log_level: expected one of debug, info, warning, error, got "warn" (did you mean "warning"?)',
    ),
    ("user-missing", 'user = "no-such-user-frontd"\n' + VHOST, 'user: no such user "no-such-user-frontd"'),
    ("group-missing", 'group = "no-such-group-frontd"\n' + VHOST, 'group: no such group "no-such-group-frontd"'),
    # sizes and durations
    (
        "size-unit",
        VHOST + '[limits]\nmax_body_size = "10MB"\n',
        'limits.max_body_size: bad size "10MB": unknown unit "MB" '
        "(expected B, KiB, MiB, GiB, or nginx's k, m, g; all powers of 1024)",
    ),
    (
        "size-negative",
        VHOST + "[limits]\nmax_body_size = -1\n",
        "limits.max_body_size: size must not be negative, got -1",
    ),
    ("size-zero", VHOST + "[limits]\nmax_header_size = 0\n", "limits.max_header_size: must be greater than 0"),
    (
        "size-garbage",
        VHOST + '[limits]\nmax_target_size = "lots"\n',
        'limits.max_target_size: bad size "lots" (expected bytes, or a number with B, KiB, MiB, GiB, '
        "or nginx's k, m, g, e.g. \"16KiB\")",
    ),
    (
        "duration-garbage",
        VHOST + '[limits]\nheader_timeout = "10 sec"\n',
        'limits.header_timeout: bad duration "10 sec" (expected seconds, or a number with ms, s, m, h, '
        'e.g. "750ms", "30s", "5m", "1h")',
    ),
    (
        "duration-negative",
        VHOST + "[limits]\nbody_timeout = -5\n",
        "limits.body_timeout: duration must not be negative, got -5",
    ),
    ("duration-zero", VHOST + '[limits]\nsend_timeout = "0s"\n', "limits.send_timeout: must be greater than 0"),
    ("client-rate-unit", VHOST + '[limits]\nclient_rate = "50/d"\n',
     'limits.client_rate: expected a rate such as "50/s", "600/m" or "100/h", got "50/d"'),
    ("client-rate-zero", VHOST + "[limits]\nclient_rate = 0\n", "limits.client_rate: a rate must be more than 0, got 0"),
    ("client-burst-alone", VHOST + "[limits]\nclient_burst = 10\n",
     'limits.client_burst: only with "client_rate" (the bucket refills at that rate)'),
    ("client-connections-zero", VHOST + "[limits]\nclient_connections = 0\n",
     "limits.client_connections: must be at least 1, got 0"),
    ("trusted-proxies-bad", 'trusted_proxies = ["10.0.0.1/8"]\n' + VHOST,
     'trusted_proxies[0]: "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)'),
    (
        "route-timeout-zero",
        route('prefix = "/c/"\ncgi = "cgi-bin"\ntimeout = 0'),
        "vhost[0].route[0].timeout: must be greater than 0",
    ),
    (
        "shutdown-timeout-type",
        "shutdown_timeout = true\n" + VHOST,
        'shutdown_timeout: expected a duration (seconds, or a string such as "30s"), got true',
    ),
    ("event-loop-typo", 'event_loop = "uvlop"\n' + VHOST,
     'event_loop: expected "asyncio" or "uvloop", got "uvlop" (did you mean "uvloop"?)'),
    # listen
    ("listen-empty", "listen = []\n" + VHOST, "listen: empty array; give one or more addresses"),
    (
        "listen-number",
        "listen = 8080\n" + VHOST,
        "listen: expected an address or an array of addresses, got 8080",
    ),
    (
        "listen-no-port",
        'listen = "localhost"\n' + VHOST,
        'listen: missing port in "localhost"; expected "host:port", "[v6]:port", ":port" or "unix:/path"',
    ),
    (
        "listen-bare-port",
        'listen = ["127.0.0.1:80", "8080"]\n' + VHOST,
        'listen[1]: missing port in "8080"; expected "host:port", "[v6]:port", ":port" or "unix:/path" '
        '(did you mean ":8080"?)',
    ),
    (
        "listen-v6-brackets",
        'listen = "::1:8080"\n' + VHOST,
        'listen: an IPv6 address goes in brackets: "[::1]:8080", got "::1:8080"',
    ),
    (
        "listen-port-range",
        'listen = ":70000"\n' + VHOST,
        'listen: bad port "70000" in ":70000" (expected 0..65535)',
    ),
    ("listen-bad-ipv4", 'listen = "127.0.0.256:80"\n' + VHOST, 'listen: bad IPv4 address "127.0.0.256"'),
    (
        "listen-duplicate",
        'listen = ["127.0.0.1:8080", "127.0.0.1:8080"]\n' + VHOST,
        'listen[1]: "127.0.0.1:8080" is already listed as listen[0]',
    ),
    (
        "listen-unix-no-dir",
        'listen = "unix:run/frontd.sock"\n' + VHOST,
        'listen: directory "{dir}/run" for the Unix socket does not exist',
    ),
    (
        "listen-unix-not-socket",
        'listen = "unix:plain.txt"\n' + VHOST,
        'listen: "{dir}/plain.txt" exists and is not a socket',
    ),
    # vhosts
    ("no-vhost", "workers = 1\n", "vhost: no virtual host; add at least one [[vhost]] section"),
    (
        "vhost-table",
        '[vhost]\nroot = "www"\n',
        "vhost: expected an array of tables ([[vhost]] sections), got a table",
    ),
    (
        "duplicate-name",
        VHOST + '[[vhost]]\nnames = ["other.test", "Example.Test."]\nroot = "www"\n',
        'vhost[1].names[1]: "example.test" is already a name of vhost[0]',
    ),
    (
        "two-defaults",
        VHOST + "default = true\n" + '[[vhost]]\nnames = ["b.test"]\ndefault = true\nroot = "www"\n',
        "vhost[1].default: vhost[0] is already the default",
    ),
    (
        "wildcard-middle",
        '[[vhost]]\nnames = ["www.*.test"]\nroot = "www"\n',
        'vhost[0].names[0]: bad name "www.*.test": a wildcard is only allowed as a leading "*.", '
        'as in "*.example.test"',
    ),
    (
        "wildcard-alone",
        '[[vhost]]\nnames = "*"\nroot = "www"\n',
        'vhost[0].names: bad name "*": a wildcard is only allowed as a leading "*.", as in "*.example.test"',
    ),
    (
        "name-port",
        '[[vhost]]\nnames = ["example.test:8080"]\nroot = "www"\n',
        'vhost[0].names[0]: a name has no port (the port is ignored), got "example.test:8080"',
    ),
    (
        "name-bad",
        '[[vhost]]\nnames = ["exa mple.test"]\nroot = "www"\n',
        'vhost[0].names[0]: bad host name "exa mple.test" (letters, digits, hyphens, dots; '
        "labels of at most 63 characters)",
    ),
    (
        "vhost-unreachable",
        VHOST + '[[vhost]]\nroot = "www"\n',
        "vhost[1]: no names and not the default, so no request can reach it "
        "(add names or set default = true)",
    ),
    (
        "vhost-serves-nothing",
        '[[vhost]]\nnames = ["a.test"]\n',
        "vhost[0]: serves nothing: set root or add a [[vhost.route]]",
    ),
    ("root-missing", '[[vhost]]\nroot = "nowhere"\n', 'vhost[0].root: directory "{dir}/nowhere" does not exist'),
    ("root-not-dir", '[[vhost]]\nroot = "plain.txt"\n', 'vhost[0].root: "{dir}/plain.txt" is not a directory'),
    (
        "index-slash",
        VHOST + 'index = ["sub/index.html"]\n',
        'vhost[0].index[0]: expected a file name without "/", got "sub/index.html"',
    ),
    (
        "index-string",
        VHOST + 'index = "index.html"\n',
        'vhost[0].index: expected an array of file names, got "index.html"',
    ),
    ("index-dotdot", VHOST + 'index = [".."]\n', 'vhost[0].index[0]: expected a file name without "/", got ".."'),
    # routes
    (
        "route-table",
        VHOST + '[vhost.route]\nprefix = "/"\n',
        "vhost[0].route: expected an array of tables ([[vhost.route]] sections), got a table",
    ),
    ("route-no-prefix", route('static = "files"'), 'vhost[0].route[0]: missing key "prefix"'),
    (
        "route-no-kind",
        route('prefix = "/x/"\ntimeout = "5s"'),
        "vhost[0].route[0]: route has no kind; set exactly one of cgi, fastcgi, scgi, uwsgi, proxy, static, redirect",
    ),
    (
        "route-two-kinds",
        route('prefix = "/x/"\nscgi = "127.0.0.1:4000"\nfastcgi = "127.0.0.1:9000"'),
        "vhost[0].route[0]: route has both fastcgi and scgi; "
        "exactly one of cgi, fastcgi, scgi, uwsgi, proxy, static, redirect",
    ),
    (
        "route-three-kinds",
        route('prefix = "/x/"\nstatic = "files"\ncgi = "cgi-bin"\nproxy = "http://127.0.0.1:1"'),
        "vhost[0].route[0]: route has cgi, proxy and static; "
        "exactly one of cgi, fastcgi, scgi, uwsgi, proxy, static, redirect",
    ),
    (
        "prefix-no-slash",
        route('prefix = "app/"\nstatic = "files"'),
        'vhost[0].route[0].prefix: must start with "/", got "app/"',
    ),
    (
        "prefix-dotdot",
        route('prefix = "/a/../b"\nstatic = "files"'),
        'vhost[0].route[0].prefix: must not contain empty, "." or ".." segments, got "/a/../b"',
    ),
    (
        "prefix-query",
        route('prefix = "/a?x"\nstatic = "files"'),
        "vhost[0].route[0].prefix: must be a plain path, without query, fragment or control characters, "
        'got "/a?x"',
    ),
    (
        "prefix-encoded",
        route('prefix = "/a%20b/"\nstatic = "files"'),
        'vhost[0].route[0].prefix: write the path decoded ("/a b/", not "/a%20b/"), got "/a%20b/"',
    ),
    (
        "prefix-duplicate",
        route('prefix = "/app"\nstatic = "files"', before='prefix = "/app/"\nstatic = "files"'),
        'vhost[0].route[1].prefix: "/app/" is already the prefix of vhost[0].route[0]',
    ),
    (
        "static-missing",
        route('prefix = "/f/"\nstatic = "nowhere"'),
        'vhost[0].route[0].static: directory "{dir}/nowhere" does not exist',
    ),
    (
        "cgi-not-executable",
        route('prefix = "/c/"\ncgi = "plain.txt"'),
        'vhost[0].route[0].cgi: "{dir}/plain.txt" is not executable (set its execute bit, or name an '
        "interpreter for its extension in interpreters)",
    ),
    (
        "gateway-root-missing",
        route('prefix = "/php/"\nfastcgi = "127.0.0.1:9000"\nroot = "../nowhere"'),
        'vhost[0].route[0].root: directory "' + "{parent}" + '/nowhere" does not exist',
    ),
    (
        "interpreters-on-fastcgi",
        route('prefix = "/php/"\nfastcgi = "127.0.0.1:9000"\ninterpreters = { ".php" = "/usr/bin/php" }'),
        "vhost[0].route[0].interpreters: not an option of fastcgi routes (only of cgi routes)",
    ),
    (
        "keepalive-on-scgi",
        route('prefix = "/s/"\nscgi = "127.0.0.1:4000"\nkeepalive = 4'),
        "vhost[0].route[0].keepalive: not an option of scgi routes (only of fastcgi and proxy routes)",
    ),
    (
        "host-on-uwsgi",
        route('prefix = "/u/"\nuwsgi = "127.0.0.1:3031"\nhost = "app.test"'),
        "vhost[0].route[0].host: not an option of uwsgi routes (only of proxy routes)",
    ),
    (
        "root-on-proxy",
        route('prefix = "/p/"\nproxy = "http://127.0.0.1:8081"\nroot = "www"'),
        "vhost[0].route[0].root: not an option of proxy routes (only of fastcgi, scgi and uwsgi routes)",
    ),
    (
        "connect-timeout-on-cgi",
        route('prefix = "/c/"\ncgi = "cgi-bin"\nconnect_timeout = "1s"'),
        "vhost[0].route[0].connect_timeout: not an option of cgi routes "
        "(only of fastcgi, scgi, uwsgi and proxy routes)",
    ),
    (
        "autoindex-on-cgi",
        route('prefix = "/c/"\ncgi = "cgi-bin"\nautoindex = true'),
        "vhost[0].route[0].autoindex: not an option of cgi routes (only of static routes)",
    ),
    (
        "index-without-root",
        route('prefix = "/php/"\nfastcgi = "127.0.0.1:9000"\nindex = ["index.php"]'),
        "vhost[0].route[0].index: only applies with root (script mode)",
    ),
    (
        "backends-empty",
        route('prefix = "/php/"\nfastcgi = []'),
        "vhost[0].route[0].fastcgi: empty array; give one or more backend addresses",
    ),
    (
        "backend-no-host",
        route('prefix = "/s/"\nscgi = ":4000"'),
        'vhost[0].route[0].scgi: missing host in ":4000" (expected "host:port", "[v6]:port" or "unix:/path")',
    ),
    (
        "backend-port-zero",
        route('prefix = "/u/"\nuwsgi = ["127.0.0.1:3031", "127.0.0.1:0"]'),
        'vhost[0].route[0].uwsgi[1]: bad port "0" in "127.0.0.1:0" (expected 1..65535)',
    ),
    (
        "backend-duplicate",
        route('prefix = "/u/"\nuwsgi = ["127.0.0.1:3031", "127.0.0.1:3031"]'),
        'vhost[0].route[0].uwsgi[1]: "127.0.0.1:3031" is listed twice',
    ),
    (
        "backend-number",
        route('prefix = "/u/"\nuwsgi = 3031'),
        "vhost[0].route[0].uwsgi: expected a backend address or an array of backend addresses, got 3031",
    ),
    (
        "proxy-https",
        route('prefix = "/p/"\nproxy = "https://example.test"'),
        'vhost[0].route[0].proxy: only http:// backends are supported, got "https://" in "https://example.test"',
    ),
    (
        "proxy-paths-differ",
        route('prefix = "/p/"\nproxy = ["http://127.0.0.1:8081/a/", "http://127.0.0.1:8082/b/"]'),
        'vhost[0].route[0].proxy[1]: every URL of one route must have the same path, got "/b/" after "/a/"',
    ),
    (
        "proxy-keepalive-negative",
        route('prefix = "/p/"\nproxy = "http://127.0.0.1:8081"\nkeepalive = -1'),
        "vhost[0].route[0].keepalive: must be at least 0, got -1",
    ),
    (
        "keepalive-timeout-zero",
        route('prefix = "/f/"\nfastcgi = "127.0.0.1:9000"\nkeepalive = 2\nkeepalive_timeout = 0'),
        "vhost[0].route[0].keepalive_timeout: must be greater than 0",
    ),
    (
        "keepalive-timeout-on-uwsgi",
        route('prefix = "/u/"\nuwsgi = "127.0.0.1:3031"\nkeepalive_timeout = "2s"'),
        "vhost[0].route[0].keepalive_timeout: not an option of uwsgi routes (only of fastcgi and proxy routes)",
    ),
    (
        "interpreter-extension",
        route('prefix = "/c/"\ncgi = "cgi-bin"\ninterpreters = { py = "/bin/sh" }'),
        'vhost[0].route[0].interpreters: an extension must start with "." and contain no "/", got "py"',
    ),
    (
        "interpreter-not-found",
        route('prefix = "/c/"\ncgi = "cgi-bin"\npath = "/nonexistent"\ninterpreters = { ".py" = "python3" }'),
        'vhost[0].route[0].interpreters.".py": "python3" is not found in PATH "/nonexistent"',
    ),
    (
        "interpreter-not-executable",
        route('prefix = "/c/"\ncgi = "cgi-bin"\ninterpreters = { ".txt" = "./plain.txt" }'),
        'vhost[0].route[0].interpreters.".txt": "{dir}/plain.txt" is not an executable file',
    ),
    (
        "env-not-string",
        route('prefix = "/c/"\ncgi = "cgi-bin"\nenv = { DEBUG = 1 }'),
        "vhost[0].route[0].env.DEBUG: expected a string, got 1",
    ),
    (
        "env-bad-name",
        route('prefix = "/c/"\ncgi = "cgi-bin"\nenv = { "A-B" = "1" }'),
        'vhost[0].route[0].env: bad variable name "A-B" (letters, digits and _)',
    ),
    (
        "max-processes-zero",
        route('prefix = "/c/"\ncgi = "cgi-bin"\nmax_processes = 0'),
        "vhost[0].route[0].max_processes: must be at least 1, got 0",
    ),
    (
        "pass-authorization-string",
        route('prefix = "/c/"\ncgi = "cgi-bin"\npass_authorization = "yes"'),
        'vhost[0].route[0].pass_authorization: expected true or false, got "yes"',
    ),
    (
        "proxy-host-header",
        route('prefix = "/p/"\nproxy = "http://127.0.0.1:8081"\nhost = "a b"'),
        'vhost[0].route[0].host: bad Host header value "a b"',
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in MISTAKES], ids=[i for i, _, _ in MISTAKES])
def test_mistake_message(site: Path, text: str, expected: str) -> None:
    expected = expected.replace("{dir}", str(site)).replace("{parent}", str(site.parent))
    assert error(site, text) == f"{site / 'frontd.conf'}: {expected}"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.conf"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_not_utf8(site: Path) -> None:
    path = site / "frontd.conf"
    path.write_bytes(b"workers = 1\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: line 2: invalid TOML: not UTF-8"


def test_file_name_as_given(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name the file as the user typed it, e.g. on the `frontd -t -c` command line."""
    monkeypatch.chdir(site)
    (site / "frontd.conf").write_text("wokers = 1\n" + VHOST)
    with pytest.raises(ConfigError, match=r'^frontd\.conf: unknown key "wokers"'):
        load_config("frontd.conf")


# -- what a good file produces ------------------------------------------------------------------


def test_defaults(site: Path) -> None:
    config = load(site, VHOST + '[[vhost.route]]\nprefix = "/p"\nproxy = "http://127.0.0.1:8081"\n'
                  '[[vhost.route]]\nprefix = "/f/"\nfastcgi = "127.0.0.1:9000"\n')
    assert config.path == str(site / "frontd.conf")
    assert config.listen == (Address("tcp", "127.0.0.1", 8080),)
    assert config.workers == 1
    assert config.pid_file is None
    assert (config.error_log, config.access_log, config.log_level) == ("-", "-", "info")
    assert (config.user, config.group, config.shutdown_timeout) == (None, None, 30.0)
    assert config.limits == Limits()
    (vhost,) = config.vhosts
    assert vhost.names == ("example.test",)
    assert vhost.index == ("index.html",)
    assert (vhost.default, vhost.autoindex) == (False, False)
    proxy, fastcgi = vhost.routes
    assert proxy.prefix == "/p/"
    assert (proxy.timeout, proxy.connect_timeout) == (60.0, 5.0)
    assert proxy.keepalive == 8  # pooled by default for HTTP backends
    assert proxy.proxy == (ProxyTarget(Address("tcp", "127.0.0.1", 8081), None),)
    assert fastcgi.keepalive == 0  # off by default: FastCGI keep-alive has pitfalls
    assert proxy.keepalive_timeout == fastcgi.keepalive_timeout == 4.0  # idle pooled connections
    assert fastcgi.root is None and fastcgi.index == ()
    assert fastcgi.pass_authorization is True


def test_event_loop(site: Path) -> None:
    assert load(site, VHOST).event_loop == "asyncio"


def test_workers_auto(site: Path) -> None:
    assert load(site, 'workers = "auto"\n' + VHOST).workers == (os.cpu_count() or 1)


def test_units(site: Path) -> None:
    config = load(
        site,
        'shutdown_timeout = "1m30s"\n' + VHOST + "[limits]\n"
        'max_connections = 10\nmax_header_size = "8k"\nmax_body_size = "10MiB"\n'
        'max_target_size = 4096\nheader_timeout = "750ms"\nbody_timeout = 5\n'
        'send_timeout = 2.5\nkeepalive_timeout = 0\n',
    )
    assert config.shutdown_timeout == 90.0
    assert config.limits == Limits(
        max_connections=10,
        max_header_size=8192,
        max_body_size=10 * 1024 * 1024,
        max_target_size=4096,
        header_timeout=0.75,
        body_timeout=5.0,
        send_timeout=2.5,
        keepalive_timeout=0.0,
    )


def test_client_limits(site: Path) -> None:
    config = load(site, 'trusted_proxies = ["::1", "10.0.0.0/8"]\n' + VHOST
                  + '[limits]\nclient_connections = 64\nclient_rate = "600/m"\n')
    assert config.trusted_proxies == ("::1/128", "10.0.0.0/8")
    assert load(site, 'trusted_proxies = ["unix:", "127.0.0.1"]\n' + VHOST).trusted_proxies == ("127.0.0.1/32", "unix:")
    # client_burst left out: one second's worth.
    assert (config.limits.client_connections, config.limits.client_rate, config.limits.client_burst) == (64, 10.0, 10)
    config = load(site, VHOST + '[limits]\nclient_rate = "50/s"\nclient_burst = 100\n')
    assert (config.limits.client_rate, config.limits.client_burst) == (50.0, 100)
    assert load(site, VHOST + '[limits]\nclient_rate = "1/h"\n').limits.client_burst == 1


def test_relative_paths_resolve_against_config_dir(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = site / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf_dir = site / "conf"
    conf_dir.mkdir()
    (site / "run").mkdir()
    (conf_dir / "logs").mkdir()
    (conf_dir / "frontd.conf").write_text(
        'listen = ["unix:../run/frontd.sock", ":0"]\n'
        'pid_file = "../run/frontd.pid"\nerror_log = "logs/error.log"\naccess_log = "../run/access.log"\n'
        '[[vhost]]\nroot = "../www"\n'
        '[[vhost.route]]\nprefix = "/cgi-bin/"\ncgi = "../cgi-bin"\n'
        '[[vhost.route]]\nprefix = "/files/"\nstatic = "../files/"\n'
        '[[vhost.route]]\nprefix = "/php/"\nfastcgi = "unix:../run/php.sock"\nroot = "../php"\n'
        '[[vhost.route]]\nprefix = "/app/"\nproxy = "http://unix:../run/app.sock:/base"\n'
    )
    config = load_config("../conf/frontd.conf")
    real = os.path.realpath(site)
    assert config.path == str(conf_dir / "frontd.conf")
    assert config.listen == (Address("unix", path=str(site / "run/frontd.sock")), Address("tcp", "", 0))
    assert config.pid_file == str(site / "run/frontd.pid")
    assert config.error_log == str(conf_dir / "logs/error.log")
    assert config.access_log == str(site / "run/access.log")
    (vhost,) = config.vhosts
    assert vhost.root == f"{real}/www"
    cgi, static, php, app = vhost.routes
    assert cgi.directory == f"{real}/cgi-bin"
    assert static.directory == f"{real}/files"
    assert php.root == f"{real}/php"
    assert php.backends == (Address("unix", path=str(site / "run/php.sock")),)
    assert app.proxy == (ProxyTarget(Address("unix", path=str(site / "run/app.sock")), "/base/"),)


def test_directories_are_realpaths(site: Path) -> None:
    (site / "link").symlink_to(site / "www")
    config = load(site, '[[vhost]]\nroot = "link"\n')
    assert config.vhosts[0].root == os.path.realpath(site / "www")


def test_names_normalised(site: Path) -> None:
    config = load(site, '[[vhost]]\nnames = ["Example.TEST.", "*.Example.test", "[0::1]", "10.0.0.1"]\nroot = "www"\n')
    assert config.vhosts[0].names == ("example.test", "*.example.test", "[::1]", "10.0.0.1")


def test_single_name_and_listen_strings(site: Path) -> None:
    config = load(site, 'listen = "[::1]:8443"\n[[vhost]]\nnames = "a.test"\nroot = "www"\n')
    assert config.listen == (Address("tcp", "::1", 8443),)
    assert config.vhosts[0].names == ("a.test",)


def test_default_vhost_without_names(site: Path) -> None:
    config = load(site, VHOST + '[[vhost]]\ndefault = true\nroot = "files"\n')
    assert config.vhosts[1].names == ()
    assert config.vhosts[1].default is True


def test_route_options(site: Path) -> None:
    config = load(
        site,
        VHOST
        + 'index = ["index.htm", "index.html"]\nautoindex = true\n'
        + '[[vhost.route]]\nprefix = "/cgi-bin"\ncgi = "cgi-bin"\ntimeout = "30s"\n'
        'path = "/bin:/usr/bin"\nmax_processes = 8\npass_authorization = false\n'
        'index = ["index.cgi"]\nenv = { B = "2", A = "1" }\ninterpreters = { ".sh" = "sh" }\n'
        '[[vhost.route]]\nprefix = "/php/"\nfastcgi = ["127.0.0.1:9000", "unix:/run/php.sock"]\n'
        'root = "php"\nindex = ["index.php"]\nkeepalive = 2\nconnect_timeout = "1s"\n'
        '[[vhost.route]]\nprefix = "/api/"\nproxy = ["http://backend.test/v1", "http://[::1]:8081/v1/"]\n'
        'host = "api.internal"\nkeepalive = 0\n'
        '[[vhost.route]]\nprefix = "/files/"\nstatic = "files"\n'
        '[[vhost.route]]\nprefix = "/raw/"\nstatic = "files"\nindex = []\nautoindex = false\n',
    )
    cgi, php, api, files, raw = config.vhosts[0].routes
    assert cgi == Route(
        prefix="/cgi-bin/",
        kind="cgi",
        directory=os.path.realpath(site / "cgi-bin"),
        index=("index.cgi",),
        timeout=30.0,
        env=(("B", "2"), ("A", "1")),
        interpreters=((".sh", shutil.which("sh", path="/bin:/usr/bin") or ""),),
        path_env="/bin:/usr/bin",
        max_processes=8,
        pass_authorization=False,
    )
    assert php.backends == (Address("tcp", "127.0.0.1", 9000), Address("unix", path="/run/php.sock"))
    assert (php.root, php.index, php.keepalive, php.connect_timeout) == (
        os.path.realpath(site / "php"), ("index.php",), 2, 1.0,
    )
    assert api.proxy == (
        ProxyTarget(Address("tcp", "backend.test", 80), "/v1/"),
        ProxyTarget(Address("tcp", "::1", 8081), "/v1/"),
    )
    assert (api.host, api.keepalive) == ("api.internal", 0)
    # A static route inherits the vhost's index and autoindex unless it sets its own.
    assert (files.index, files.autoindex) == (("index.htm", "index.html"), True)
    assert (raw.index, raw.autoindex) == ((), False)


def test_routes_keep_file_order(site: Path) -> None:
    config = load(site, route('prefix = "/a/b/"\nstatic = "files"', before='prefix = "/a/"\nstatic = "files"'))
    assert [r.prefix for r in config.vhosts[0].routes] == ["/a/", "/a/b/"]


def test_root_prefix(site: Path) -> None:
    config = load(site, route('prefix = "/"\nstatic = "files"'))
    assert config.vhosts[0].routes[0].prefix == "/"


def test_parse_config_from_dict(site: Path) -> None:
    config = parse_config({"vhost": [{"root": "www"}]}, str(site / "x.conf"))
    assert config.vhosts[0].root == os.path.realpath(site / "www")
    with pytest.raises(ConfigError, match=r'x\.conf: vhost\[0\]: unknown key "rot" \(did you mean "root"\?\)$'):
        parse_config({"vhost": [{"rot": "www"}]}, str(site / "x.conf"))


def test_summary(site: Path) -> None:
    config = load(
        site,
        'listen = ["127.0.0.1:8080", "[::1]:8080"]\n'
        + VHOST
        + "default = true\n"
        + '[[vhost.route]]\nprefix = "/a/"\nscgi = "127.0.0.1:4000"\n'
        + '[[vhost.route]]\nprefix = "/a/long/"\nfastcgi = "127.0.0.1:9000"\nroot = "php"\n'
        + '[[vhost.route]]\nprefix = "/p/"\nproxy = "http://127.0.0.1:8081/base/"\n',
    )
    text = summary(config)
    assert "listen 127.0.0.1:8080, [::1]:8080\n" in text
    assert "vhost[0] example.test  (default)\n" in text
    lines = [line.strip() for line in text.splitlines() if line.startswith("  /")]
    assert [line.split()[0] for line in lines] == ["/a/long/", "/a/", "/p/", "/"]
    assert "SCRIPT_NAME=/a (application mount)" in lines[1]
    assert "(script mode)" in lines[0]
    assert "http://127.0.0.1:8081/base/" in lines[2]
    assert lines[3] == f"/         static {os.path.realpath(site / 'www')}  (vhost root)"
    assert "max_body_size=16MiB" in text


CONFIG_MD_EXAMPLE = """
listen = ["127.0.0.1:8080", "[::1]:8080"]
workers = 2
pid_file = "run/frontd.pid"
error_log = "-"
access_log = "-"

[limits]
max_connections = 1024
max_header_size = "16KiB"
max_body_size = "16MiB"
header_timeout = "10s"
body_timeout = "60s"
send_timeout = "60s"
keepalive_timeout = "75s"

[[vhost]]
names = ["example.test", "*.example.test"]
default = true
root = "../www"
index = ["index.html"]
autoindex = false

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "../cgi-bin"
  timeout = "30s"

  [[vhost.route]]
  prefix = "/php/"
  fastcgi = "unix:/run/php/php-fpm.sock"
  root = "../php"
  index = ["index.php"]

  [[vhost.route]]
  prefix = "/quixote/"
  scgi = "127.0.0.1:4000"
  connect_timeout = "5s"
  timeout = "60s"

  [[vhost.route]]
  prefix = "/wsgi/"
  uwsgi = ["127.0.0.1:3031", "127.0.0.1:3032"]

  [[vhost.route]]
  prefix = "/files/"
  static = "../files"

[[vhost]]
names = ["api.example.test"]

  [[vhost.route]]
  prefix = "/"
  proxy = "http://127.0.0.1:8081"
"""


def test_contract_example(site: Path) -> None:
    """The example of the config contract (CONFIG.md), with local directories, loads as documented."""
    conf = site / "conf"
    conf.mkdir()
    (conf / "run").mkdir()  # the pid file's directory must exist
    (conf / "frontd.conf").write_text(CONFIG_MD_EXAMPLE)
    config = load_config(str(conf / "frontd.conf"))
    assert config.workers == 2
    assert config.pid_file == str(conf / "run/frontd.pid")
    main, api = config.vhosts
    assert main.default and main.names == ("example.test", "*.example.test")
    assert [r.kind for r in main.routes] == ["cgi", "fastcgi", "scgi", "uwsgi", "static"]
    assert main.routes[0].timeout == 30.0
    assert api.routes[0].proxy == (ProxyTarget(Address("tcp", "127.0.0.1", 8081)),)


def test_documented_example(tmp_path: Path) -> None:
    """The complete example of docs/configuration.md loads, laid out as the document describes."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    example = doc.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    if shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("the example's interpreter, python3, is not in /usr/local/bin:/usr/bin:/bin")
    for name in ("conf", "www", "cgi-bin", "php", "files", "run"):
        (tmp_path / name).mkdir()
    (tmp_path / "conf" / "frontd.conf").write_text(example)
    config = load_config(str(tmp_path / "conf" / "frontd.conf"))
    assert config.workers == (os.cpu_count() or 1)
    assert config.error_log == str(tmp_path / "run" / "error.log")
    assert [r.prefix for r in config.vhosts[0].routes] == ["/cgi-bin/", "/php/", "/quixote/", "/wsgi/", "/files/"]
    assert config.vhosts[1].routes[0].keepalive == 16


def test_request_buffering(site: Path) -> None:
    """Issue 13 §1: on by default on gateway and proxy routes; refused where there is no body to hold."""
    config = load(site, route('prefix = "/cgi-bin/"\ncgi = "cgi-bin"'))
    assert config.vhosts[0].routes[0].request_buffering is True
    config = load(site, route('prefix = "/p/"\nproxy = "http://127.0.0.1:9"\nrequest_buffering = false'))
    assert config.vhosts[0].routes[0].request_buffering is False
    assert "request_buffering=off" in summary(config)
    assert error(site, route('prefix = "/f/"\nstatic = "files"\nrequest_buffering = false')) == (
        f"{site / 'frontd.conf'}: vhost[0].route[0].request_buffering: not an option of static routes "
        "(only of cgi, fastcgi, scgi, uwsgi and proxy routes)")
    assert "request_buffering: expected true or false" in error(
        site, route('prefix = "/s/"\nscgi = "127.0.0.1:9"\nrequest_buffering = "no"'))


def test_response_buffering(site: Path) -> None:
    config = load(site, route('prefix = "/cgi-bin/"\ncgi = "cgi-bin"\nresponse_buffering = false'))
    assert config.vhosts[0].routes[0].response_buffering is False
    assert "response_buffering=off" in summary(config)
    assert load(site, route('prefix = "/s/"\nscgi = "127.0.0.1:9"')).vhosts[0].routes[0].response_buffering
    assert load(site, route('prefix = "/p/"\nproxy = "http://127.0.0.1:9"')).vhosts[0].routes[0].response_buffering
    proxied = load(site, route('prefix = "/p/"\nproxy = "http://127.0.0.1:9"\nresponse_buffering = false'))
    assert proxied.vhosts[0].routes[0].response_buffering is False
    assert error(site, route('prefix = "/f/"\nstatic = "www"\nresponse_buffering = false')).endswith(
        "response_buffering: not an option of static routes (only of cgi, fastcgi, scgi, uwsgi and proxy routes)")


def test_http2_max_streams(site: Path) -> None:
    assert load(site, VHOST + "[limits]\nhttp2_max_streams = 64\n").limits.http2_max_streams == 64
    assert load(site, VHOST).limits.http2_max_streams == 128
    assert "http2_max_streams" in error(site, VHOST + "[limits]\nhttp2_max_streams = 0\n")
    config = load(site, 'listen = [{ address = "127.0.0.1:8081", http2 = true }]\n' + VHOST)
    assert "listen 127.0.0.1:8081 (h2c)" in summary(config) and "http2_max_streams=128 " in summary(config)
