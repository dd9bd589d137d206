"""Nothing outside the document root is ever served: traversal spellings, symlinks, dot files.

A secret file is planted just outside the vhost root and outside the `static` alias directory
(and /etc/passwd is there anyway); every spelling of a traversal is sent raw, on the root and on
the alias, and must give 400 or 404 without a byte of either. Error bodies never show a path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, start_frontd
from tests.http_client import Answer, parse_one

SECRET = b"PLANTED-SECRET-7f3a9c"
PASSWD_MARK = b"root:"

CONFIG = """
[[vhost]]
names = ["site.test"]
root = "{root}"

  [[vhost.route]]
  prefix = "/alias/"
  static = "{alias}"

  [[vhost.route]]
  prefix = "/deep/alias/"
  static = "{alias}"

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{cgi}"

  [[vhost.route]]
  prefix = "/all/"
  static = "{root}"
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("traversal")
    (top / "secret.txt").write_bytes(SECRET)
    (top / "outside").mkdir()
    (top / "outside" / "secret.txt").write_bytes(SECRET)
    (top / "outside" / "index.html").write_bytes(SECRET)
    root = top / "www"
    root.mkdir()
    (root / "index.html").write_text("home\n")
    (root / "hello.txt").write_text("hello\n")
    (root / "sub").mkdir()
    (root / "sub" / "file.txt").write_text("sub file\n")
    # Dot files and dot directories that must never go out.
    (root / ".htpasswd").write_bytes(SECRET)
    (root / ".env").write_bytes(SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(SECRET)
    (root / ".git" / "HEAD").write_bytes(SECRET)
    (root / "sub" / ".hidden").write_bytes(SECRET)
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_text("Contact: mailto:security@site.test\n")
    (root / ".well-known" / ".secret").write_bytes(SECRET)
    # Symlinks: leaving the root (file, directory, relative, absolute) and staying inside it.
    (root / "out-file").symlink_to(top / "secret.txt")
    (root / "out-rel").symlink_to("../secret.txt")
    (root / "out-dir").symlink_to(top / "outside")
    (root / "loop").symlink_to("loop")
    (root / "in-file.txt").symlink_to("hello.txt")
    (root / "in-dir").symlink_to("sub")
    (root / "in-abs.txt").symlink_to(root / "sub" / "file.txt")
    (root / "to-dotfile").symlink_to(".htpasswd")
    (root / "to-dotdir").symlink_to(".git")
    (root / "sneaky").symlink_to("sub/../../secret.txt")
    (root / "evil-index").mkdir()
    (root / "evil-index" / "index.html").symlink_to(top / "secret.txt")
    (root / "good-index").mkdir()
    (root / "good-index" / "index.html").symlink_to("../hello.txt")
    cgi = root / "cgi-bin"
    cgi.mkdir()
    (cgi / "script.sh").write_bytes(b"#!/bin/sh\necho " + SECRET + b"\n")
    (root / "cgi-index").mkdir()
    (root / "cgi-index" / "index.html").symlink_to("../cgi-bin/script.sh")
    (root / "cgi-link.sh").symlink_to("cgi-bin/script.sh")
    alias = top / "alias"
    alias.mkdir()
    (alias / "index.html").write_text("alias\n")
    (alias / "inside.txt").write_text("alias inside\n")
    (alias / ".env").write_bytes(SECRET)
    (alias / "out").symlink_to(top / "secret.txt")
    (alias / "to-root").symlink_to(root / "hello.txt")  # another root: outside the alias
    return {"top": top, "root": root, "alias": alias, "cgi": cgi}


@pytest.fixture(scope="module")
def server(tree: dict[str, Path]) -> Iterator[Frontd]:
    server = start_frontd(tree["top"], CONFIG.format(root=tree["root"], alias=tree["alias"], cgi=tree["cgi"]))
    yield server
    server.stop()


def raw_get(server: Frontd, target: bytes, host: bytes = b"site.test") -> tuple[Answer, bytes]:
    out = server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    return parse_one(out), out


def assert_refused(server: Frontd, target: bytes, statuses: tuple[int, ...] = (400, 404)) -> None:
    answer, out = raw_get(server, target)
    assert answer.status in statuses, (target, answer.status)
    assert SECRET not in out, target
    assert PASSWD_MARK not in out, target
    assert str(server.conf.parent).encode() not in out, target


TRAVERSALS = [
    b"/../etc/passwd",
    b"/../../../../../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/%2E%2E/%2E%2E/etc/passwd",
    b"/.%2e/.%2e/etc/passwd",
    b"/%2e./%2e./etc/passwd",
    b"/%252e%252e/etc/passwd",
    b"/%252e%252e/%252e%252e/etc/passwd",
    b"/..%2fetc/passwd",
    b"/..%2Fetc%2Fpasswd",
    b"/%2e%2e%2fetc%2fpasswd",
    b"/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/..\\..\\etc\\passwd",
    b"/..%5c..%5cetc%5cpasswd",
    b"/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
    b"/%c0%ae%c0%ae/etc/passwd",
    b"/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    b"/%e0%80%ae%e0%80%ae/etc/passwd",
    b"/%c0%af../etc/passwd",
    b"/..%c0%afetc/passwd",
    b"/..%c1%9cetc/passwd",
    b"/%%32%65%%32%65/etc/passwd",
    b"/index.html%00.txt",
    b"/hello.txt%00",
    b"/%00/../etc/passwd",
    b"/..;/etc/passwd",
    b"/....//....//etc/passwd",
    b"/..%00/etc/passwd",
    b"/%u002e%u002e/etc/passwd",
    b"/.../etc/passwd",
    b"/..%09/etc/passwd",
]


def aimed_at_secret(spelling: bytes) -> bytes:
    """The same spelling aimed one level up, where the planted secret is."""
    return spelling.replace(b"etc/passwd", b"secret.txt").replace(b"etc%2fpasswd", b"secret.txt") \
        .replace(b"etc%2Fpasswd", b"secret.txt").replace(b"etc\\passwd", b"secret.txt") \
        .replace(b"etc%5cpasswd", b"secret.txt")


@pytest.mark.parametrize("spelling", TRAVERSALS, ids=lambda b: b.decode("latin-1"))
@pytest.mark.parametrize("prefix", [b"", b"/alias", b"/deep/alias", b"/all", b"/sub"])
def test_traversal_spellings(server: Frontd, prefix: bytes, spelling: bytes) -> None:
    assert_refused(server, prefix + spelling)
    assert_refused(server, prefix + aimed_at_secret(spelling))


@pytest.mark.parametrize("target", [
    b"http://site.test/../../etc/passwd",
    b"http://site.test/../secret.txt",
    b"http://site.test/alias/../../secret.txt",
    b"http://site.test/alias/%2e%2e/%2e%2e/secret.txt",
    b"http://site.test:80/%2e%2e/secret.txt",
    b"http://site.test/..%2fsecret.txt",
    b"http://site.test/%c0%ae%c0%ae/secret.txt",
    b"http://site.test/index.html%00.txt",
    b"http://site.test/.htpasswd",
    b"http://../secret.txt",
    b"http:/../secret.txt",
    b"../secret.txt",
    b"secret.txt",
])
def test_absolute_form_traversal(server: Frontd, target: bytes) -> None:
    assert_refused(server, target)


def test_dot_segments_that_stay_inside_are_resolved(server: Frontd) -> None:
    # Not every ".." is an attack: inside the root it is resolved before routing.
    for target in (b"/sub/../hello.txt", b"/sub/%2e%2e/hello.txt", b"/alias/../hello.txt",
                   b"/alias/x/../inside.txt", b"/sub/./file.txt"):
        answer, _ = raw_get(server, target)
        assert answer.status == 200, target
    assert raw_get(server, b"/alias/../hello.txt")[0].body == b"hello\n"  # "/hello.txt" of the root


@pytest.mark.parametrize("target", [
    b"/out-file", b"/out-rel", b"/out-dir/secret.txt", b"/out-dir/", b"/out-dir", b"/sneaky",
    b"/evil-index/", b"/alias/out", b"/alias/to-root", b"/loop", b"/loop/x",
    b"/all/out-file", b"/all/out-dir/secret.txt",
])
def test_symlink_leaving_the_root_is_refused(server: Frontd, target: bytes) -> None:
    assert_refused(server, target, (403, 404))


@pytest.mark.parametrize(("target", "body"), [
    (b"/in-file.txt", b"hello\n"),
    (b"/in-dir/file.txt", b"sub file\n"),
    (b"/in-abs.txt", b"sub file\n"),
    (b"/good-index/", b"hello\n"),
    (b"/all/in-dir/file.txt", b"sub file\n"),
])
def test_symlink_inside_the_root_is_served(server: Frontd, target: bytes, body: bytes) -> None:
    answer, _ = raw_get(server, target)
    assert answer.status == 200 and answer.body == body


def test_symlink_to_a_directory_redirects_to_its_slash(server: Frontd) -> None:
    answer, _ = raw_get(server, b"/in-dir")
    assert answer.status == 301 and answer.headers["location"] == "/in-dir/"


@pytest.mark.parametrize("target", [
    b"/.htpasswd", b"/.env", b"/.git/config", b"/.git/HEAD", b"/.git/", b"/.git",
    b"/sub/.hidden", b"/%2ehtpasswd", b"/%2Eenv", b"/.git%2fconfig", b"/.well-known/.secret",
    b"/to-dotfile", b"/to-dotdir/config", b"/alias/.env", b"/all/.git/config", b"/all/.htpasswd",
    b"/sub/../.env", b"/.git/../.env",
])
def test_dotfiles_are_refused(server: Frontd, target: bytes) -> None:
    assert_refused(server, target, (400, 403, 404))


def test_well_known_is_served(server: Frontd) -> None:
    # RFC 8615: the one dot directory meant to be public (ACME challenges, security.txt).
    answer, _ = raw_get(server, b"/.well-known/security.txt")
    assert answer.status == 200 and answer.body.startswith(b"Contact:")


@pytest.mark.parametrize("target", [b"/all/cgi-bin/script.sh", b"/all/cgi-bin/", b"/all/cgi-bin",
                                    b"/cgi-index/", b"/cgi-link.sh", b"/all/cgi-link.sh"])
def test_cgi_directory_is_never_served_as_files(server: Frontd, target: bytes) -> None:
    assert_refused(server, target, (301, 403, 404))
    answer, _ = raw_get(server, target)
    if answer.status == 301:
        assert_refused(server, answer.headers["location"].encode(), (403, 404))


def test_error_bodies_never_show_paths(server: Frontd, tree: dict[str, Path]) -> None:
    targets = [b"/nope", b"/out-file", b"/.env", b"/../x", b"/sub/nope/", b"/hello.txt/x", b"/loop",
               b"/" + b"a" * 300, b"/" + b"a/" * 200, b"/%ff", b"/evil-index/"]
    for target in targets:
        answer, out = raw_get(server, target)
        assert answer.status >= 400, target
        for secret in (str(tree["top"]).encode(), str(tree["root"]).encode(), b"Traceback", b"Errno"):
            assert secret not in out, (target, secret)
    # Through requests as well, with methods the handler refuses.
    for method in ("POST", "PUT", "DELETE"):
        response = requests.request(method, server.url("/out-file"), timeout=5)
        assert response.status_code in (403, 404, 405)
        assert str(tree["top"]) not in response.text


def test_file_replaced_by_symlink_is_refused(server: Frontd, tree: dict[str, Path]) -> None:
    """What is checked is what is served: a name that became a symlink to outside is refused."""
    path = tree["root"] / "swapped.txt"
    path.write_text("inside\n")
    assert raw_get(server, b"/swapped.txt")[0].body == b"inside\n"
    path.unlink()
    path.symlink_to(tree["top"] / "secret.txt")
    try:
        assert_refused(server, b"/swapped.txt", (403, 404))
    finally:
        path.unlink()


def test_unreadable_file_is_refused_without_detail(server: Frontd, tree: dict[str, Path]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tree["root"] / "locked.txt"
    path.write_bytes(SECRET)
    path.chmod(0)
    assert_refused(server, b"/locked.txt", (403, 404))
