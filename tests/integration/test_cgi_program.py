"""`cgi = FILE`: one program for every path under a prefix (Apache's ScriptAlias to a file;
frontd issue 12, item 5). SCRIPT_NAME is the prefix, PATH_INFO the decoded rest, SCRIPT_FILENAME
the program; a chunked body reaches it with its CONTENT_LENGTH."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import requests

from tests.conftest import Frontd
from tests.integration.test_cgi import ENV_SH, write_script

Start = Callable[..., Frontd]


def env_of(response: requests.Response) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in response.content.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name not in values:
            values[name] = value
    return values


def setup(tmp_path: Path) -> tuple[Path, Path, str]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("home\n")
    bin_dir = tmp_path / "bin"
    program = write_script(bin_dir, "app", ENV_SH)
    # The program also lies under the vhost root: its bytes are never served from there.
    exposed = write_script(www, "tool.cgi", ENV_SH)
    config = f"""
[[vhost]]
names = ["a.test"]
root = "{www}"

  [[vhost.route]]
  prefix = "/app/"
  cgi = "{program}"
  env = {{ APP_ROOT = "{tmp_path}" }}

  [[vhost.route]]
  prefix = "/tool/"
  cgi = "{exposed}"
"""
    return Path(os.path.realpath(www)), program, config


def test_one_program_for_the_whole_prefix(frontd: Start, tmp_path: Path) -> None:
    www, program, config = setup(tmp_path)
    server = frontd(config)
    headers = {"Host": "a.test"}
    cases = {
        "/app/repo.git/info/refs?service=x": ("/app", "/repo.git/info/refs", "service=x"),
        "/app/a%20b/%C3%A9": ("/app", "/a b/é", ""),
        "/app/": ("/app", "/", ""),
        "/app": ("/app", "", ""),
    }
    for target, (script_name, path_info, query) in cases.items():
        response = requests.get(server.url(target), headers=headers, timeout=10)
        assert response.status_code == 200, (target, response.text)
        env = env_of(response)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == (script_name, path_info, query)
        assert env["SCRIPT_FILENAME"] == str(program)
        assert env["ARGV0"] == str(program) and env["ARGC"] == "1"
        assert env["CWD"] == str(program.parent)
        assert env["APP_ROOT"] == str(tmp_path)
        # RFC 3875 §4.1.6: PATH_INFO mapped into the document root; unset without PATH_INFO.
        if path_info:
            assert env["PATH_TRANSLATED"] == f"{www}{path_info}"
        else:
            assert "PATH_TRANSLATED" not in env
    # Paths that name no file still reach the program: it decides what they mean.
    assert requests.get(server.url("/app/../app/x/.hidden"), headers=headers, timeout=10).status_code == 200


def test_a_chunked_body_reaches_the_program_with_its_length(frontd: Start, tmp_path: Path) -> None:
    _, _, config = setup(tmp_path)
    server = frontd(config)
    body = os.urandom(300_000)

    def pieces() -> object:
        for start in range(0, len(body), 7000):
            yield body[start:start + 7000]

    response = requests.post(server.url("/app/upload"), data=pieces(), headers={"Host": "a.test"}, timeout=30)
    assert response.status_code == 200
    env = env_of(response)
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["REQUEST_METHOD"] == "POST"
    assert hashlib.sha256(response.content.split(b"BODY=", 1)[1][:-1]).digest() == hashlib.sha256(body).digest()


def test_the_program_is_never_served_as_a_file(frontd: Start, tmp_path: Path) -> None:
    _, _, config = setup(tmp_path)
    server = frontd(config)
    response = requests.get(server.url("/tool.cgi"), headers={"Host": "a.test"}, timeout=10)
    assert response.status_code == 403
    assert b"#!/bin/sh" not in response.content
    server.wait_error_log(r"403: '/tool\.cgi': \S+ is a CGI program")
    # Through its route it runs.
    assert env_of(requests.get(server.url("/tool/x"), headers={"Host": "a.test"}, timeout=10))["PATH_INFO"] == "/x"
