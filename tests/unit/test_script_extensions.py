"""Script mode's `extensions`: the default taken from `index`, the config errors, and the walk
(`find_script`) that refuses a script ending otherwise (PROTOCOLS.md §4, CVE-2019-11043 row)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontd.config.load import ConfigError, index_extensions, load_config, summary
from frontd.config.model import Config, Route
from frontd.errors import Forbidden, NotFound
from frontd.handlers.gateway import find_script


@pytest.mark.parametrize("index,expected", [
    ((), ()),
    (("index.php",), (".php",)),
    (("index.php", "index.html", "default.php"), (".php", ".html")),
    (("index",), ()),  # fcgiwrap: CGI scripts without an extension
    (("index", "index.cgi"), (".cgi",)),
    ((".htaccess",), ()),  # a dot file's name is not an extension
    (("app.tar.gz",), (".gz",)),
])
def test_default_from_index_names(index: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert index_extensions(index) == expected


def load(tmp_path: Path, route: str, kind: str = "fastcgi") -> Config:
    (tmp_path / "php").mkdir(exist_ok=True)
    target = '"127.0.0.1:9000"' if kind != "cgi" else '"php"'
    path = tmp_path / "frontd.conf"
    path.write_text(f'[[vhost]]\nnames = ["a.test"]\n[[vhost.route]]\nprefix = "/"\n{kind} = {target}\n{route}\n')
    return load_config(str(path))


def only_route(config: Config) -> Route:
    (route,) = config.vhosts[0].routes
    return route


@pytest.mark.parametrize("route,expected", [
    ('root = "php"\nindex = ["index.php"]', (".php",)),
    ('root = "php"', ()),
    ('root = "php"\nindex = ["index"]', ()),
    ('root = "php"\nindex = ["index.php"]\nextensions = [".php", ".phtml"]', (".php", ".phtml")),
    ('root = "php"\nindex = ["index.php"]\nextensions = []', ()),
    ("", ()),  # an application mount has no scripts to check
])
def test_loaded_route_extensions(tmp_path: Path, route: str, expected: tuple[str, ...]) -> None:
    assert only_route(load(tmp_path, route)).extensions == expected


@pytest.mark.parametrize("kind", ["scgi", "uwsgi"])
def test_every_socket_gateway_infers_them(tmp_path: Path, kind: str) -> None:
    assert only_route(load(tmp_path, 'root = "php"\nindex = ["index.php"]', kind)).extensions == (".php",)


@pytest.mark.parametrize("route,kind,message", [
    ('extensions = [".php"]', "fastcgi", 'vhost[0].route[0].extensions: only applies with root (script mode)'),
    ('extensions = [".php"]', "cgi", "vhost[0].route[0].extensions: not an option of cgi routes "
                                     "(only of fastcgi, scgi and uwsgi routes)"),
    ('root = "php"\nextensions = ".php"', "fastcgi", "vhost[0].route[0].extensions: expected an array"),
    ('root = "php"\nextensions = ["php"]', "fastcgi", 'vhost[0].route[0].extensions[0]: an extension must start '
                                                      'with "." and contain no "/"'),
    ('root = "php"\nextensions = [".php", "./x"]', "fastcgi", "vhost[0].route[0].extensions[1]: "),
    ('root = "php"\nextensions = [1]', "fastcgi", "vhost[0].route[0].extensions[0]: expected an extension"),
])
def test_config_errors(tmp_path: Path, route: str, kind: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, route, kind)
    assert message in str(info.value)


def test_summary_shows_the_effective_extensions(tmp_path: Path) -> None:
    assert "extensions=.php" in summary(load(tmp_path, 'root = "php"\nindex = ["index.php"]'))
    assert "extensions=(any)" in summary(load(tmp_path, 'root = "php"'))
    assert "extensions=" not in summary(load(tmp_path, ""))


@pytest.fixture
def root(tmp_path: Path) -> str:
    top = tmp_path / "root"
    (top / "upload").mkdir(parents=True)
    (top / "sub").mkdir()
    (top / "index.php").write_text("")
    (top / "upload" / "a.jpg").write_text("")
    (top / "sub" / "index.html").write_text("")
    (top / "sub" / "index.php").write_text("")
    os.symlink("upload/a.jpg", top / "disguised.php")
    os.symlink("index.php", top / "alias")
    return os.path.realpath(top)


PHP = (".php",)


@pytest.mark.parametrize("path", ["/upload/a.jpg/x.php", "/upload/a.jpg", "/disguised.php", "/alias/x"])
def test_walk_refuses_a_script_ending_otherwise(root: str, path: str) -> None:
    with pytest.raises(NotFound, match="does not end in .php"):
        find_script(root, "/", path, ("index.php",), PHP)


def test_walk_allows_a_matching_script_with_path_info(root: str) -> None:
    match = find_script(root, "/", "/index.php/x/y", ("index.php",), PHP)
    assert (match.filename, match.script_name, match.path_info) == (f"{root}/index.php", "/index.php", "/x/y")


def test_index_names_that_do_not_match_are_skipped(root: str) -> None:
    match = find_script(root, "/", "/sub/", ("index.html", "index.php"), PHP)
    assert match.filename == f"{root}/sub/index.php"
    with pytest.raises(Forbidden):
        find_script(root, "/", "/sub/", ("index.html",), PHP)


def test_no_extensions_allow_any_file(root: str) -> None:
    match = find_script(root, "/", "/upload/a.jpg/x.php", ())
    assert (match.filename, match.path_info) == (f"{root}/upload/a.jpg", "/x.php")
