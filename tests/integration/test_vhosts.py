"""Virtual hosts and routes at the socket: Host and absolute-form targets pick the vhost, the
longest whole-segment prefix picks the route. Each vhost root and route directory serves a file
naming itself, so the body says where a request went."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, start_frontd
from tests.http_client import RawClient, parse_one

VHOSTS = ["first", "exact", "wild", "deepwild", "fallback", "v6"]

CONFIG = """
[[vhost]]
names = ["first.test"]
root = "{d}/first"

[[vhost]]
names = ["example.test", "www.example.test"]
root = "{d}/exact"

  [[vhost.route]]
  prefix = "/fcgi/"
  static = "{d}/fcgi"

  [[vhost.route]]
  prefix = "/fcgi/deep"
  static = "{d}/fcgideep"

  [[vhost.route]]
  prefix = "/caf\u00e9/"
  static = "{d}/cafe"

[[vhost]]
names = ["*.example.test"]
root = "{d}/wild"

[[vhost]]
names = ["*.deep.example.test"]
root = "{d}/deepwild"

[[vhost]]
names = ["fallback.test"]
default = true
root = "{d}/fallback"

[[vhost]]
names = ["[::1]", "127.0.0.2"]
root = "{d}/v6"
"""


def make_dirs(top: Path, names: list[str]) -> None:
    for name in names:
        (top / name).mkdir()
        (top / name / "index.html").write_text(name)
        (top / name / "who.txt").write_text(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontd]:
    top = tmp_path_factory.mktemp("vhosts")
    make_dirs(top, [*VHOSTS, "fcgi", "fcgideep", "cafe"])
    (top / "exact" / "fcgix").write_text("exact-root-fcgix")
    (top / "exact" / "fcgix.txt").write_text("exact-root-fcgix.txt")
    (top / "fcgi" / "deeper.txt").write_text("fcgi-deeper")
    server = start_frontd(top, CONFIG.format(d=top))
    yield server
    server.stop()


def who(server: Frontd, head: bytes) -> str:
    """The body of the answer to a raw request head (one request, connection closed)."""
    answer = parse_one(server.raw(head))
    assert answer.status == 200, (head, answer.status)
    return answer.body.decode()


@pytest.mark.parametrize(("host", "expected"), [
    ("example.test", "exact"),
    ("www.example.test", "exact"),
    ("first.test", "first"),
    ("EXAMPLE.TEST", "exact"),
    ("Www.Example.Test", "exact"),
    ("example.test:8080", "exact"),
    ("example.test:", "exact"),
    ("example.test.", "exact"),
    ("example.test.:80", "exact"),
    ("a.example.test", "wild"),
    ("A.EXAMPLE.TEST", "wild"),
    ("a.b.example.test", "wild"),
    ("deep.example.test", "wild"),
    ("x.deep.example.test", "deepwild"),
    ("y.x.deep.example.test.:1", "deepwild"),
    ("notexample.test", "fallback"),
    ("unknown.test", "fallback"),
    ("127.0.0.1", "fallback"),
    ("127.0.0.2:8080", "v6"),
    ("[::1]", "v6"),
    ("[0:0::1]:80", "v6"),
])
def test_vhost_by_host_header(server: Frontd, host: str, expected: str) -> None:
    head = f"GET /who.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert who(server, head) == expected


def test_http10_without_host_goes_to_the_default(server: Frontd) -> None:
    assert who(server, b"GET /who.txt HTTP/1.0\r\n\r\n") == "fallback"


def test_empty_host_goes_to_the_default(server: Frontd) -> None:
    assert who(server, b"GET /who.txt HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n") == "fallback"


@pytest.mark.parametrize(("target", "expected"), [
    ("http://www.example.test/who.txt", "exact"),
    ("http://WWW.EXAMPLE.TEST:8080/who.txt", "exact"),
    ("http://a.example.test./who.txt", "wild"),
    ("http://first.test/who.txt", "first"),
    ("http://nowhere.test/who.txt", "fallback"),
    ("HTTP://first.test/who.txt", "first"),
    ("http://first.test", "first"),  # empty path: "/" (RFC 9112 §3.2.1), the index
])
def test_absolute_form_routes_by_target_host(server: Frontd, target: str, expected: str) -> None:
    # RFC 9112 §3.2.2: the target's authority wins over the Host header.
    head = f"GET {target} HTTP/1.1\r\nHost: fallback.test\r\nConnection: close\r\n\r\n".encode()
    assert who(server, head) == expected


def test_vhost_per_request_on_one_connection(server: Frontd) -> None:
    with server.connect() as sock:
        client = RawClient(sock)
        for host, expected in (("first.test", "first"), ("a.example.test", "wild"),
                               ("example.test", "exact"), ("zzz.test", "fallback")):
            client.send(f"GET /who.txt HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert client.read().body.decode() == expected


def test_requests_library(server: Frontd) -> None:
    response = requests.get(server.url("/who.txt"), headers={"Host": "www.example.test"}, timeout=5)
    assert response.text == "exact"
    assert requests.get(server.url("/who.txt"), timeout=5).text == "fallback"  # Host: 127.0.0.1:PORT


@pytest.mark.parametrize(("path", "expected"), [
    ("/fcgi/who.txt", "fcgi"),
    ("/fcgi/", "fcgi"),
    ("/fcgi/deeper.txt", "fcgi-deeper"),
    ("/fcgi/deep/who.txt", "fcgideep"),
    ("/fcgi/deep/", "fcgideep"),
    ("/fcgix", "exact-root-fcgix"),
    ("/fcgix.txt", "exact-root-fcgix.txt"),
    ("/who.txt", "exact"),
    ("/%66cgi/who.txt", "fcgi"),
    ("/x/../fcgi/who.txt", "fcgi"),
    ("/fcgi//deep/who.txt", "fcgideep"),
    ("/fcgi/./deep/who.txt", "fcgideep"),
    ("/fcgi/deep/../who.txt", "fcgi"),
    ("/caf%C3%A9/who.txt", "cafe"),
])
def test_routes_by_longest_whole_segment_prefix(server: Frontd, path: str, expected: str) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()
    assert who(server, head) == expected


@pytest.mark.parametrize(("path", "location"), [("/fcgi", "/fcgi/"), ("/fcgi/deep", "/fcgi/deep/"),
                                                ("/fcgi?a=b", "/fcgi/?a=b")])
def test_prefix_without_slash_is_the_route_directory(server: Frontd, path: str, location: str) -> None:
    answer = parse_one(server.raw(f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode()))
    assert answer.status == 301 and answer.headers["location"] == location


def test_routes_belong_to_their_vhost(server: Frontd) -> None:
    answer = parse_one(server.raw(b"GET /fcgi/who.txt HTTP/1.1\r\nHost: first.test\r\nConnection: close\r\n\r\n"))
    assert answer.status == 404


def test_first_vhost_takes_the_rest_without_a_default(frontd, tmp_path: Path) -> None:
    make_dirs(tmp_path, ["one", "two"])
    server = frontd(f'[[vhost]]\nnames = ["one.test"]\nroot = "{tmp_path}/one"\n\n'
                    f'[[vhost]]\nnames = ["two.test"]\nroot = "{tmp_path}/two"\n')
    for host, expected in (("two.test", "two"), ("one.test", "one"), ("three.test", "one")):
        assert requests.get(server.url("/who.txt"), headers={"Host": host}, timeout=5).text == expected
    assert who(server, b"GET /who.txt HTTP/1.0\r\n\r\n") == "one"
