"""Real peers for the interop tests: php-fpm, fcgiwrap, flup (FastCGI and SCGI), the `scgi`
package's server and uWSGI, each started by the tests on a Unix socket in a temporary
directory and on 127.0.0.1, and stopped by PID at teardown (SIGTERM, then SIGKILL to its group).

A test module starts its peers and one frontd once (module scope): starting php-fpm or uWSGI
per test would dominate the run. A missing peer program skips its module with the reason;
`tests/run.sh` installs them all (Debian packages and the `test` extra of pyproject.toml).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Frontd, die_with_parent_by, start_frontd, stop_process

PEERS = Path(__file__).resolve().parent / "peers"
READY_TIMEOUT = 20.0


def find_program(*names: str) -> str:
    """The path of the first program found (PATH, then the sbin directories), or skip."""
    for name in names:
        for candidate in (shutil.which(name), *glob.glob(f"/usr/sbin/{name}"), *glob.glob(f"/usr/bin/{name}")):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    pytest.skip(f"{' / '.join(names)} is not installed (tests/run.sh installs it)")


def require_module(name: str) -> None:
    """Skip when a Python peer package is missing (the `test` extra of pyproject.toml has it)."""
    try:
        __import__(name)
    except ImportError:
        pytest.skip(f"Python package {name!r} is not installed (pip install -e '.[test]')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_connect(address: str) -> bool:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address[len("unix:"):]
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    sock.settimeout(1.0)
    try:
        sock.connect(target)  # type: ignore[arg-type]
        return True
    except OSError:
        return False
    finally:
        sock.close()


# A peer whose test run is killed (a CI timeout) does not outlive it: no teardown stops it then.
_die_with_parent = die_with_parent_by(signal.SIGKILL)


class Peer:
    """One peer process, its own session (process group), output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], addresses: Sequence[str], directory: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.addresses = list(addresses)
        self.log = directory / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        full_env.update(env or {})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(list(argv), cwd=directory, env=full_env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(self.addresses)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if can_connect(pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not listening on {pending[0]} after {READY_TIMEOUT}s:\n"
                                     f"{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short: a Unix socket path has at most 107 bytes.
    return Path(tmp_path_factory.mktemp("io"))


@pytest.fixture(scope="module")
def peers() -> Iterator[Callable[..., Peer]]:
    """Start peers; all of them are stopped when the module is done."""
    started: list[Peer] = []

    def start(*args: object, **kwargs: object) -> Peer:
        peer = Peer(*args, **kwargs)  # type: ignore[arg-type]
        started.append(peer)
        return peer

    yield start
    for peer in reversed(started):
        peer.stop()


@pytest.fixture(scope="module")
def frontd_module(workdir: Path) -> Iterator[Callable[..., Frontd]]:
    """Start frontd once for a module (`tests.conftest.frontd` is per test)."""
    started: list[Frontd] = []

    def start(config: str, **kwargs: object) -> Frontd:
        server = start_frontd(workdir, config, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the peers ----------------------------------------------------------------------------------


def start_php_fpm(peers: Callable[..., Peer], workdir: Path, addresses: dict[str, str],
                  workers: dict[str, str] | None = None) -> Peer:
    """One php-fpm master with a pool per backend name ("a": "unix:/...", "b": "127.0.0.1:port").

    Each pool has its own workers, socket, access log (to prove a request never reached it) and
    PEER_NAME, so the tests can tell the backends apart. `workers` replaces a pool's process
    settings (`{"s": "pm.max_children = 2"}`).
    """
    binary = find_program("php-fpm8.2", "php-fpm*", "php-fpm")
    pools = []
    for name, address in addresses.items():
        # Pool "k" recycles its only worker every 3 requests, closing kept connections under
        # frontd's pool (php-fpm's pm.max_requests).
        processes = "pm.max_children = 1\npm.max_requests = 3" if name == "k" else "pm.max_children = 3"
        processes = (workers or {}).get(name, processes)
        listen = address[len("unix:"):] if address.startswith("unix:") else address
        pools.append(f"""
[{name}]
listen = {listen}
pm = static
{processes}
access.log = {workdir}/php-{name}.access.log
access.format = "%m %r %s"
catch_workers_output = yes
env[PEER_NAME] = {name}
php_admin_value[post_max_size] = 16M
php_admin_value[upload_max_filesize] = 8M
php_admin_flag[log_errors] = on
""")
    conf = workdir / "php-fpm.conf"
    conf.write_text(f"""
[global]
error_log = {workdir}/php-fpm.error.log
pid = {workdir}/php-fpm.pid
daemonize = no
""" + "".join(pools))
    argv = [binary, "-F", "-y", str(conf), "-p", str(workdir)]
    if os.geteuid() == 0:
        argv.append("-R")  # the test runs as root (CI): let the pools run as root too
    return peers("php-fpm", argv, list(addresses.values()), workdir)


def start_fcgiwrap(peers: Callable[..., Peer], workdir: Path, name: str, address: str) -> Peer:
    binary = find_program("fcgiwrap")
    socket_url = address if address.startswith("unix:") else f"tcp:{address}"
    # -f: the scripts' stderr goes back as FCGI_STDERR, which frontd logs.
    return peers(f"fcgiwrap-{name}", [binary, "-f", "-c", "3", "-s", socket_url], [address], workdir,
                 env={"PEER_NAME": name})


def start_flup(peers: Callable[..., Peer], workdir: Path, protocol: str, name: str, address: str) -> Peer:
    require_module("flup")
    return peers(f"flup-{protocol}-{name}", [sys.executable, str(PEERS / "flup_peer.py"), protocol, address],
                 [address], workdir, env={"PEER_NAME": name})


def start_scgi(peers: Callable[..., Peer], workdir: Path, name: str, address: str) -> Peer:
    require_module("scgi")
    return peers(f"scgi-{name}", [sys.executable, str(PEERS / "scgi_peer.py"), address], [address], workdir,
                 env={"PEER_NAME": name})


def start_uwsgi(peers: Callable[..., Peer], workdir: Path, name: str, address: str) -> Peer:
    # Debian's uwsgi with its python3 plugin (the plugin embeds Debian's own Python 3: the app
    # uses the standard library only).
    binary = find_program("uwsgi")
    plugins = glob.glob("/usr/lib/uwsgi/plugins/python3*_plugin.so")
    if not plugins:
        pytest.skip("uWSGI's python3 plugin is not installed (Debian: uwsgi-plugin-python3)")
    socket_arg = address[len("unix:"):] if address.startswith("unix:") else address
    argv = [binary, "--plugin", "python3", "--socket", socket_arg, "--wsgi-file", str(PEERS / "uwsgi_app.py"),
            "--master", "--processes", "3", "--need-app", "--die-on-term", "--disable-logging",
            "--env", f"PEER_NAME={name}"]
    return peers(f"uwsgi-{name}", argv, [address], workdir)


# -- what the tests share -----------------------------------------------------------------------


@dataclass
class Deployment:
    """frontd in front of two backends of one kind of peer.

    `routes` maps each backend's name to (host, prefix): backend "a" is on a Unix socket behind
    vhost a.test and prefix /one/, "b" on 127.0.0.1 behind b.test and /two/. Extra routes on
    a.test: /slow/ (backend a with timeout = "1s") and /down/, /down-tcp/ (nothing listening).
    `endpoints` names the script or path of each endpoint ("info", "echo", "status", "slow",
    "big") under a prefix.
    """

    server: Frontd
    kind: str
    endpoints: dict[str, str]
    script_mode: bool
    big_sha256: str
    routes: dict[str, tuple[str, str]] = field(default_factory=lambda: {"a": ("a.test", "/one/"),
                                                                        "b": ("b.test", "/two/")})

    def url(self, prefix: str, endpoint: str, rest: str = "") -> str:
        return self.server.url(prefix + self.endpoints.get(endpoint, endpoint) + rest)

    def request(self, method: str, backend: str, endpoint: str, rest: str = "", **kwargs: object) -> requests.Response:
        host, prefix = self.routes[backend]
        headers = {"Host": host, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.request(method, self.url(prefix, endpoint, rest), headers=headers, timeout=30,
                                **kwargs)  # type: ignore[arg-type]

    def path_info(self, endpoint: str, rest: str) -> str:
        """What PATH_INFO the app sees for `rest` after an endpoint: after the script in script
        mode, after the prefix for an application mount."""
        return rest if self.script_mode else "/" + self.endpoints[endpoint] + rest

    def script_name(self, backend: str, endpoint: str) -> str:
        prefix = self.routes[backend][1]
        if self.script_mode:
            return prefix + self.endpoints[endpoint]
        return prefix.rstrip("/")


def parse_output(body: bytes) -> dict[str, Any]:
    """An app's report: JSON (PHP, WSGI), or NAME=value lines (the shell scripts)."""
    text = body.decode("utf-8", "replace")
    if text.startswith("{"):
        report: dict[str, Any] = json.loads(text)
        return report
    values: dict[str, Any] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = None if value == "(unset)" else value
    return values


def gateway_config(kind: str, a: str, b: str, workdir: Path, *, root: str | None = None,
                   index: str = "", keep: str | None = None) -> str:
    """Two vhosts, two prefixes, plus the slow and down routes, for one kind of gateway; with
    `keep`, a third vhost k.test whose /keep/ route pools connections to that backend."""
    script = ""
    if root is not None:
        script = f'root = "{root}"\n  '
        if index:
            script += f"index = {index}\n  "
    down_unix = f"unix:{workdir}/absent.sock"
    down_tcp = f"127.0.0.1:{free_port()}"
    return f"""
[[vhost]]
names = ["a.test"]

  [[vhost.route]]
  prefix = "/one/"
  {kind} = "{a}"
  {script}
  [[vhost.route]]
  prefix = "/slow/"
  {kind} = "{a}"
  timeout = "1s"
  {script}
  [[vhost.route]]
  prefix = "/down/"
  {kind} = "{down_unix}"
  {script}
  [[vhost.route]]
  prefix = "/down-tcp/"
  {kind} = "{down_tcp}"
  {script}
[[vhost]]
names = ["b.test"]

  [[vhost.route]]
  prefix = "/two/"
  {kind} = "{b}"
  {script}
""" + ("" if keep is None else f"""
[[vhost]]
names = ["k.test"]

  [[vhost.route]]
  prefix = "/keep/"
  {kind} = "{keep}"
  keepalive = 2
  {script}
""")
