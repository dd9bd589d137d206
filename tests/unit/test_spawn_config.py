"""Config keys of spawned backends (spawn, processes, cwd, user, socket, run_dir) and argv placeholders."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from frontd.config.load import ConfigError, load_config, summary
from frontd.config.model import Address, Config, ProxyTarget
from frontd.server.spawn import app_specs, substitute

PY = sys.executable
# As root, spawn needs a user; `user = "root"` says it is meant (and is tested below).
TOP = 'user = "root"\n' if os.geteuid() == 0 else ""


def load(tmp_path: Path, route: str, top: str = TOP) -> Config:
    path = tmp_path / "frontd.conf"
    path.write_text(f'{top}[[vhost]]\nnames = ["example.test"]\n[[vhost.route]]\nprefix = "/app/"\n{route}\n')
    return load_config(str(path))


def error(tmp_path: Path, route: str, top: str = TOP) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, route, top)
    return str(info.value)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may enter, for configs whose commands run as nobody: pytest's
    tmp_path is private to the user running the tests."""
    path = Path(tempfile.mkdtemp(prefix="frontd-spawn-config-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_defaults_socket_in_run_dir_beside_the_pid_file(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    config = load(tmp_path, f'fastcgi = true\nspawn = ["{PY}", "app.py", "--flag"]',
                  TOP + 'pid_file = "run/frontd.pid"\n')
    route = config.vhosts[0].routes[0]
    run_dir = str(tmp_path / "run" / "frontd-sockets")
    assert config.run_dir == run_dir
    assert route.socket == Address(kind="unix", path=f"{run_dir}/example.test_app.sock")
    assert route.backends == (route.socket,)
    assert route.spawn == (PY, "app.py", "--flag") and route.processes == 1
    assert route.cwd == str(tmp_path) and route.user is None
    text = summary(config)
    assert f"run_dir {run_dir}\n" in text
    assert f"spawn=\"{PY} app.py --flag\" processes=1 cwd={tmp_path}" in text


def test_run_dir_without_pid_file_is_per_user_and_file(tmp_path: Path) -> None:
    config = load(tmp_path, f'scgi = true\nspawn = ["{PY}"]')
    assert os.path.basename(config.run_dir).startswith(f"frontd-{os.geteuid()}-")
    other = tmp_path / "other"
    other.mkdir()
    assert load(other, f'scgi = true\nspawn = ["{PY}"]').run_dir != config.run_dir


def test_explicit_socket_cwd_processes_user_and_proxy(shared: Path) -> None:
    tmp_path = shared
    (tmp_path / "app").mkdir(mode=0o755)
    config = load(tmp_path, 'proxy = true\nspawn = ["sh"]\nsocket = "unix:app/web.sock"\n'
                  'cwd = "app"\nprocesses = 3\nuser = "nobody"\nenv = { A = "1" }',
                  TOP + 'run_dir = "run"\n')
    route = config.vhosts[0].routes[0]
    address = Address(kind="unix", path=str(tmp_path / "app" / "web.sock"))
    assert route.socket == address and route.proxy == (ProxyTarget(address),)
    assert os.path.isabs(route.spawn[0]) and os.access(route.spawn[0], os.X_OK)
    assert route.cwd == str(tmp_path / "app") and route.processes == 3 and route.user == "nobody"
    assert route.env == (("A", "1"),)
    assert config.run_dir == str(tmp_path / "run")
    tcp = load(tmp_path, f'uwsgi = true\nspawn = ["{PY}"]\nsocket = "127.0.0.1:9031"').vhosts[0].routes[0]
    assert tcp.backends == (Address(kind="tcp", host="127.0.0.1", port=9031),)


@pytest.mark.parametrize(("route", "message"), [
    (f'fastcgi = "unix:/tmp/a.sock"\nspawn = ["{PY}"]',
     r'route\[0\]\.fastcgi: with spawn, write fastcgi = true: frontd creates the socket \(set socket = "\.\.\."'),
    ("scgi = true", r"route\[0\]\.scgi: scgi = true needs spawn"),
    ('scgi = "127.0.0.1:4000"\nprocesses = 2', r"route\[0\]\.processes: only applies with spawn"),
    ('proxy = "http://127.0.0.1:8081"\nenv = { A = "1" }', r"route\[0\]\.env: on a proxy route only applies with spawn"),
    ('static = "."\nspawn = ["x"]', r"route\[0\]\.spawn: not an option of static routes"),
    ("fastcgi = true\nspawn = []", r"route\[0\]\.spawn: expected a non-empty array of strings"),
    ("fastcgi = true\nspawn = [1]", r"route\[0\]\.spawn\[0\]: expected a string, got 1"),
    ('fastcgi = true\nspawn = ["no-such-program-here"]', r'spawn\[0\]: "no-such-program-here" is not found in PATH'),
    ('fastcgi = true\nspawn = ["./missing.py"]', r"spawn\[0\]: \".*missing\.py\" is not an executable file"),
    (f'fastcgi = true\nspawn = ["{PY}"]\nprocesses = 0', r"route\[0\]\.processes: must be at least 1, got 0"),
    (f'fastcgi = true\nspawn = ["{PY}"]\ncwd = "nowhere"', r"route\[0\]\.cwd: directory .* does not exist"),
    (f'fastcgi = true\nspawn = ["{PY}"]\nuser = "no-such-user-x"', r'route\[0\]\.user: no such user "no-such-user-x"'),
    (f'fastcgi = true\nspawn = ["{PY}"]\nsocket = "127.0.0.1:0"', r"socket: .*port"),
    (f'fastcgi = true\nspawn = ["{PY}"]\nsocket = "unix:/nonexistent-dir/a.sock"', r"socket: directory .* does not exist"),
])
def test_mistakes(tmp_path: Path, route: str, message: str) -> None:
    assert pytest.raises(ConfigError, load, tmp_path, route).match(message)


def test_socket_twice_or_on_a_listener(tmp_path: Path) -> None:
    two = (f'fastcgi = true\nspawn = ["{PY}"]\nsocket = "127.0.0.1:9100"\n'
           f'[[vhost.route]]\nprefix = "/b/"\nscgi = true\nspawn = ["{PY}"]\nsocket = "127.0.0.1:9100"')
    assert 'route[1].socket: "127.0.0.1:9100" is already the socket of vhost[0].route[0]' in error(tmp_path, two)
    listener = f'fastcgi = true\nspawn = ["{PY}"]\nsocket = "127.0.0.1:9101"'
    assert '"127.0.0.1:9101" is also a listen address' in error(tmp_path, listener,
                                                                 TOP + 'listen = "127.0.0.1:9101"\n')


def test_as_root_a_user_is_required(shared: Path) -> None:
    tmp_path = shared
    route = 'fastcgi = true\nspawn = ["/bin/sh"]'
    with mock.patch("os.geteuid", return_value=0):
        message = error(tmp_path, route, top="")
        assert ('route[0].spawn: frontd runs as root and would run this command as root: set user '
                '(on the route, or at the top level), or user = "root" to really mean it') in message
        assert load(tmp_path, route + '\nuser = "nobody"', top="").vhosts[0].routes[0].user == "nobody"
        assert load(tmp_path, route, top='user = "nobody"\n').vhosts[0].routes[0].user is None
        assert load(tmp_path, route, top='user = "root"\n').vhosts[0].routes[0].spawn


def test_long_prefixes_get_a_short_socket_name(tmp_path: Path) -> None:
    prefix = "/" + "x" * 90 + "/"
    path = tmp_path / "frontd.conf"
    path.write_text(f'{TOP}run_dir = "run"\n[[vhost]]\nnames = ["example.test"]\n[[vhost.route]]\n'
                    f'prefix = "{prefix}"\nfastcgi = true\nspawn = ["{PY}"]\n')
    socket = load_config(str(path)).vhosts[0].routes[0].socket
    assert socket is not None and len(socket.path) <= 107 and socket.path.endswith(".sock")


def test_specs_and_placeholders(tmp_path: Path) -> None:
    config = load(tmp_path, f'fastcgi = true\nspawn = ["{PY}", "--socket", "{{socket}}"]\nprocesses = 2')
    (key, spec), = app_specs(config).items()
    assert key == str(spec.socket) and spec.label == "fastcgi example.test/app/" and spec.fd == 0
    unix = Address(kind="unix", path="/run/a.sock")
    tcp = Address(kind="tcp", host="127.0.0.1", port=9000)
    argv = ("app", "{socket}", "--bind={address}", "fd://{fd}", "{other}", "{{socket}}")
    assert substitute(argv, unix, 3) == ["app", "/run/a.sock", "--bind=unix:/run/a.sock", "fd://3", "{other}",
                                         "{/run/a.sock}"]
    assert substitute(argv, tcp, 0)[:4] == ["app", "127.0.0.1:9000", "--bind=127.0.0.1:9000", "fd://0"]
