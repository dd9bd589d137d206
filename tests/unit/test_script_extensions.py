"""Script mode's `extensions`: the default taken from `index`, the config errors, and the walk
(`find_script`) that refuses a script ending otherwise (PROTOCOLS.md §4, CVE-2019-11043 row)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontd.config.load import ConfigError, load_config, summary
from frontd.config.model import Config, Route
from frontd.config.routes import index_extensions
from frontd.errors import Forbidden, NotFound
from frontd.handlers.gateway import NotAScript, find_script


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


def test_walk_ending_at_a_file_that_is_not_a_script(root: str) -> None:
    # Nothing after it and not named like a script: the caller may serve it as a static file.
    with pytest.raises(NotAScript) as info:
        find_script(root, "/", "/upload/a.jpg", ("index.php",), PHP)
    assert info.value.rel == "upload/a.jpg"
    # Path info after it, or a script's name on it: a plain 404.
    for path in ("/upload/a.jpg/x.php", "/upload/a.jpg/", "/disguised.php"):
        with pytest.raises(NotFound) as other:
            find_script(root, "/", path, ("index.php",), PHP)
        assert not isinstance(other.value, NotAScript), path


# -- the configuration's script extensions (CONFIG.md: "Script extensions") ---------------------


def write(tmp_path: Path, text: str) -> Config:
    for name in ("php", "cgi", "files"):
        (tmp_path / name).mkdir(exist_ok=True)
    path = tmp_path / "frontd.conf"
    path.write_text(text)
    return load_config(str(path))


def test_script_extensions_of_the_whole_file(tmp_path: Path) -> None:
    config = write(tmp_path, """
[[vhost]]
names = ["a.test"]
  [[vhost.route]]
  prefix = "/php/"
  fastcgi = "127.0.0.1:9000"
  root = "php"
  index = ["index.php"]
  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "cgi"
  interpreters = { ".py" = "python3", ".PL" = "python3" }
  [[vhost.route]]
  prefix = "/app/"
  scgi = "127.0.0.1:4000"
[[vhost]]
names = ["b.test"]
  [[vhost.route]]
  prefix = "/"
  fastcgi = "127.0.0.1:9000"
  root = "php"
  extensions = [".PHTML", ".php"]
  [[vhost.route]]
  prefix = "/any/"
  fastcgi = "127.0.0.1:9001"
  root = "php"
""")
    # Every vhost's, lower-cased, each once; an application mount and a route whose
    # extensions allow any file add none.
    assert config.script_extensions == (".phtml", ".php", ".pl", ".py")
    assert "script_extensions .phtml .php .pl .py  (never served as static files)" in summary(config)


def test_no_script_routes_no_script_extensions(tmp_path: Path) -> None:
    config = write(tmp_path, '[[vhost]]\nnames = ["a.test"]\n[[vhost.route]]\nprefix = "/f/"\nstatic = "files"\n')
    assert config.script_extensions == ()
    assert "script_extensions" not in summary(config)


# -- cgi = FILE: one program at a prefix ---------------------------------------------------------


def cgi_route(tmp_path: Path, target: str, extra: str = "") -> str:
    return f'[[vhost]]\nnames = ["a.test"]\n[[vhost.route]]\nprefix = "/git/"\ncgi = "{target}"\n{extra}\n'


def test_cgi_program_is_loaded_as_written(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "backend"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    os.symlink("backend", tmp_path / "bin" / "alias")
    route = only_route(write(tmp_path, cgi_route(tmp_path, "bin/alias")))
    # The path as written, made absolute: a multi-call program knows itself by its name.
    assert (route.program, route.directory) == (str(tmp_path / "bin" / "alias"), None)
    text = summary(write(tmp_path, cgi_route(tmp_path, "bin/alias")))
    assert f"cgi {tmp_path}/bin/alias (one program: SCRIPT_NAME=/git, PATH_INFO=the rest)" in text


def test_cgi_program_through_an_interpreter_needs_no_execute_bit(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print()\n")
    route = only_route(write(tmp_path, cgi_route(tmp_path, "app.py", 'interpreters = { ".py" = "python3" }')))
    assert route.program == str(tmp_path / "app.py")


@pytest.mark.parametrize("target,extra,message", [
    ("prog", 'index = ["index.sh"]', 'vhost[0].route[0].index: only applies to cgi = DIR (a directory of '
                                     "scripts), not to one program"),
    ("plain.txt", "", 'vhost[0].route[0].cgi: "{dir}/plain.txt" is not executable'),
    ("fifo", "", 'vhost[0].route[0].cgi: "{dir}/fifo" is neither a directory nor a regular file'),
    ("missing", "", 'vhost[0].route[0].cgi: directory or program "{dir}/missing" does not exist'),
])
def test_cgi_program_mistakes(tmp_path: Path, target: str, extra: str, message: str) -> None:
    (tmp_path / "prog").write_text("#!/bin/sh\n")
    (tmp_path / "prog").chmod(0o755)
    (tmp_path / "plain.txt").write_text("")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError) as info:
        write(tmp_path, cgi_route(tmp_path, target, extra))
    assert message.replace("{dir}", str(tmp_path)) in str(info.value)
