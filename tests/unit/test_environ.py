"""RFC 3875 §4.1 meta-variables from frontd.gateway.environ (no processes, no sockets)."""

from __future__ import annotations

import logging

import pytest

from frontd.config.model import VHost
from frontd.gateway.environ import ScriptPaths, build_environ, environ_pairs
from frontd.request import Request, TLSInfo


def make_request(**kw: object) -> Request:
    values: dict[str, object] = dict(
        method="GET", target="/cgi-bin/env.sh/a%20b/c?x=1&y=%20", path="/cgi-bin/env.sh/a b/c",
        raw_path="/cgi-bin/env.sh/a%20b/c", query="x=1&y=%20", http_version="1.1",
        headers=[(b"host", b"example.test:8080")], host="example.test", client_addr="192.0.2.7",
        client_port=40000, server_addr="127.0.0.1", server_port=8080,
    )
    values.update(kw)
    return Request(**values)  # type: ignore[arg-type]


PATHS = ScriptPaths("/cgi-bin/env.sh", "/a b/c", "/srv/www", "/srv/cgi-bin/env.sh")


def env_of(request: Request, paths: ScriptPaths = PATHS, **kw: object) -> dict[bytes, bytes]:
    kw.setdefault("content_length", None)
    return build_environ(request, paths, **kw)  # type: ignore[arg-type]


def test_required_variables() -> None:
    env = env_of(make_request())
    # RFC 3875 §4.1.4, §4.1.7, §4.1.8, §4.1.12-§4.1.17: always set.
    assert env[b"GATEWAY_INTERFACE"] == b"CGI/1.1"
    assert env[b"SERVER_PROTOCOL"] == b"HTTP/1.1"
    assert env[b"SERVER_SOFTWARE"].startswith(b"frontd/")
    assert env[b"SERVER_NAME"] == b"example.test"
    assert env[b"SERVER_PORT"] == b"8080"
    assert env[b"REQUEST_METHOD"] == b"GET"
    assert env[b"QUERY_STRING"] == b"x=1&y=%20"  # raw, not decoded
    assert env[b"REMOTE_ADDR"] == b"192.0.2.7"
    assert env[b"REMOTE_PORT"] == b"40000"
    assert env[b"SCRIPT_NAME"] == b"/cgi-bin/env.sh"
    assert env[b"PATH_INFO"] == b"/a b/c"  # §4.1.5: decoded
    assert env[b"PATH_TRANSLATED"] == b"/srv/www/a b/c"
    assert env[b"SCRIPT_FILENAME"] == b"/srv/cgi-bin/env.sh"
    assert env[b"DOCUMENT_ROOT"] == b"/srv/www"
    assert env[b"REQUEST_URI"] == b"/cgi-bin/env.sh/a%20b/c?x=1&y=%20"
    assert env[b"REQUEST_SCHEME"] == b"http"
    assert env[b"REDIRECT_STATUS"] == b"200"
    assert b"HTTPS" not in env
    assert b"CONTENT_LENGTH" not in env  # §4.1.2: no body, no CONTENT_LENGTH
    assert b"CONTENT_TYPE" not in env
    assert env[b"HTTP_HOST"] == b"example.test:8080"
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in env.items())


def test_http_1_0_and_empty_query_and_https() -> None:
    env = env_of(make_request(http_version="1.0", query="", target="/cgi-bin/env.sh", scheme="https"))
    assert env[b"SERVER_PROTOCOL"] == b"HTTP/1.0"
    assert env[b"QUERY_STRING"] == b""  # §4.1.7: set, empty
    assert env[b"HTTPS"] == b"on"
    assert env[b"REQUEST_SCHEME"] == b"https"
    assert b"SSL_PROTOCOL" not in env  # only what a TLS connection tells


def test_tls_variables() -> None:
    """mod_ssl's names for what the handshake agreed on; SSL_TLS_SNI only when the client sent SNI."""
    tls = TLSInfo(protocol="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", server_name="example.test", vhost=None)
    env = env_of(make_request(scheme="https", tls=tls, server_port=8443))
    assert (env[b"HTTPS"], env[b"REQUEST_SCHEME"], env[b"SERVER_PORT"]) == (b"on", b"https", b"8443")
    assert (env[b"SSL_PROTOCOL"], env[b"SSL_CIPHER"], env[b"SSL_TLS_SNI"]) == (
        b"TLSv1.3", b"TLS_AES_128_GCM_SHA256", b"example.test")
    env = env_of(make_request(scheme="https", tls=TLSInfo("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", None, None)))
    assert b"SSL_TLS_SNI" not in env and env[b"SSL_PROTOCOL"] == b"TLSv1.2"


def test_path_translated_unset_without_path_info() -> None:
    env = env_of(make_request(), ScriptPaths("/cgi-bin/env.sh", "", "/srv/www", "/srv/cgi-bin/env.sh"))
    assert env[b"PATH_INFO"] == b""
    assert b"PATH_TRANSLATED" not in env  # §4.1.6: MUST be unset
    env = env_of(make_request(), ScriptPaths("/app", "/x", ""))
    assert b"PATH_TRANSLATED" not in env  # nothing to map into
    assert b"SCRIPT_FILENAME" not in env


def test_server_name_without_host_uses_vhost_then_address() -> None:
    vhost = VHost(names=("*.example.test", "www.example.test"))
    assert env_of(make_request(host="", vhost=vhost))[b"SERVER_NAME"] == b"www.example.test"
    assert env_of(make_request(host=""))[b"SERVER_NAME"] == b"127.0.0.1"


def test_request_uri_of_absolute_form() -> None:
    env = env_of(make_request(target="http://example.test/cgi-bin/env.sh?q=1", raw_path="/cgi-bin/env.sh",
                              query="q=1"))
    assert env[b"REQUEST_URI"] == b"/cgi-bin/env.sh?q=1"


def test_content_length_and_type() -> None:
    request = make_request(method="POST", headers=[(b"content-type", b"text/plain"), (b"content-length", b"5")])
    env = env_of(request, content_length=5)
    assert env[b"CONTENT_LENGTH"] == b"5"
    assert env[b"CONTENT_TYPE"] == b"text/plain"
    # §4.1.18: not repeated as HTTP_* variables.
    assert b"HTTP_CONTENT_LENGTH" not in env
    assert b"HTTP_CONTENT_TYPE" not in env
    assert env_of(request, content_length=0)[b"CONTENT_LENGTH"] == b"0"


def test_chunked_transfer_encoding_is_not_passed() -> None:
    request = make_request(method="POST", headers=[(b"transfer-encoding", b"chunked")])
    env = env_of(request, content_length=12)
    assert env[b"CONTENT_LENGTH"] == b"12"
    assert b"HTTP_TRANSFER_ENCODING" not in env


def test_headers_become_http_variables() -> None:
    request = make_request(headers=[(b"user-agent", b"t/1"), (b"x-forwarded-for", b"10.0.0.1"),
                                    (b"accept", b"text/html"), (b"accept", b"*/*")])
    env = env_of(request)
    assert env[b"HTTP_USER_AGENT"] == b"t/1"
    assert env[b"HTTP_X_FORWARDED_FOR"] == b"10.0.0.1"
    # §4.1.18: repeated fields merged into one value with the same meaning.
    assert env[b"HTTP_ACCEPT"] == b"text/html, */*"


def test_cookies_merged_with_semicolon() -> None:
    request = make_request(headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2; c=3")])
    assert env_of(request)[b"HTTP_COOKIE"] == b"a=1; b=2; c=3"


@pytest.mark.parametrize("name", [b"proxy", b"Proxy", b"PROXY", b"pRoXy"])
def test_httpoxy(name: bytes) -> None:
    # CVE-2016-5385: HTTP_PROXY is read as the proxy setting by many HTTP libraries.
    env = env_of(make_request(headers=[(name, b"http://evil.test:1/")]))
    assert b"HTTP_PROXY" not in env
    assert not any(b"evil" in v for v in env.values())


def test_header_names_with_underscores_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    request = make_request(headers=[(b"x_forwarded_for", b"6.6.6.6"), (b"x-forwarded-for", b"10.0.0.1"),
                                    (b"remote_user", b"admin"), (b"x.dot", b"1"), (b"x~tilde", b"1")])
    with caplog.at_level(logging.DEBUG, logger="frontd"):
        env = env_of(request)
    assert env[b"HTTP_X_FORWARDED_FOR"] == b"10.0.0.1"  # not merged with the impostor
    assert b"REMOTE_USER" not in env
    assert b"HTTP_REMOTE_USER" not in env
    assert not any(b"6.6.6.6" in v or b"admin" in v for v in env.values())
    assert not any(k.startswith(b"HTTP_X_DOT") or k.startswith(b"HTTP_X_TILDE") for k in env)
    logged = caplog.text
    assert "x_forwarded_for" in logged and "remote_user" in logged and "x.dot" in logged
    assert "client: 192.0.2.7" in logged


def test_authorization_passed_unless_withheld() -> None:
    request = make_request(headers=[(b"authorization", b"Basic dTpw"), (b"proxy-authorization", b"Basic eDp5")])
    env = env_of(request)
    assert env[b"HTTP_AUTHORIZATION"] == b"Basic dTpw"
    assert b"HTTP_PROXY_AUTHORIZATION" not in env  # §9.2
    env = env_of(request, pass_authorization=False)
    assert b"HTTP_AUTHORIZATION" not in env
    assert b"AUTH_TYPE" not in env and b"REMOTE_USER" not in env


def test_non_utf8_header_values_pass_as_bytes() -> None:
    env = env_of(make_request(headers=[(b"x-latin", b"caf\xe9 \xff")]))
    assert env[b"HTTP_X_LATIN"] == b"caf\xe9 \xff"


def test_utf8_path_info() -> None:
    env = env_of(make_request(), ScriptPaths("/cgi-bin/é.sh", "/ü", "", None))
    assert env[b"SCRIPT_NAME"] == "/cgi-bin/é.sh".encode()
    assert env[b"PATH_INFO"] == "/ü".encode()


def test_extra_comes_last_and_wins() -> None:
    extra = ((b"PATH", b"/usr/bin:/bin"),) + environ_pairs([("APP_MODE", "demo"), ("SERVER_NAME", "fixed.test")])
    env = env_of(make_request(), extra=extra)
    assert env[b"PATH"] == b"/usr/bin:/bin"
    assert env[b"APP_MODE"] == b"demo"
    assert env[b"SERVER_NAME"] == b"fixed.test"
    assert list(env)[-2:] == [b"PATH", b"APP_MODE"]


def test_nothing_from_the_server_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTD_SECRET_TOKEN", "s3cret")
    env = env_of(make_request())
    assert b"FRONTD_SECRET_TOKEN" not in env
    assert b"PATH" not in env  # only when the caller gives it (CGI adds the route's PATH)
