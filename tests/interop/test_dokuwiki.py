"""DokuWiki from Debian (`apt-get install dokuwiki`) on php-fpm behind frontd, with its
`userewrite = 1` URLs: the rules of its .htaccess written as frontd rewrites and `try_files`.

The wiki's files are copied into the test's directory (the program, its configuration and its
data), so that nothing of the installed wiki is changed; the page is browsed, edited and saved.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.interop.conftest import Peer, start_php_fpm

DOKUWIKI = Path("/usr/share/dokuwiki")

# DokuWiki's .htaccess.dist, as frontd rules: the RewriteRules in order, and the final
# "RewriteCond !-f, !-d, RewriteRule (.*) doku.php?id=$1 [QSA]" as try_files.
RULES = """
  [[vhost.rewrite]]
  match = '^/_media/(.*)$'
  to = "/lib/exe/fetch.php?media=$1"

  [[vhost.rewrite]]
  match = '^/_detail/(.*)$'
  to = "/lib/exe/detail.php?media=$1"

  [[vhost.rewrite]]
  match = '^/_export/([^/]+)/(.*)$'
  to = "/doku.php?do=export_$1&id=$2"

  [[vhost.rewrite]]
  match = '^/$'
  to = "/doku.php"

  [[vhost.rewrite]]
  match = '^/index\\.php$'
  to = "/doku.php"
"""


@pytest.fixture(scope="module")
def wiki(workdir: Path) -> Path:
    if not (DOKUWIKI / "doku.php").exists():
        pytest.skip("dokuwiki is not installed (tests/run.sh installs it)")
    top = workdir / "dw"
    shutil.copytree(DOKUWIKI, top / "app", symlinks=False, ignore=shutil.ignore_patterns(".htaccess"))
    shutil.copytree("/etc/dokuwiki", top / "conf", symlinks=False)
    shutil.copytree("/var/lib/dokuwiki/data", top / "data", symlinks=False)
    # Debian's preload.php points DokuWiki at /etc/dokuwiki; this copy has its own.
    (top / "app" / "inc" / "preload.php").write_text(
        f"<?php\nif(!defined('DOKU_CONF')) define('DOKU_CONF', '{top}/conf/');\n")
    (top / "conf" / "local.php").write_text(
        "<?php\n$conf['title'] = 'frontd DokuWiki';\n"
        f"$conf['savedir'] = '{top}/data';\n$conf['useacl'] = 0;\n$conf['userewrite'] = 1;\n")
    return top


@pytest.fixture(scope="module")
def server(peers: Callable[..., Peer], workdir: Path, wiki: Path, frontd_module: Callable[..., Frontd]) -> Frontd:
    fpm = start_php_fpm(peers, workdir, {"a": f"unix:{workdir}/php-dw.sock"})
    return frontd_module(f"""
[[vhost]]
names = ["wiki.test"]
{RULES}
  [[vhost.route]]
  prefix = "/"
  fastcgi = "{fpm.addresses[0]}"
  root = "{wiki}/app"
  index = ["doku.php"]
  try_files = ["$uri", "$uri/", "/doku.php?id=$uri"]
""")


def get(server: Frontd, path: str, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).get(server.url(path), headers={"Host": "wiki.test"}, timeout=30,
                                     allow_redirects=False)


def test_browse_the_front_page_and_what_it_links_to(server: Frontd) -> None:
    page = get(server, "/")
    assert page.status_code == 200, page.text[:500]
    assert "<title>start [frontd DokuWiki]</title>" in page.text
    links = {html.unescape(link) for link in re.findall(r'(?:href|src)="(/[^/"][^"]*)"', page.text)}
    # Pretty URLs are what the wiki writes once userewrite is on.
    assert {"/start?do=edit", "/_export/raw/start"} <= links, links
    for link in sorted(links):
        response = get(server, link)
        assert response.status_code == 200, (link, response.status_code)
    # Files of the wiki are static files; its PHP runs, never sent.
    logo = get(server, "/lib/tpl/dokuwiki/images/logo.png")
    assert (logo.status_code, logo.headers["content-type"]) == (200, "image/png")
    assert "<?php" not in get(server, "/doku.php").text
    assert "<?php" not in get(server, "/conf/local.php").text  # not under the root: a wiki page


def test_edit_and_save_a_page(server: Frontd, wiki: Path) -> None:
    session = requests.Session()
    edit = get(server, "/frontd_test?do=edit", session)
    assert edit.status_code == 200
    form = re.search(r'<form id="dw__editform" action="([^"]+)"(.*?)</form>', edit.text, re.DOTALL)
    assert form is not None, edit.text[:500]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(2)))
    fields.update({"wikitext": "====== Saved through frontd ======\nHello from the test.\n",
                   "summary": "test", "do[save]": "1"})
    saved = session.post(server.url(html.unescape(form.group(1))), data=fields, headers={"Host": "wiki.test"},
                         timeout=30, allow_redirects=False)
    assert saved.status_code in (302, 303), (saved.status_code, saved.text[:500])
    assert saved.headers["location"].endswith("/frontd_test")
    page = get(server, "/frontd_test", session)
    assert page.status_code == 200 and "Saved through frontd" in page.text
    raw = get(server, "/_export/raw/frontd_test")
    assert raw.text == "====== Saved through frontd ======\nHello from the test.\n"
    assert (wiki / "data" / "pages" / "frontd_test.txt").read_text().startswith("====== Saved through frontd")
