"""A real FastCGI authorizer (flup's WSGIServer with roles=(FCGI_AUTHORIZER,)) in front of a
FastCGI responder, a proxy backend and static files (FastCGI 1.0 §6.3, lighttpd's behaviour)."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd
from tests.integration.proxy_backend import Backend, Backends
from tests.interop.conftest import PEERS, Peer, require_module

GOOD = {"Authorization": "Bearer good"}


def dead_socket(workdir: Path) -> str:
    """A Unix socket path that nobody listens on (bound, then closed)."""
    path = workdir / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return f"unix:{path}"


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    started = Backends()
    yield started.start()
    started.stop()


@pytest.fixture(scope="module")
def server(peers: Callable[..., Peer], workdir: Path, frontd_module: Callable[..., Frontd],
           backend: Backend) -> Frontd:
    require_module("flup")
    auth = f"unix:{workdir}/authz.sock"
    app = f"unix:{workdir}/app.sock"
    for mode, address in (("authorizer", auth), ("responder", app)):
        peers(f"flup-{mode}", [sys.executable, str(PEERS / "flup_authorizer.py"), mode, address], [address], workdir)
    www = workdir / "www"
    www.mkdir()
    (www / "a.txt").write_text("static\n")
    return frontd_module(f'''
[[vhost]]
root = "{www}"

  [[vhost.route]]
  prefix = "/app/"
  fastcgi = "{app}"
  authorizer = "{auth}"

  [[vhost.route]]
  prefix = "/files/"
  static = "{www}"
  authorizer = ["{auth}"]

  [[vhost.route]]
  prefix = "/api/"
  proxy = "{backend.url}"
  authorizer = "{auth}"

  [[vhost.route]]
  prefix = "/slow/"
  fastcgi = "{app}"
  authorizer = "{auth}"
  timeout = "1s"

  [[vhost.route]]
  prefix = "/down/"
  static = "{www}"
  authorizer = "{dead_socket(workdir)}"
''')


def test_200_passes_variables_to_the_responder(server: Frontd) -> None:
    response = requests.get(server.url("/app/x"), headers=GOOD, timeout=10)
    assert response.status_code == 200
    seen = response.json()
    assert seen["USER_ID"] == "42" and seen["ROLE"] == "admin"
    assert seen["SAW_LENGTH"] == "none"  # §6.3: no CONTENT_LENGTH for the authorizer
    assert seen["REQUEST_METHOD"] == "GET"


def test_other_status_is_the_clients_response(server: Frontd) -> None:
    for path in ("/app/x", "/files/a.txt", "/api/x"):
        response = requests.get(server.url(path), headers={"Authorization": "Bearer bad"}, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert response.text == "authorizer says no\n"
        assert "Variable-LEAK" not in response.headers


def test_static_route_behind_an_authorizer(server: Frontd) -> None:
    response = requests.get(server.url("/files/a.txt"), headers=GOOD, timeout=10)
    assert response.status_code == 200 and response.text == "static\n"


def test_proxy_backend_gets_x_variable_fields(server: Frontd) -> None:
    # A client's own X-Variable- field never reaches the backend: only the authorizer's.
    response = requests.get(server.url("/api/x"), headers={**GOOD, "X-Variable-ROLE": "root"}, timeout=10)
    assert response.status_code == 200
    headers = [(k.lower(), v) for k, v in json.loads(response.content)["headers"]]
    assert ("x-variable-user_id", "42") in headers and ("x-variable-role", "admin") in headers
    assert ("x-variable-role", "root") not in headers


def test_down_authorizer_is_502_silent_is_504(server: Frontd) -> None:
    assert requests.get(server.url("/down/a.txt"), headers=GOOD, timeout=10).status_code == 502
    server.wait_error_log(r"502: fastcgi .*dead\.sock: connect failed")
    assert requests.get(server.url("/slow/stall"), headers=GOOD, timeout=10).status_code == 504
    server.wait_error_log(r"504: fastcgi authorizer .*authz\.sock: no answer within 1s")
    # And the server still answers.
    assert requests.get(server.url("/app/x"), headers=GOOD, timeout=10).status_code == 200


def test_authorizer_true_is_the_spawned_application(frontd_module: Callable[..., Frontd], workdir: Path) -> None:
    """One spawned flup process in both roles, told apart by FCGI_ROLE=AUTHORIZER (as lighttpd sends)."""
    require_module("flup")
    server = frontd_module(f'''
[[vhost]]
names = ["both.test"]

  [[vhost.route]]
  prefix = "/"
  fastcgi = true
  spawn = ["{sys.executable}", "{PEERS / 'flup_authorizer.py'}", "both"]
  authorizer = true
''', name="both.conf", top='user = "root"' if os.geteuid() == 0 else "")
    response = requests.get(server.url("/x"), headers=GOOD, timeout=10)
    assert response.status_code == 200 and response.json()["USER_ID"] == "42"
    assert requests.get(server.url("/x"), timeout=10).status_code == 401
