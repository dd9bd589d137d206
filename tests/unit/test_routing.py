"""Router: virtual host by name (exact, longest wildcard, default) and route by longest prefix.

Configs are built with the real loader (`parse_config`) over real directories, so the names and
prefixes the Router sees are normalised exactly as in production.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from frontd.config.load import parse_config
from frontd.config.model import Config
from frontd.http.target import host_from_header, parse_target
from frontd.routing import Router


def make_config(tmp_path: Path, vhosts: list[dict[str, object]]) -> Config:
    (tmp_path / "d").mkdir(exist_ok=True)
    return parse_config({"listen": ["127.0.0.1:0"], "vhost": vhosts}, str(tmp_path / "frontd.conf"))


def root_of(config: Config, router: Router, host_header: bytes) -> str:
    """The first name of the vhost chosen for a Host header value, as the server would parse it."""
    vhost = router.vhost(host_from_header(host_header))
    return vhost.names[0] if vhost.names else "<nameless>"


@pytest.fixture
def named(tmp_path: Path) -> tuple[Config, Router]:
    config = make_config(tmp_path, [
        {"names": ["first.test"], "root": "d"},
        {"names": ["example.test", "www.example.test"], "root": "d"},
        {"names": ["*.example.test"], "root": "d"},
        {"names": ["*.deep.example.test"], "root": "d"},
        {"names": ["fallback.test"], "default": True, "root": "d"},
        {"names": ["[::1]", "127.0.0.2"], "root": "d"},
    ])
    return config, Router(config)


@pytest.mark.parametrize(("host", "expected"), [
    (b"example.test", "example.test"),
    (b"www.example.test", "example.test"),
    (b"first.test", "first.test"),
    # Case-insensitive (RFC 9110 §4.2.3), port and trailing dot ignored.
    (b"EXAMPLE.Test", "example.test"),
    (b"example.test:8080", "example.test"),
    (b"example.test.", "example.test"),
    (b"Example.Test.:80", "example.test"),
    # Exact names win over wildcards that also match.
    (b"WWW.example.test", "example.test"),
    # Longest matching wildcard.
    (b"a.example.test", "*.example.test"),
    (b"a.b.example.test", "*.example.test"),
    (b"deep.example.test", "*.example.test"),
    (b"x.deep.example.test", "*.deep.example.test"),
    (b"y.x.DEEP.example.test:1", "*.deep.example.test"),
    # A wildcard needs a label before its suffix; "example.test" alone is not "*.example.test".
    (b"notexample.test", "fallback.test"),
    (b"example.test.evil", "fallback.test"),
    # Everything else goes to the vhost with default = true, not to the first one.
    (b"unknown.test", "fallback.test"),
    (b"", "fallback.test"),
    (b"127.0.0.1", "fallback.test"),
    # Addresses: IPv4 exactly, IPv6 in any spelling of the same address.
    (b"127.0.0.2:8080", "[::1]"),
    (b"[::1]", "[::1]"),
    (b"[::1]:8080", "[::1]"),
    (b"[0:0:0:0:0:0:0:1]", "[::1]"),
    (b"[0::1]:80", "[::1]"),
])
def test_vhost_by_host(named: tuple[Config, Router], host: bytes, expected: str) -> None:
    config, router = named
    assert root_of(config, router, host) == expected


def test_first_vhost_takes_the_rest_without_a_default(tmp_path: Path) -> None:
    config = make_config(tmp_path, [
        {"names": ["one.test"], "root": "d"},
        {"names": ["two.test"], "root": "d"},
    ])
    router = Router(config)
    assert router.vhost("two.test").names == ("two.test",)
    assert router.vhost("three.test").names == ("one.test",)
    assert router.vhost("").names == ("one.test",)


def test_nameless_default_vhost(tmp_path: Path) -> None:
    config = make_config(tmp_path, [
        {"names": ["one.test"], "root": "d"},
        {"default": True, "root": "d"},
    ])
    router = Router(config)
    assert router.vhost("one.test").names == ("one.test",)
    assert router.vhost("other.test") is config.vhosts[1]


def test_absolute_form_host_is_what_routing_uses(named: tuple[Config, Router]) -> None:
    # RFC 9112 §3.2.2: the target's authority, not the Host header, names the vhost.
    _, router = named
    target = parse_target(b"http://WWW.Example.Test.:8080/a?b", "GET")
    assert target.host is not None
    assert router.vhost(target.host).names[0] == "example.test"


@pytest.fixture
def routed(tmp_path: Path) -> tuple[Config, Router]:
    config = make_config(tmp_path, [{
        "names": ["site.test"],
        "root": "d",
        "route": [
            {"prefix": "/fcgi/", "static": "d"},
            {"prefix": "/fcgi/deep", "static": "d"},  # no trailing slash: the loader adds it
            {"prefix": "/a/b/c/", "static": "d"},
            {"prefix": "/caf\u00e9/", "static": "d"},
        ],
    }])
    return config, Router(config)


@pytest.mark.parametrize(("path", "prefix"), [
    ("/fcgi", "/fcgi/"),
    ("/fcgi/", "/fcgi/"),
    ("/fcgi/x", "/fcgi/"),
    ("/fcgi/x/y.php", "/fcgi/"),
    ("/fcgix", None),
    ("/fcgix/y", None),
    ("/fcg", None),
    ("/fcgi/deep", "/fcgi/deep/"),
    ("/fcgi/deep/", "/fcgi/deep/"),
    ("/fcgi/deep/z", "/fcgi/deep/"),
    ("/fcgi/deeper", "/fcgi/"),
    ("/fcgi/dee", "/fcgi/"),
    ("/a/b/c", "/a/b/c/"),
    ("/a/b", None),
    ("/a/b/cd", None),
    ("/caf\u00e9/menu", "/caf\u00e9/"),
    ("/", None),
    ("*", None),
    # Prefixes are case-sensitive, as paths are (RFC 3986 §6.2.2.1).
    ("/FCGI/x", None),
])
def test_route_by_longest_whole_segment_prefix(routed: tuple[Config, Router], path: str,
                                               prefix: str | None) -> None:
    config, router = routed
    route = router.route(router.vhost("site.test"), path)
    assert (route.prefix if route is not None else None) == prefix


@pytest.mark.parametrize(("raw", "prefix"), [
    # Routing sees the decoded, normalised path, so no spelling slips past a prefix.
    (b"/%66cgi/x", "/fcgi/"),
    (b"/other/../fcgi/x", "/fcgi/"),
    (b"/fcgi/./deep/x", "/fcgi/deep/"),
    (b"/fcgi//deep/x", "/fcgi/deep/"),
    (b"/fcgi/deep/../x", "/fcgi/"),
    (b"/caf%C3%A9/menu", "/caf\u00e9/"),
    (b"/fcgi%2fx", None),
])
def test_route_after_normalisation(routed: tuple[Config, Router], raw: bytes, prefix: str | None) -> None:
    from frontd.errors import BadRequest

    config, router = routed
    try:
        path = parse_target(raw, "GET").path
    except BadRequest:
        assert prefix is None  # an encoded slash is refused before routing
        return
    route = router.route(router.vhost("site.test"), path)
    assert (route.prefix if route is not None else None) == prefix


def test_root_prefix_takes_everything_else(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{
        "names": ["site.test"],
        "route": [{"prefix": "/", "static": "d"}, {"prefix": "/api/", "static": "d"}],
    }])
    router = Router(config)
    vhost = router.vhost("site.test")
    assert router.route(vhost, "/api").prefix == "/api/"  # type: ignore[union-attr]
    assert router.route(vhost, "/apix").prefix == "/"  # type: ignore[union-attr]
    assert router.route(vhost, "/").prefix == "/"  # type: ignore[union-attr]


def test_routes_are_per_vhost(tmp_path: Path) -> None:
    config = make_config(tmp_path, [
        {"names": ["one.test"], "root": "d", "route": [{"prefix": "/x/", "static": "d"}]},
        {"names": ["two.test"], "root": "d"},
    ])
    router = Router(config)
    assert router.route(router.vhost("one.test"), "/x/a") is not None
    assert router.route(router.vhost("two.test"), "/x/a") is None
