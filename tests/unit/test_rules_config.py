"""Site rules in frontd.conf: redirect routes, rewrites, try_files and error_pages, as `-t` sees them;
and the rewrite rules' matching and substitution without a server."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from frontd.config.load import summary
from frontd.config.model import RewriteRule
from frontd.errors import URITooLong
from frontd.http.patterns import MAX_REWRITE_INPUT, RuleError, compile_pattern
from frontd.rules.rewrite import Rewrites
from tests.conftest import REPO
from tests.unit.test_config import error as config_error
from tests.unit.test_config import load, site  # noqa: F401 (a fixture)

HEAD = '[[vhost]]\nroot = "www"\n'


def error(site: Path, text: str) -> str:
    """The message without the file name in front."""
    return config_error(site, text).split(": ", 1)[1]


def rewrite(body: str) -> str:
    return HEAD + "[[vhost.rewrite]]\n" + body


def test_good_rules_load_and_show(site: Path) -> None:
    config = load(site, HEAD + """
try_files = ["$uri", "$uri/", "=404"]
error_pages = { 404 = "/e/404.html", 502 = "/e/50x.html" }
[[vhost.rewrite]]
match = '^/blog/(\\d+)$'
to = "/index.php?p=$1"
[[vhost.rewrite]]
match = '^/old/(?P<rest>.*)$'
to = "https://example.com/${rest}"
status = 308
[[vhost.route]]
prefix = "/old/"
redirect = "https://example.com/new/"
[[vhost.route]]
prefix = "/files/"
static = "www"
try_files = ["$uri", "/index.html"]
error_pages = { 404 = "/files/404.html", 403 = "/e/403.html" }
""")
    vhost = config.vhosts[0]
    assert vhost.rewrites == (RewriteRule(r"^/blog/(\d+)$", "/index.php?p=$1", None, "vhost[0].rewrite[0]"),
                              RewriteRule("^/old/(?P<rest>.*)$", "https://example.com/${rest}", 308,
                                          "vhost[0].rewrite[1]"))
    redirect, files = vhost.routes
    assert (redirect.kind, redirect.redirect, redirect.redirect_status) == ("redirect", "https://example.com/new/", 301)
    # The route's table over the vhost's, status by status.
    assert files.error_pages == ((403, "/e/403.html"), (404, "/files/404.html"), (502, "/e/50x.html"))
    assert redirect.error_pages == vhost.error_pages
    text = summary(config)
    assert "redirect https://example.com/new/ (status 301" in text
    assert 'rewrite "^/blog/(\\\\d+)$" -> "/index.php?p=$1" (internal)' in text
    assert "try_files $uri /index.html" in text


@pytest.mark.parametrize(("text", "expected"), [
    (rewrite("match = '(a+)+$'\nto = '/x'\n"), "vhost[0].rewrite[0]: regex '(a+)+$' repeats a part that itself repeats"),
    (rewrite("match = '^/(?:x|y*)*$'\nto = '/x'\n"), "vhost[0].rewrite[0]: regex '^/(?:x|y*)*$' repeats"),
    (rewrite("match = '^/(x'\nto = '/x'\n"), "vhost[0].rewrite[0]: bad regex '^/(x': missing ), unterminated"),
    (rewrite("match = '^/(x)'\nto = '/$2'\n"), "vhost[0].rewrite[0]: to = '/$2': $2 but the regex has 1 group(s)"),
    (rewrite("match = '^/(x)'\nto = '/${y}'\n"), "vhost[0].rewrite[0]: to = '/${y}': no group named 'y'"),
    (rewrite("match = '^/(x)'\nto = '/$x'\n"), "vhost[0].rewrite[0]: to = '/$x': a $ must be"),
    (rewrite("match = '^/(x)'\nto = 'x'\n"), "vhost[0].rewrite[0]: to = 'x': an internal rewrite goes to a path"),
    (rewrite("match = '^/(x)'\nto = 'https://$1/'\nstatus = 301\n"), "vhost[0].rewrite[0]: to = 'https://$1/': a redirect"),
    (rewrite("match = '^/(x)'\nto = '/y'\nstatus = 200\n"), "vhost[0].rewrite[0].status: expected one of 301, 302"),
    (rewrite("match = '^/'\n"), 'vhost[0].rewrite[0]: missing key "to"'),
    (rewrite("match = '^/'\nto = '/'\nflags = 1\n"), 'vhost[0].rewrite[0]: unknown key "flags"'),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nstatic = "www"\nstatus = 301\n',
     "vhost[0].route[0].status: not an option of static routes (only of redirect routes)"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nredirect = "//evil.test/"\n', "vhost[0].route[0].redirect: a path starts"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nredirect = "https://x.test/?a=1"\n',
     "vhost[0].route[0].redirect: a URL without spaces"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nredirect = "javascript:alert(1)"\n',
     'vhost[0].route[0].redirect: expected a path ("/new/") or an http:// or https:// URL'),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nredirect = "/b/"\nstatus = 200\n', "vhost[0].route[0].status: expected one of"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nproxy = "http://127.0.0.1:9"\ntry_files = ["$uri", "=404"]\n',
     "vhost[0].route[0].try_files: not an option of proxy routes"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nfastcgi = "127.0.0.1:9"\ntry_files = ["$uri", "=404"]\n',
     "vhost[0].route[0].try_files: only applies with root"),
    (HEAD + 'try_files = ["$uri"]\n', "vhost[0].try_files: expected an array of two or more entries"),
    (HEAD + 'try_files = ["$uri", "=200"]\n', 'vhost[0].try_files[1]: expected "=" and an error status'),
    (HEAD + 'try_files = ["$uri/../x", "=404"]\n', 'vhost[0].try_files[0]: must not contain "." or ".."'),
    (HEAD + 'try_files = ["$args", "=404"]\n', "vhost[0].try_files[0]: the variables are $uri"),
    ('[[vhost]]\n[[vhost.route]]\nprefix = "/"\nstatic = "www"\n[vhost.error_pages]\n"404" = "/e.html"\n'
     'try_files = ["$uri", "=404"]\n', "vhost[0].error_pages.try_files: expected an error status"),
    ('[[vhost]]\ntry_files = ["$uri", "=404"]\n[[vhost.route]]\nprefix = "/"\nstatic = "www"\n',
     "vhost[0].try_files: only applies with root"),
    (HEAD + 'error_pages = { 200 = "/x.html" }\n', "vhost[0].error_pages.200: expected an error status"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nstatic = "www"\nintercept_errors = true\n',
     "vhost[0].route[0].intercept_errors: not an option of static routes"),
    (HEAD + '[[vhost.route]]\nprefix = "/a/"\nfastcgi = "127.0.0.1:9"\nintercept_errors = true\n',
     "vhost[0].route[0].intercept_errors: no error_pages on the route or its vhost"),
    (HEAD + 'error_pages = { 404 = "x.html" }\n', 'vhost[0].error_pages.404: must start with "/"'),
])
def test_mistakes(site: Path, text: str, expected: str) -> None:
    assert error(site, text).startswith(expected)


def rules(*items: tuple[str, str, int | None]) -> Rewrites:
    return Rewrites(tuple(RewriteRule(m, t, s, f"r{i}") for i, (m, t, s) in enumerate(items)))


def test_first_match_wins_and_groups_are_encoded() -> None:
    r = rules((r"^/a/(.*)$", "/x/$1?q=$1", None), (r"^/a", "/never", None))
    rule, target = r.apply("/a/b c?&=#%", "k=v")  # type: ignore[misc]
    assert rule.key == "r0"
    assert target == "/x/b%20c%3F&=%23%25?q=b%20c%3F%26%3D%23%25&k=v"
    assert r.apply("/b", "") is None


def test_external_target_never_scheme_relative() -> None:
    r = rules((r"^/x(.*)$", "/$1", 301))
    assert r.apply("/x/evil.test", "") == (r.rules[0].rule, "/evil.test")


def test_input_bound() -> None:
    r = rules((r"^/(\w+)$", "/$1", None))
    assert r.apply("/" + "a" * (MAX_REWRITE_INPUT - 1), "") is not None
    with pytest.raises(URITooLong):
        r.apply("/" + "a" * MAX_REWRITE_INPUT, "")


def test_refused_shapes_and_what_the_bound_leaves() -> None:
    for pattern in (r"(a+)+$", r"(\w*)*x", r"(?:a|b+){2,}", r"((ab)*)+", r"(?=(a+)+)x"):
        with pytest.raises(RuleError):
            compile_pattern(pattern)
    # Bounded repetition of a single item, repetition beside repetition: accepted.
    for pattern in (r"^/(\d+)/(\w+)$", r"^/(ab?c){2}$", r"^/blog/(?P<slug>[^/]+)/?$", r"^/(.*)\.html$"):
        compile_pattern(pattern)
    # Polynomial backtracking is measured on probe paths: cubic is refused, quadratic (about
    # 10 ms at the bound) is accepted.
    with pytest.raises(RuleError, match="backtracks too much"):
        compile_pattern(r"^/(.*)(.*)(.*)x$")
    with pytest.raises(RuleError, match="backtracks too much"):
        compile_pattern(r"^/blog/(.*)(.*)(.*)x$")
    worst = compile_pattern(r"^/(.*)(.*)x$")
    started = time.monotonic()
    worst.search("/" + "a" * (MAX_REWRITE_INPUT - 1))
    assert time.monotonic() - started < 1.0


def test_docs_example_loads(tmp_path: Path) -> None:
    """The example at the top of docs/rules.md's section is a working file."""
    text = (REPO / "docs" / "rules.md").read_text()
    block = re.search(r"## Redirects, rewrites.*?```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    for name in ("www", "wordpress"):
        (tmp_path / name).mkdir()
    conf = block.group(1).replace("/srv/", f"{tmp_path}/")
    config = load(tmp_path, conf)
    vhost = config.vhosts[0]
    assert [rule.status for rule in vhost.rewrites] == [None, 301]
    assert vhost.routes[1].try_files == ("$uri", "$uri/", "/index.php?$query")
    assert dict(vhost.routes[1].error_pages)[404] == "/not-found.php"
