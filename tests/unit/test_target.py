"""frontd.http.target: request-target parsing and normalisation, Host validation, dotfiles."""

from __future__ import annotations

import pytest

from frontd.errors import BadRequest, NotImplementedMethod, URITooLong
from frontd.http.target import Target, host_from_header, is_hidden, parse_target

# (raw target, normalised path)
NORMALISED = [
    (b"/", "/"),
    (b"/index.html", "/index.html"),
    (b"/a/b/c", "/a/b/c"),
    (b"/a/b/", "/a/b/"),
    (b"//a///b", "/a/b"),
    (b"//a///b//", "/a/b/"),
    (b"/a/./b/", "/a/b/"),
    (b"/a/.", "/a/"),
    (b"/a/b/..", "/a/"),
    (b"/a/b/../c", "/a/c"),
    (b"/a/..", "/"),
    (b"/a/%2e%2e", "/"),
    (b"/a/%2E%2E/b", "/b"),
    (b"/a/b/.%2e/.%2E/c", "/c"),
    (b"/./", "/"),
    (b"/..a/a..", "/..a/a.."),  # not dot segments
    (b"/...", "/..."),
    # Decode once: "%252e" is the literal name "%2e", not a dot segment.
    (b"/%252e%252e/x", "/%2e%2e/x"),
    (b"/%25", "/%"),
    (b"/%e2%82%ac", "/\u20ac"),  # valid UTF-8: the euro sign
    (b"/caf%C3%A9", "/caf\u00e9"),
    (b"/a%20b", "/a b"),
    (b"/a+b", "/a+b"),  # "+" is a space only in form queries, never in a path
    (b"/a%3fb", "/a?b"),  # an encoded "?" is part of the name
    (b"/a;p=1/b", "/a;p=1/b"),
    (b"/a:b@c!$&'()*,=~_-.", "/a:b@c!$&'()*,=~_-."),
]


@pytest.mark.parametrize(("raw", "path"), NORMALISED)
def test_normalised_path(raw: bytes, path: str) -> None:
    assert parse_target(raw, "GET").path == path


# Traversal and smuggling spellings that must never reach the file system.
REFUSED = [
    b"/../etc/passwd",
    b"/..",
    b"/a/../../etc/passwd",
    b"/a/%2e%2e/%2e%2e/etc/passwd",
    b"/.%2e/.%2e/x",
    b"/%2e%2e/x",
    b"/%2E./x",
    b"/cgi-bin/.%2e/.%2e/.%2e/etc/passwd",  # CVE-2021-41773
    b"/cgi-bin/%%32%65%%32%65/x",  # CVE-2021-42013: "%%" is no escape
    b"/static/..%2f..%2fetc/passwd",
    b"/a%2fb",  # encoded slash (RFC 3875 §4.1.5)
    b"/a%2Fb",
    b"/a%5cb",  # encoded backslash
    b"/a%5Cb",
    b"/a\\b",  # raw backslash
    b"/..\\..\\etc\\passwd",
    b"/%c0%ae%c0%ae/x",  # overlong UTF-8 "."
    b"/%c0%af",  # overlong UTF-8 "/"
    b"/%e0%80%ae",  # three-byte overlong "."
    b"/%ed%a0%80",  # UTF-16 surrogate
    b"/%ff",
    b"/%e2%82",  # truncated sequence
    b"/a%00b",  # NUL
    b"/a%00",
    b"/x%0ay.php",  # LF (CVE-2019-11043)
    b"/x%0d",
    b"/x%09",
    b"/x%7f",
    b"/x%c2%85",  # U+0085, a C1 control
    b"/a%",  # truncated escapes
    b"/a%2",
    b"/a%zz",
    b"/a%2g",
    b"/a#frag",
    b"/a b",  # not visible ASCII
    b"/a\tb",
    b"/caf\xc3\xa9",  # raw non-ASCII
    b"",
    b"a/b",  # no leading slash
    b"example.com:80",  # authority-form without CONNECT
    b"ftp://host/x",
    b"http:/x",
    b"http://user@host/x",  # userinfo (RFC 9110 §4.2.4)
    b"http:///x",  # empty host (RFC 9110 §4.2.1)
    b"http://host/%2e%2e/x",
]


@pytest.mark.parametrize("raw", REFUSED)
def test_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_target(raw, "GET")


def test_raw_path_and_query() -> None:
    t = parse_target(b"/a%20b/c?x=1&y=%2f", "GET")
    assert t == Target(path="/a b/c", raw_path="/a%20b/c", query="x=1&y=%2f", host=None, port=None)


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        (b"/a", ""),
        (b"/a?", ""),
        (b"/a?q", "q"),
        (b"/a?q?r/s", "q?r/s"),
        (b"/a?%00%2f..\\", "%00%2f..\\"),  # the query is passed on raw, never decoded here
        (b"/a?x#y", "x#y"),
    ],
)
def test_query(raw: bytes, query: str) -> None:
    assert parse_target(raw, "GET").query == query


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"http://Example.COM:8080/a?q", Target("/a", "/a", "q", "example.com", 8080)),
        (b"https://example.com/a/../b", Target("/b", "/a/../b", "", "example.com", None)),
        (b"HTTP://example.com", Target("/", "/", "", "example.com", None)),
        (b"http://example.com?q=1", Target("/", "/", "q=1", "example.com", None)),
        (b"http://example.com./x", Target("/x", "/x", "", "example.com", None)),
        (b"http://[::1]:81/x", Target("/x", "/x", "", "[::1]", 81)),
        (b"http://127.0.0.1/", Target("/", "/", "", "127.0.0.1", None)),
        (b"http://example.com:/", Target("/", "/", "", "example.com", None)),
    ],
)
def test_absolute_form(raw: bytes, expected: Target) -> None:
    # RFC 9112 §3.2.2: the host comes from the target, not from the Host header.
    assert parse_target(raw, "GET") == expected


def test_asterisk_form() -> None:
    # RFC 9112 §3.2.4: only OPTIONS may use "*".
    assert parse_target(b"*", "OPTIONS") == Target(path="*", raw_path="*", query="")
    with pytest.raises(BadRequest):
        parse_target(b"*", "GET")
    with pytest.raises(BadRequest):
        parse_target(b"*/a", "OPTIONS")


def test_connect_not_implemented() -> None:
    with pytest.raises(NotImplementedMethod):
        parse_target(b"example.com:443", "CONNECT")


def test_max_size_just_under_and_over() -> None:
    raw = b"/" + b"a" * 99
    assert parse_target(raw, "GET", max_size=100).path == "/" + "a" * 99
    with pytest.raises(URITooLong):
        parse_target(raw + b"a", "GET", max_size=100)


def test_long_path_of_dot_segments() -> None:
    depth = 1000
    raw = b"/a" * depth + b"/.." * depth
    assert parse_target(raw, "GET").path == "/"
    with pytest.raises(BadRequest):
        parse_target(raw + b"/..", "GET")


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("/", False),
        ("/index.html", False),
        ("/a.b/c.d", False),
        ("/.git/config", True),
        ("/a/.env", True),
        ("/a/.htpasswd", True),
        ("/a/.ssh/", True),
        ("/.well-known/acme-challenge/x", True),
        ("/%2e%2e", False),  # the literal name from "%252e%252e"
    ],
)
def test_is_hidden(path: str, hidden: bool) -> None:
    assert is_hidden(path) is hidden


def test_is_hidden_allowed() -> None:
    assert not is_hidden("/.well-known/acme-challenge/x", allowed={".well-known"})
    assert is_hidden("/.well-known/.git", allowed={".well-known"})


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"example.com", "example.com"),
        (b"Example.COM", "example.com"),
        (b"example.com:8080", "example.com"),
        (b"example.com.", "example.com"),
        (b"example.com.:80", "example.com"),
        (b"example.com:", "example.com"),  # RFC 3986 §3.2.3: port = *DIGIT
        (b"localhost", "localhost"),
        (b"my_host-1.example", "my_host-1.example"),
        (b"127.0.0.1", "127.0.0.1"),
        (b"127.0.0.1:8080", "127.0.0.1"),
        (b"[::1]", "[::1]"),
        (b"[::1]:8080", "[::1]"),
        (b"[2001:DB8::1]", "[2001:db8::1]"),
        (b"", ""),  # RFC 9112 §3.2: empty when the target has no authority
    ],
)
def test_host_from_header(value: bytes, host: str) -> None:
    assert host_from_header(value) == host


@pytest.mark.parametrize(
    "value",
    [
        b"exa mple.com",
        b" example.com",
        b"example.com/",
        b"example.com/x",
        b"user@example.com",
        b"example.com:80:80",
        b"example.com:http",
        b"example.com:65536",
        b"example.com:123456",
        b"example.com:-1",
        b"example..com",
        b".example.com",
        b".",
        b":80",
        b"a" * 64 + b".com",  # label over 63 octets
        b"[::1",
        b"[::1]x",
        b"[::1]:x",
        b"[not-ipv6]",
        b"[fe80::1%25eth0]",  # zone identifiers are not allowed in a Host
        b"[v1.x]",  # IPvFuture
        b"::1",
        b"exam\\ple.com",
        b"example.com\x00",
        b"ex%41mple.com",
        b"caf\xc3\xa9.example",
    ],
)
def test_host_refused(value: bytes) -> None:
    with pytest.raises(BadRequest):
        host_from_header(value)


def test_host_port_limits() -> None:
    assert parse_target(b"http://h:65535/", "GET").port == 65535
    assert parse_target(b"http://h:0/", "GET").port == 0
    with pytest.raises(BadRequest):
        parse_target(b"http://h:65536/", "GET")


def test_plain_path_shortcut_agrees_with_full_normalisation() -> None:
    # The fast path for paths with nothing to decode must give what decoding and dot-segment
    # removal give; seeded random paths over the characters that matter.
    import random

    from frontd.http import target as t

    rng = random.Random(20261125)
    alphabet = "ab.-_~!$&'()*+,;=:@/09Z"
    checked = 0
    for _ in range(5000):
        raw = ("/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))).encode()
        if not t._PLAIN_PATH.fullmatch(raw):
            continue
        checked += 1
        assert parse_target(raw, "GET").path == t._normalise(raw), raw
    assert checked > 500
