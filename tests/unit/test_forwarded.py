"""frontd.http.forwarded: the header and target rewriting of proxy routes (RFC 9110 §7.6, RFC 7239)."""

from __future__ import annotations

import pytest

from frontd.http.forwarded import (
    TrustedProxies,
    backend_target,
    forwarded_element,
    forwarded_for,
    forwarded_node,
    forwarded_value,
    real_client,
    request_headers,
    response_headers,
    upgrade_requested,
)


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name for name, _ in headers]


def field(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    values = [v for k, v in headers if k == name]
    assert len(values) <= 1, f"{name!r} sent {len(values)} times"
    return values[0] if values else None


def forward(headers: list[tuple[bytes, bytes]], **options: object) -> list[tuple[bytes, bytes]]:
    kwargs: dict[str, object] = dict(host=b"example.test", client_addr="192.0.2.60", scheme="http",
                                     client_host=b"example.test", http_version="1.1", body_length=0)
    kwargs.update(options)
    return request_headers(headers, **kwargs)  # type: ignore[arg-type]


# -- RFC 7239 -------------------------------------------------------------------------------------


def test_forwarded_nodes() -> None:
    # RFC 7239 §6: IPv4 as is, IPv6 in brackets; §4: which then has to be a quoted-string.
    assert forwarded_node("192.0.2.43") == "192.0.2.43"
    assert forwarded_node("2001:db8:cafe::17") == "[2001:db8:cafe::17]"
    assert forwarded_node("unix:") == "unknown"
    assert forwarded_value("[2001:db8:cafe::17]") == '"[2001:db8:cafe::17]"'
    assert forwarded_value("http") == "http"
    assert forwarded_value('a"b\\') == '"a\\"b\\\\"'


def test_forwarded_element_matches_rfc_7239_examples() -> None:
    # RFC 7239 §4: Forwarded: for="_gazonk" / For="[2001:db8:cafe::17]:4711" / for=192.0.2.60;proto=http;by=...
    assert forwarded_element("192.0.2.60", "http", "") == b"for=192.0.2.60;proto=http"
    assert (forwarded_element("2001:db8:cafe::17", "https", "example.com")
            == b'for="[2001:db8:cafe::17]";proto=https;host=example.com')
    assert forwarded_element("192.0.2.60", "http", "example.com:8080") == \
        b'for=192.0.2.60;proto=http;host="example.com:8080"'


# -- request ---------------------------------------------------------------------------------


def test_hop_by_hop_and_connection_named_fields_removed() -> None:
    out = forward([
        (b"host", b"client.test"), (b"connection", b"keep-alive, X-Private"), (b"x-private", b"1"),
        (b"keep-alive", b"300"), (b"proxy-connection", b"keep-alive"), (b"proxy-authorization", b"Basic x"),
        (b"te", b"gzip"), (b"upgrade", b"h2c"), (b"trailer", b"x"), (b"transfer-encoding", b"chunked"),
        (b"expect", b"100-continue"), (b"accept", b"*/*"), (b"cookie", b"a=1"),
    ])
    assert names(out)[0] == b"host"  # RFC 9112 §3.2: first
    assert field(out, b"host") == b"example.test"
    for gone in (b"connection", b"x-private", b"keep-alive", b"proxy-connection", b"proxy-authorization",
                 b"te", b"upgrade", b"trailer", b"transfer-encoding", b"expect"):
        assert gone not in names(out), gone
    assert field(out, b"accept") == b"*/*" and field(out, b"cookie") == b"a=1"


def test_te_trailers_kept_with_its_connection_option() -> None:
    out = forward([(b"te", b"deflate;q=0.5, trailers"), (b"connection", b"TE")])
    assert field(out, b"te") == b"trailers"
    assert field(out, b"connection") == b"te"


@pytest.mark.parametrize("length, client_fields, expected", [
    (None, [(b"transfer-encoding", b"chunked")], (b"transfer-encoding", b"chunked")),
    (5, [(b"content-length", b"5")], (b"content-length", b"5")),
    (0, [(b"content-length", b"0")], (b"content-length", b"0")),
    (0, [], None),
])
def test_framing_is_recomputed(length: int | None, client_fields: list[tuple[bytes, bytes]],
                               expected: tuple[bytes, bytes] | None) -> None:
    out = forward(client_fields, body_length=length)
    framing = [(k, v) for k, v in out if k in (b"content-length", b"transfer-encoding")]
    assert framing == ([expected] if expected else [])


def test_forwarding_fields_appended_or_set() -> None:
    out = forward([
        (b"via", b"1.0 fred"), (b"via", b"1.1 p.example.net"),
        (b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-for", b"198.51.100.1"),
        (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"spoofed.test"),
        (b"forwarded", b"for=203.0.113.9"),
    ], client_addr="2001:db8::1", client_host=b"example.test:8080", http_version="1.0")
    assert field(out, b"via") == b"1.0 fred, 1.1 p.example.net, 1.0 frontd"
    assert field(out, b"x-forwarded-for") == b"203.0.113.9, 198.51.100.1, 2001:db8::1"
    assert field(out, b"x-forwarded-proto") == b"http"
    assert field(out, b"x-forwarded-host") == b"example.test:8080"
    assert field(out, b"forwarded") == b'for=203.0.113.9, for="[2001:db8::1]";proto=http;host="example.test:8080"'


def test_upgrade_only_with_connection_option() -> None:
    websocket = [(b"upgrade", b"websocket"), (b"connection", b"keep-alive, Upgrade")]
    assert upgrade_requested(websocket) == b"websocket"
    assert upgrade_requested([(b"upgrade", b"websocket")]) is None
    assert upgrade_requested([(b"connection", b"upgrade")]) is None
    out = forward(websocket, upgrade=b"websocket")
    assert field(out, b"upgrade") == b"websocket" and field(out, b"connection") == b"upgrade"
    out = forward(websocket)
    assert b"upgrade" not in names(out) and b"connection" not in names(out)


# -- response ---------------------------------------------------------------------------------


def test_response_headers() -> None:
    headers = [
        (b"content-type", b"text/plain"), (b"content-length", b"5"), (b"connection", b"close, X-Internal"),
        (b"x-internal", b"1"), (b"keep-alive", b"timeout=5"), (b"transfer-encoding", b"chunked"),
        (b"proxy-authenticate", b"Basic"), (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
        (b"server", b"app"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"upgrade", b"websocket"),
    ]
    assert response_headers(headers) == [
        (b"content-type", b"text/plain"), (b"content-length", b"5"), (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    switched = response_headers([(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                                 (b"sec-websocket-accept", b"x")], upgrade=True)
    assert switched == [(b"sec-websocket-accept", b"x"), (b"upgrade", b"websocket"), (b"connection", b"upgrade")]


# -- target -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw_path, query, path, prefix, replacement, expected", [
    # No path in the proxy URL: the client's target as it was sent.
    ("/app/a%20b", "x=%2F", "/app/a b", "/app/", None, "/app/a%20b?x=%2F"),
    ("/app/./x", "", "/app/x", "/app/", None, "/app/./x"),
    ("*", "", "*", "/", None, "*"),
    # A path: nginx's proxy_pass http://b/base/ replaces the location prefix.
    ("/app/x/y", "q=1", "/app/x/y", "/app/", "/base/", "/base/x/y?q=1"),
    ("/app/", "", "/app/", "/app/", "/base/", "/base/"),
    ("/app", "", "/app", "/app/", "/base/", "/base"),
    ("/app", "", "/app", "/app/", "/", "/"),
    ("/app/%7e", "", "/app/~", "/app/", "/", "/%7e"),
    ("/anything", "", "/anything", "/", "/base/", "/base/anything"),
    # Not the clean path as sent: re-encoded from the normalised path.
    ("/app/x/../y%20z", "", "/app/y z", "/app/", "/base/", "/base/y%20z"),
    ("/%61pp/caf%C3%A9", "", "/app/café", "/app/", "/b/", "/b/caf%C3%A9"),
    ("/app//x", "", "/app/x", "/app/", "/b/", "/b/x"),
])
def test_backend_target(raw_path: str, query: str, path: str, prefix: str, replacement: str | None,
                        expected: str) -> None:
    assert backend_target(raw_path, query, path, prefix, replacement) == expected


# -- the client a trusted proxy names -----------------------------------------------------------


TRUSTED = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


def test_trusted_proxies_compare_ipv4_mapped_as_ipv4() -> None:
    assert "10.9.8.7" in TRUSTED and "::ffff:10.9.8.7" in TRUSTED and "2001:db8:ffff::1" in TRUSTED
    assert "192.0.2.1" not in TRUSTED and "unix:" not in TRUSTED and "" not in TRUSTED
    assert "unix:" in TrustedProxies(["unix:"]) and "127.0.0.1" not in TrustedProxies(["unix:"])


@pytest.mark.parametrize(("fields", "client"), [
    ([(b"x-forwarded-for", b"203.0.113.7")], ("203.0.113.7", 0)),
    # Rightmost untrusted, trusted hops skipped; what lies left of it is the client's own word.
    ([(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7, 10.0.0.2, 127.0.0.1")], ("203.0.113.7", 0)),
    ([(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.2,")], ("203.0.113.7", 0)),
    ([(b"x-forwarded-for", b"203.0.113.7:5555")], ("203.0.113.7", 5555)),
    ([(b"x-forwarded-for", b"[2001:db8::7]:5555")], ("2001:db8::7", 5555)),
    ([(b"x-forwarded-for", b"2001:db8::7")], ("2001:db8::7", 0)),
    ([(b"x-forwarded-for", b"::ffff:203.0.113.7")], ("203.0.113.7", 0)),
    # All trusted: the leftmost.
    ([(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")], ("10.0.0.1", 0)),
    # Not an address where the walk stops: the peer stays the client.
    ([(b"x-forwarded-for", b"unknown, 10.0.0.2")], None),
    ([(b"x-forwarded-for", b"203.0.113.7:99999")], None),
    ([(b"x-forwarded-for", b"example.test")], None),
    ([], None),
    # RFC 7239 §7.1 examples; Forwarded wins over X-Forwarded-For.
    ([(b"forwarded", b'for="_gazonk"')], None),
    ([(b"forwarded", b'For="[2001:db8:cafe::17]:4711"')], ("2001:db8:cafe::17", 4711)),
    ([(b"forwarded", b"for=192.0.2.60;proto=http;by=203.0.113.43"), (b"x-forwarded-for", b"198.51.100.1")],
     ("192.0.2.60", 0)),
    ([(b"forwarded", b"for=192.0.2.43, for=198.51.100.17")], ("198.51.100.17", 0)),
    ([(b"forwarded", b"for=192.0.2.43, for=10.0.0.3;by=x"), (b"forwarded", b"for=127.0.0.1")], ("192.0.2.43", 0)),
    ([(b"forwarded", b"for=unknown")], None),
    ([(b"forwarded", b"proto=https")], None),
    ([(b"forwarded", b"for=192.0.2.43 junk")], None),
    ([(b"forwarded", b'for="192.0.2.43')], None),
])
def test_real_client(fields: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> None:
    assert real_client(fields, TRUSTED) == client


def test_forwarded_for_values() -> None:
    assert forwarded_for('for=192.0.2.43,for="[2001:db8:cafe::17]";proto=https, by=x') == [
        "192.0.2.43", "[2001:db8:cafe::17]", ""]
    assert forwarded_for('for="a\\"b"') == ['a"b']
    assert forwarded_for("for") is None


def test_hop_appended_after_a_trusted_chain() -> None:
    got = forward([(b"x-forwarded-for", b"203.0.113.7")], client_addr="203.0.113.7", peer_addr="10.0.0.1")
    assert field(got, b"x-forwarded-for") == b"203.0.113.7, 10.0.0.1"
    assert field(got, b"forwarded") == b"for=203.0.113.7, for=10.0.0.1;proto=http;host=example.test"
    got = forward([(b"forwarded", b"for=203.0.113.7")], client_addr="203.0.113.7", peer_addr="10.0.0.1")
    assert field(got, b"x-forwarded-for") == b"203.0.113.7, 10.0.0.1"
    assert field(got, b"forwarded") == b"for=203.0.113.7, for=10.0.0.1;proto=http;host=example.test"
