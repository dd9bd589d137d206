"""Config of the output rules: headers, compress, precompressed, per-vhost access logs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from frontd.config.load import summary
from frontd.config.model import COMPRESS_TYPES, Compression
from tests.unit.test_config import error, load, site  # noqa: F401 (site: the fixture)


def vhost(extra: str = "", route: str = "") -> str:
    text = f'[[vhost]]\nnames = ["example.test"]\nroot = "www"\n{extra}\n'
    if route:
        text += f'[[vhost.route]]\nprefix = "/a/"\nstatic = "www"\n{route}\n'
    return text


def test_headers_resolved_per_route_field_by_field(site: Path) -> None:
    config = load(site, vhost('headers = { "X-Frame-Options" = "DENY", "Cache-Control" = "no-cache" }',
                              'headers = { "cache-control" = "max-age=60", "X-Frame-Options" = "", "X-New" = "1" }'))
    main = config.vhosts[0]
    assert main.headers == ((b"x-frame-options", b"DENY"), (b"cache-control", b"no-cache"))
    assert dict(main.routes[0].headers) == {b"x-frame-options": b"", b"cache-control": b"max-age=60", b"x-new": b"1"}


def test_compress_resolved(site: Path) -> None:
    config = load(site, vhost('compress = true\ncompress_min_size = "2KiB"', 'compress_types = ["text/css"]'))
    main = config.vhosts[0]
    assert main.compress == Compression(("zstd", "br", "gzip"), COMPRESS_TYPES, 2048)
    assert main.routes[0].compress == Compression(("zstd", "br", "gzip"), ("text/css",), 2048)
    config = load(site, vhost("compress = true", "compress = false"))
    assert config.vhosts[0].routes[0].compress is None
    config = load(site, vhost("", 'compress = ["gzip"]\nprecompressed = true'))
    route = config.vhosts[0].routes[0]
    assert route.compress == Compression(("gzip",)) and route.precompressed
    assert config.vhosts[0].compress is None and not config.vhosts[0].precompressed


@pytest.mark.parametrize(("extra", "route", "expected"), [
    ('headers = { "X-A" = "a\\r\\nSet-Cookie: x=1" }', "",
     'vhost[0].headers."X-A": a value has no CR, LF, NUL'),
    ('headers = { "X-A" = "a\\u0000" }', "", "a value has no CR, LF, NUL"),
    ('headers = { "Content-Length" = "5" }', "", '"Content-Length" cannot be set'),
    ('headers = { "Connection" = "close" }', "", '"Connection" cannot be set'),
    ('headers = { "Transfer-Encoding" = "chunked" }', "", "cannot be set"),
    ('headers = { "Bad Name" = "x" }', "", "is not a header field name"),
    ('headers = { "X-A" = 1 }', "", 'expected a string ("" removes the field)'),
    ('headers = { "X-A" = "1", "x-a" = "2" }', "", "is set twice"),
    ('headers = ["X-A"]', "", "expected a table"),
    ('compress = "gzip"', "", 'expected true, false or a list such as ["zstd", "br", "gzip"]'),
    ('compress = ["gzip", "deflate"]', "", 'vhost[0].compress[1]'),
    ('compress = ["gzip", "gzip"]', "", "listed twice"),
    ('compress_types = ["text/css"]', "", "vhost[0].compress_types: only applies with compress"),
    ('compress = true\ncompress_types = ["css"]', "", 'expected a media type such as "text/css"'),
    ('compress = true\ncompress_min_size = "lots"', "", "compress_min_size"),
    ('precompressed = "yes"', "", "expected true or false"),
    ('access_log_format = "common"', "", "vhost[0].access_log_format"),
    ("access_log = 5", "", "vhost[0].access_log"),
    ("", 'headerz = { "X-A" = "1" }', 'unknown key "headerz" (did you mean "headers"?)'),
])
def test_mistakes(site: Path, extra: str, route: str, expected: str) -> None:
    assert expected in error(site, vhost(extra, route))


def test_vhost_precompressed_reaches_routes_that_serve_files(site: Path) -> None:
    config = load(site, '[[vhost]]\nnames = ["example.test"]\nroot = "www"\nprecompressed = true\n'
                  '[[vhost.route]]\nprefix = "/s/"\nstatic = "www"\n'
                  '[[vhost.route]]\nprefix = "/php/"\nfastcgi = "127.0.0.1:9"\nroot = "www"\n'
                  '[[vhost.route]]\nprefix = "/p/"\nproxy = "http://127.0.0.1:9"\n')
    assert [r.precompressed for r in config.vhosts[0].routes] == [True, True, False]


def test_precompressed_only_on_static_routes(site: Path) -> None:
    message = error(site, '[[vhost]]\nnames = ["example.test"]\n[[vhost.route]]\nprefix = "/"\n'
                    'proxy = "http://127.0.0.1:9"\nprecompressed = true\n')
    assert "vhost[0].route[0].precompressed: not an option of proxy routes (only of static routes)" in message


def test_access_logs(site: Path) -> None:
    config = load(site, 'access_log_format = "vhost_combined"\n' + vhost('access_log = "logs.txt"\naccess_log_format = "json"'))
    assert config.access_log_format == "vhost_combined"
    assert config.vhosts[0].access_log == str(site / "logs.txt") and config.vhosts[0].access_log_format == "json"
    assert 'access_log_format' in error(site, 'access_log_format = "xml"\n' + vhost())


def test_summary_shows_resolved_output_rules(site: Path) -> None:
    config = load(site, 'access_log_format = "json"\n' + vhost(
        'headers = { "X-A" = "1" }\ncompress = ["gzip"]\naccess_log = "v.log"',
        'headers = { "X-A" = "" }\nprecompressed = true'))
    text = summary(config)
    assert "access_log -  format json" in text
    assert f"  access_log {site / 'v.log'}  format json" in text
    assert re.search(r'/a/ +static .* header\.x-a="" compress=gzip min_size=1KiB precompressed', text)
    assert re.search(r'/ +static .*\(vhost root\)  header\.x-a="1" compress=gzip min_size=1KiB$', text, re.M)
