"""Listener and backend addresses and proxy URLs: forms accepted, and the message for each bad one."""

from __future__ import annotations

from typing import Any

import pytest

from frontd.config.address import MAX_UNIX_PATH, parse_address, parse_hostname, parse_proxy_url
from frontd.config.model import Address, ConfigError, ProxyTarget

LISTEN_FORMS = '"host:port", "[v6]:port", ":port" or "unix:/path"'
BACKEND_FORMS = '"host:port", "[v6]:port" or "unix:/path"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", Address("tcp", "127.0.0.1", 8080)),
        ("[::1]:8080", Address("tcp", "::1", 8080)),
        ("[0:0::1]:80", Address("tcp", "::1", 80)),
        (":8080", Address("tcp", "", 8080)),
        ("*:8080", Address("tcp", "", 8080)),
        ("localhost:80", Address("tcp", "localhost", 80)),
        ("LocalHost.:80", Address("tcp", "localhost", 80)),
        ("127.0.0.1:0", Address("tcp", "127.0.0.1", 0)),
        ("unix:/run/frontd.sock", Address("unix", path="/run/frontd.sock")),
        ("unix:run/frontd.sock", Address("unix", path="/etc/frontd/run/frontd.sock")),
        ("unix:../run//frontd.sock", Address("unix", path="/etc/run/frontd.sock")),
    ],
)
def test_listener(text: str, expected: Address) -> None:
    assert parse_address(text, "listen", listener=True, base_dir="/etc/frontd") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9000", Address("tcp", "127.0.0.1", 9000)),
        ("[fe80::1]:9000", Address("tcp", "fe80::1", 9000)),
        ("php-fpm.internal:9000", Address("tcp", "php-fpm.internal", 9000)),
        ("127.0.0.1:65535", Address("tcp", "127.0.0.1", 65535)),
        ("unix:/run/php/php-fpm.sock", Address("unix", path="/run/php/php-fpm.sock")),
    ],
)
def test_backend(text: str, expected: Address) -> None:
    assert parse_address(text, "fastcgi", listener=False) == expected


@pytest.mark.parametrize(
    ("text", "listener", "message"),
    [
        ("localhost", True, f'missing port in "localhost"; expected {LISTEN_FORMS}'),
        ("8080", True, f'missing port in "8080"; expected {LISTEN_FORMS} (did you mean ":8080"?)'),
        ("8080", False, f'missing port in "8080"; expected {BACKEND_FORMS}'),
        (":9000", False, f'missing host in ":9000" (expected {BACKEND_FORMS})'),
        ("127.0.0.1:0", False, 'bad port "0" in "127.0.0.1:0" (expected 1..65535)'),
        ("127.0.0.1:65536", True, 'bad port "65536" in "127.0.0.1:65536" (expected 0..65535)'),
        ("127.0.0.1:", True, 'bad port "" in "127.0.0.1:" (expected 0..65535)'),
        ("127.0.0.1:+80", True, 'bad port "+80" in "127.0.0.1:+80" (expected 0..65535)'),
        ("127.0.0.1:８０", True, 'bad port "８０" in "127.0.0.1:８０" (expected 0..65535)'),
        ("::1:8080", True, 'an IPv6 address goes in brackets: "[::1]:8080", got "::1:8080"'),
        ("[::1]", True, f'missing port in "[::1]" (expected {LISTEN_FORMS})'),
        ("[::1:80", True, f'missing "]" in "[::1:80" (expected {LISTEN_FORMS})'),
        ("[::g]:80", True, 'bad IPv6 address "::g" in "[::g]:80"'),
        ("[127.0.0.1]:80", True, 'bad IPv6 address "127.0.0.1" in "[127.0.0.1]:80"'),
        ("300.1.1.1:80", True, 'bad IPv4 address "300.1.1.1"'),
        ("exa_mple-.test:80", False, 'bad host name "exa_mple-.test" (letters, digits, hyphens, dots; '
                                     "labels of at most 63 characters)"),
        ("a..b:80", False, 'bad host name "a..b" (letters, digits, hyphens, dots; '
                           "labels of at most 63 characters)"),
        ("*.example.test:80", False, 'bad name "*.example.test": a wildcard is only allowed as a leading '
                                     '"*.", as in "*.example.test"'),
        ("unix:", True, 'empty Unix socket path (expected "unix:/path/to.sock")'),
        ("unix:/run/", True, 'Unix socket path "/run/" names a directory'),
        ("unix:run.sock", True, 'Unix socket path "run.sock" must be absolute'),
        ("unix:/" + "s" * MAX_UNIX_PATH, True,
         f'Unix socket path "/{"s" * MAX_UNIX_PATH}" is {MAX_UNIX_PATH + 1} bytes long; the limit is 107'),
    ],
)
def test_address_errors(text: str, listener: bool, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text, "listen[0]", listener=listener)
    assert str(info.value) == f"listen[0]: {message}"


def test_address_not_a_string() -> None:
    value: Any = 8080  # TOML gave an integer where a string belongs
    with pytest.raises(ConfigError) as info:
        parse_address(value, "listen", listener=True)
    assert str(info.value) == f"listen: expected an address ({LISTEN_FORMS}), got 8080"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:8081", ProxyTarget(Address("tcp", "127.0.0.1", 8081))),
        ("http://127.0.0.1:8081/", ProxyTarget(Address("tcp", "127.0.0.1", 8081), "/")),
        ("http://127.0.0.1:8081/base/", ProxyTarget(Address("tcp", "127.0.0.1", 8081), "/base/")),
        # The path replaces the prefix, which always ends in "/": so does the path.
        ("http://127.0.0.1:8081/base", ProxyTarget(Address("tcp", "127.0.0.1", 8081), "/base/")),
        ("HTTP://Backend.Test", ProxyTarget(Address("tcp", "backend.test", 80))),
        ("http://[::1]:8081", ProxyTarget(Address("tcp", "::1", 8081))),
        ("http://[::1]/x/", ProxyTarget(Address("tcp", "::1", 80), "/x/")),
        ("http://unix:/run/app.sock", ProxyTarget(Address("unix", path="/run/app.sock"))),
        # nginx's form: the socket path ends at the first ":".
        ("http://unix:/run/app.sock:/base/", ProxyTarget(Address("unix", path="/run/app.sock"), "/base/")),
        ("http://unix:app.sock:/a%20b/", ProxyTarget(Address("unix", path="/srv/app.sock"), "/a%20b/")),
    ],
)
def test_proxy_url(text: str, expected: ProxyTarget) -> None:
    assert parse_proxy_url(text, "proxy", "/srv") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:8081", 'expected an http:// URL such as "http://127.0.0.1:8081" or '
                           '"http://unix:/path/to.sock", got "127.0.0.1:8081"'),
        ("https://example.test", 'only http:// backends are supported, got "https://" in "https://example.test"'),
        ("ftp://example.test", 'only http:// backends are supported, got "ftp://" in "ftp://example.test"'),
        ("http://", 'missing host in "http://"'),
        ("http:///x", 'missing host in "http:///x"'),
        ("http://user:pw@h:80", 'a proxy URL takes no user name or password, got "http://user:pw@h:80"'),
        ("http://h:80/a?b", 'a proxy URL takes no query or fragment, got "http://h:80/a?b"'),
        ("http://h:80/a#b", 'a proxy URL takes no query or fragment, got "http://h:80/a#b"'),
        ("http://h:80/a b", 'bad path "/a b" in "http://h:80/a b" (must start with "/"; '
                            "percent-encode spaces and other characters)"),
        ("http://unix:/run/a.sock:base", 'bad path "base" in "http://unix:/run/a.sock:base" (must start with "/"; '
                                         "percent-encode spaces and other characters)"),
        ("http://h:0", 'bad port "0" in "h:0" (expected 1..65535)'),
        ("http://[::1", 'missing "]" in "http://[::1"'),
        ("http://unix:", 'empty Unix socket path (expected "unix:/path/to.sock")'),
    ],
)
def test_proxy_url_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_proxy_url(text, "proxy", "/srv")
    assert str(info.value) == f"proxy: {message}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.TEST.", "example.test"),
        ("*.Example.test", "*.example.test"),
        ("10.0.0.1", "10.0.0.1"),
        ("[0::1]", "[::1]"),
        ("under_score.test", "under_score.test"),
    ],
)
def test_hostname(text: str, expected: str) -> None:
    assert parse_hostname(text, "names[0]", wildcard=True) == expected
