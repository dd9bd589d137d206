"""`x_sendfile` (gateway and proxy routes) and `internal` (static routes): what loads, what is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontd.config.load import ConfigError, load_config
from frontd.config.summary import summary
from frontd.http.file_answer import file_answer


def load_route(tmp_path: Path, body: str) -> str | tuple[str, ...] | bool:
    (tmp_path / "private").mkdir(exist_ok=True)
    (tmp_path / "cgi-bin").mkdir(exist_ok=True)
    conf = tmp_path / "frontd.conf"
    conf.write_text(f'[[vhost]]\nnames = ["example.test"]\n[[vhost.route]]\n{body}\n')
    try:
        route = load_config(str(conf)).vhosts[0].routes[0]
    except ConfigError as exc:
        return str(exc).split(": ", 1)[1]
    return route.x_sendfile if "x_sendfile" in body else route.internal


@pytest.mark.parametrize("kind", ['cgi = "cgi-bin"', 'fastcgi = "127.0.0.1:9000"', 'scgi = "unix:/run/a.sock"',
                                  'uwsgi = "127.0.0.1:3031"', 'proxy = "http://127.0.0.1:8080"'])
def test_directories_on_gateway_and_proxy_routes(tmp_path: Path, kind: str) -> None:
    private = tmp_path / "private"
    private.mkdir()
    (tmp_path / "link").symlink_to(private)
    got = load_route(tmp_path, f'prefix = "/app/"\n{kind}\nx_sendfile = ["{private}", "{tmp_path}/link"]')
    # Real paths, each once: the link is the same directory.
    assert got == (os.path.realpath(private),)


@pytest.mark.parametrize(("body", "message"), [
    ('x_sendfile = "private"', 'vhost[0].route[0].x_sendfile: must be an absolute directory, got "private"'),
    ('x_sendfile = ["{tmp}/absent"]', 'vhost[0].route[0].x_sendfile[0]: directory "{tmp}/absent" does not exist'),
    ('x_sendfile = ["{tmp}/frontd.conf"]', 'vhost[0].route[0].x_sendfile[0]: "{tmp}/frontd.conf" is not a directory'),
    ("x_sendfile = []", "vhost[0].route[0].x_sendfile: empty array; give one or more absolute directories"),
    ("x_sendfile = true", ("vhost[0].route[0].x_sendfile: expected an absolute directory or an array of "
                           "absolute directories, got true")),
])
def test_bad_directories(tmp_path: Path, body: str, message: str) -> None:
    text = body.replace("{tmp}", str(tmp_path))
    got = load_route(tmp_path, f'prefix = "/app/"\ncgi = "cgi-bin"\n{text}')
    assert got == message.replace("{tmp}", str(tmp_path))


def test_refused_on_static_and_redirect_routes(tmp_path: Path) -> None:
    assert load_route(tmp_path, f'prefix = "/s/"\nstatic = "private"\nx_sendfile = ["{tmp_path}"]') == (
        "vhost[0].route[0].x_sendfile: not an option of static routes "
        "(only of cgi, fastcgi, scgi, uwsgi and proxy routes)")
    assert load_route(tmp_path, 'prefix = "/r/"\nredirect = "https://example.test/"\nx_sendfile = "/"') == (
        "vhost[0].route[0].x_sendfile: not an option of redirect routes "
        "(only of cgi, fastcgi, scgi, uwsgi and proxy routes)")


def test_internal_only_on_static_routes(tmp_path: Path) -> None:
    assert load_route(tmp_path, 'prefix = "/p/"\nstatic = "private"\ninternal = true') is True
    assert load_route(tmp_path, 'prefix = "/p/"\nstatic = "private"') is False
    assert load_route(tmp_path, 'prefix = "/p/"\nproxy = "http://127.0.0.1:8080"\ninternal = true') == (
        "vhost[0].route[0].internal: not an option of proxy routes (only of static routes)")
    assert load_route(tmp_path, 'prefix = "/p/"\nstatic = "private"\ninternal = "yes"') == (
        'vhost[0].route[0].internal: expected true or false, got "yes"')


def test_file_answer_splits_the_fields() -> None:
    assert file_answer([(b"Content-Type", b"text/plain"), (b"X-Other", b"1")]) is None
    answer = file_answer([(b"Content-Type", b"application/pdf"), (b"X-Sendfile", b"/srv/a.pdf"),
                          (b"Content-Length", b"3"), (b"ETag", b'"b"'), (b"Last-Modified", b"x"),
                          (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Connection", b"close"),
                          (b"Content-Disposition", b"attachment")])
    assert answer is not None
    assert answer.fields == ((b"x-sendfile", b"/srv/a.pdf"),)
    assert answer.kept == [(b"content-type", b"application/pdf"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                           (b"content-disposition", b"attachment")]
    both = file_answer([(b"X-Accel-Redirect", b"/p/a"), (b"X-Sendfile", b"/srv/a")])
    assert both is not None and [name for name, _ in both.fields] == [b"x-accel-redirect", b"x-sendfile"]


def test_the_summary_of_t_shows_both(tmp_path: Path) -> None:
    (tmp_path / "private").mkdir()
    conf = tmp_path / "frontd.conf"
    conf.write_text(f'[[vhost]]\nnames = ["example.test"]\n[[vhost.route]]\nprefix = "/app/"\n'
                    f'proxy = "http://127.0.0.1:8080"\nx_sendfile = "{tmp_path}/private"\n'
                    f'[[vhost.route]]\nprefix = "/p/"\nstatic = "private"\ninternal = true\n')
    text = summary(load_config(str(conf)))
    assert f"x_sendfile {os.path.realpath(tmp_path / 'private')} (X-Sendfile files;" in text
    assert "internal (internal redirects only; clients get 404)" in text
