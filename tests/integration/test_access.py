"""Access rules at the socket: allow/deny by client address (clients bound to 127.0.0.1 and
127.0.0.2) and HTTP Basic authentication with htpasswd files made by Debian's `htpasswd`."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Frontd, wait_for

Start = Callable[..., Frontd]
OTHER = "127.0.0.2"  # a second client address on the loopback network

needs_htpasswd = pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) not installed")


def get(server: Frontd, path: str, *, source: str = "127.0.0.1", user: str | None = None,
        password: str = "", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET from the client address `source`: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    sent = dict(headers or {})
    if user is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def htpasswd(path: Path, user: str, password: str, flag: str) -> None:
    """Add a user with Debian's htpasswd (-B bcrypt, -2/-5 SHA-256/512 crypt, -m apr1, -s {SHA})."""
    create = [] if path.exists() else ["-c"]
    subprocess.run(["htpasswd", *create, "-b", flag, str(path), user, password], check=True,
                   capture_output=True, timeout=30)


# -- allow / deny --------------------------------------------------------------------------------


def test_allow_and_deny_by_client_address(frontd: Start, site: Path) -> None:
    (site / "office").mkdir()
    (site / "office" / "a.txt").write_text("office\n")
    (site / "hidden").mkdir()
    (site / "hidden" / "a.txt").write_text("hidden\n")
    server = frontd(f'''
[[vhost]]
root = "{site}"
deny = ["{OTHER}"]

  [[vhost.route]]
  prefix = "/office/"
  static = "{site / 'office'}"
  allow = ["{OTHER}/32", "::1"]
  deny = []

  [[vhost.route]]
  prefix = "/hidden/"
  static = "{site / 'hidden'}"
  allow = []
''')
    assert get(server, "/hello.txt")[0] == 200
    assert get(server, "/hello.txt", source=OTHER)[0] == 403  # the vhost's deny
    server.wait_error_log(rf"403: client {OTHER} is denied by deny.*\"GET /hello.txt")
    # The route's lists replace the vhost's: its allow lets 127.0.0.2 in, its empty deny lifts the vhost's.
    assert get(server, "/office/a.txt", source=OTHER)[:3:2] == (200, b"office\n")
    assert get(server, "/office/a.txt")[0] == 403
    server.wait_error_log(r"403: client 127\.0\.0\.1 is not in allow.*\"GET /office/a.txt")
    # allow = [] refuses everyone.
    assert get(server, "/hidden/a.txt")[0] == 403
    assert get(server, "/hidden/a.txt", source=OTHER)[0] == 403
    assert len([line for line in server.errors().splitlines() if "/office/a.txt" in line and "403" in line]) == 1


def test_status_allow_still_works_with_allow(frontd: Start, site: Path) -> None:
    server = frontd(f'''
[[vhost]]
root = "{site}"
status = "/frontd-status"
allow = ["127.0.0.0/8"]
''')
    assert get(server, "/frontd-status?format=json")[0] == 200
    assert get(server, "/frontd-status?format=json", source=OTHER)[0] == 403  # status_allow's default
    assert get(server, "/hello.txt", source=OTHER)[0] == 200


# -- Basic auth ----------------------------------------------------------------------------------

ENV_SCRIPT = """#!{python}
import json, os
print("Content-Type: application/json")
print()
print(json.dumps({{k: os.environ.get(k) for k in ("REMOTE_USER", "AUTH_TYPE", "HTTP_AUTHORIZATION")}}))
"""
FORMATS = {"bcrypt": "-B", "sha256": "-2", "sha512": "-5", "apr1": "-m", "sha1": "-s"}


def cgi_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cgi-bin"
    directory.mkdir()
    script = directory / "env.py"
    script.write_text(ENV_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    return directory


@needs_htpasswd
def test_basic_auth_every_htpasswd_format(frontd: Start, site: Path, tmp_path: Path) -> None:
    users = site / "users.htpasswd"  # under the root, and still never served
    for name, flag in FORMATS.items():
        htpasswd(users, name, f"pw-{name}-ü", flag)
    if shutil.which("mkpasswd"):
        with users.open("a") as file:
            for name, method in (("mk512", "sha-512"), ("mk256", "sha-256"), ("mkmd5", "md5crypt")):
                made = subprocess.run(["mkpasswd", "-m", method, f"pw-{name}-ü"], check=True, capture_output=True,
                                      text=True, timeout=30).stdout.strip()
                file.write(f"{name}:{made}\n")
    cgi = cgi_dir(tmp_path)
    server = frontd(f'''
[[vhost]]
root = "{site}"
status = "/frontd-status"
auth = {{ realm = "Staff only", htpasswd = "{users}" }}

  [[vhost.route]]
  prefix = "/cgi-bin/"
  cgi = "{cgi}"

  [[vhost.route]]
  prefix = "/pass/"
  cgi = "{cgi}"
  pass_authorization = true

  [[vhost.route]]
  prefix = "/sub/"
  static = "{site / 'sub'}"
  auth = false
''')
    status, headers, _ = get(server, "/hello.txt")
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="Staff only", charset="UTF-8"'
    names = [line.split(":")[0] for line in users.read_text().splitlines()]
    for name in names:
        status, _, body = get(server, "/cgi-bin/env.py", user=name, password=f"pw-{name}-ü")
        assert status == 200, name
        assert json.loads(body) == {"REMOTE_USER": name, "AUTH_TYPE": "Basic", "HTTP_AUTHORIZATION": None}
    status, _, body = get(server, "/pass/env.py", user="bcrypt", password="pw-bcrypt-ü")
    assert json.loads(body)["HTTP_AUTHORIZATION"].startswith("Basic ")
    # Wrong password, unknown user, malformed: 401, one log line each, never the password.
    assert get(server, "/hello.txt", user="sha512", password="wrong-secret-42")[0] == 401
    assert get(server, "/hello.txt", user="nobody", password="wrong-secret-42")[0] == 401
    assert get(server, "/hello.txt", headers={"Authorization": "Basic !!!"})[0] == 401
    server.wait_error_log(r"401: auth realm \"Staff only\": user 'sha512': unknown user or wrong password")
    server.wait_error_log(r"401: auth realm \"Staff only\": malformed Basic credentials")
    assert "wrong-secret-42" not in server.errors()
    # The htpasswd file is never served, even to a user who got in.
    assert get(server, "/users.htpasswd", user="sha1", password="pw-sha1-ü")[0] == 403
    # auth = false on a route lifts the vhost's; ACME's challenge path is never behind auth.
    assert get(server, "/sub/")[0] == 200
    assert get(server, "/.well-known/acme-challenge/token")[0] == 404
    # Failed attempts count on the status page (a request without credentials is no attempt).
    status, _, body = get(server, "/frontd-status?format=json", user="sha1", password="pw-sha1-ü")
    assert status == 200 and json.loads(body)["totals"]["auth_failures"] == 3


@needs_htpasswd
def test_htpasswd_change_is_seen_and_missing_file_is_500(frontd: Start, site: Path, tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    htpasswd(users, "alice", "one", "-B")
    server = frontd(f'[[vhost]]\nroot = "{site}"\nauth = {{ realm = "r", htpasswd = "{users}" }}\n')
    assert get(server, "/hello.txt", user="alice", password="one")[0] == 200
    replacement = tmp_path / "htpasswd.new"
    htpasswd(replacement, "alice", "two", "-5")
    os.replace(replacement, users)
    wait_for(lambda: get(server, "/hello.txt", user="alice", password="two")[0] == 200, 10, "the new password")
    assert get(server, "/hello.txt", user="alice", password="one")[0] == 401  # the cached success is gone
    users.unlink()
    wait_for(lambda: get(server, "/hello.txt", user="alice", password="two")[0] == 500, 10, "a 500")
    server.wait_error_log(r"500: auth realm \"r\": .*htpasswd: cannot read")
    assert get(server, "/hello.txt")[0] == 401  # no credentials: still asked for them


@needs_htpasswd
def test_reload_refuses_a_bad_htpasswd_file_then_takes_the_mended_one(frontd: Start, site: Path, tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    htpasswd(users, "alice", "one", "-B")
    server = frontd(f'[[vhost]]\nroot = "{site}"\nauth = {{ realm = "r", htpasswd = "{users}" }}\n')
    assert get(server, "/hello.txt", user="alice", password="one")[0] == 200
    # A plain-text line: the reload is refused and the running configuration carries on.
    users.write_text(users.read_text() + "bob:plaintext\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_error_log(r"line 2 \(user 'bob'\): a plain-text password .* is refused")
    htpasswd(users, "bob", "two", "-m")  # htpasswd replaces bob's line with an apr1 hash
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: get(server, "/hello.txt", user="bob", password="two")[0] == 200, 10, "bob after the reload")


def test_missing_htpasswd_is_a_t_error(tmp_path: Path, site: Path) -> None:
    conf = tmp_path / "t.conf"
    conf.write_text(f'[[vhost]]\nroot = "{site}"\nauth = {{ realm = "r", htpasswd = "nope" }}\n')
    result = subprocess.run([sys.executable, "-m", "frontd", "-t", "-c", str(conf)], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode != 0
    assert f"vhost[0].auth.htpasswd: file \"{tmp_path / 'nope'}\" does not exist" in result.stderr
