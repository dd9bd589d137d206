"""The real `git http-backend` behind a `cgi = FILE` route (Apache's `ScriptAlias /git/
/usr/lib/git-core/git-http-backend/`), driven by the real git client: a clone, a shallow clone,
and a push of a 5 MiB incompressible file with a small `http.postBuffer`, which git sends as a
chunked request body."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd

Start = Callable[..., Frontd]
GIT_TIMEOUT = 120.0
BIG = 5 * 1024 * 1024


def git_env(home: Path) -> dict[str, str]:
    """No user or system configuration, no proxy: only what the test sets."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "PYTEST")) and not k.lower().endswith("_proxy")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="frontd", GIT_AUTHOR_EMAIL="frontd@example.test",
               GIT_COMMITTER_NAME="frontd", GIT_COMMITTER_EMAIL="frontd@example.test")
    return env


def git(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture
def http_backend() -> str:
    if shutil.which("git") is None:
        pytest.skip("git is not installed (tests/run.sh installs it)")
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, timeout=30).stdout.strip()
    program = os.path.join(exec_path, "git-http-backend")
    if not os.access(program, os.X_OK):
        pytest.skip(f"{program} is not installed")
    return program


def test_clone_shallow_clone_and_chunked_push(frontd: Start, tmp_path: Path, http_backend: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = git_env(home)
    repos = tmp_path / "repos"
    bare = repos / "project.git"
    git(env, "init", "--bare", "-b", "main", str(bare))
    # Anonymous pushes: git http-backend enables receive-pack by itself only for REMOTE_USER.
    git(env, "config", "http.receivepack", "true", cwd=bare)
    seed = tmp_path / "seed"
    git(env, "init", "-b", "main", str(seed))
    for n in (1, 2, 3):
        (seed / "README").write_text(f"revision {n}\n")
        git(env, "add", "README", cwd=seed)
        git(env, "commit", "-m", f"revision {n}", cwd=seed)
    git(env, "push", str(bare), "main", cwd=seed)

    server = frontd(f"""
[[vhost]]
names = ["git.test"]
default = true

  [[vhost.route]]
  prefix = "/git/"
  cgi = "{http_backend}"
  env = {{ GIT_PROJECT_ROOT = "{repos}", GIT_HTTP_EXPORT_ALL = "1" }}
""")
    url = server.url("/git/project.git")

    full = tmp_path / "full"
    git(env, "clone", url, str(full))
    assert (full / "README").read_text() == "revision 3\n"
    assert git(env, "rev-list", "--count", "HEAD", cwd=full).stdout.strip() == "3"

    shallow = tmp_path / "shallow"
    git(env, "clone", "--depth", "1", url, str(shallow))
    assert (shallow / "README").read_text() == "revision 3\n"
    assert git(env, "rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == "1"
    assert (shallow / ".git" / "shallow").exists()

    # Random bytes do not compress: the pack stays about 5 MiB, far over the 64 KiB post
    # buffer, so git streams it with Transfer-Encoding: chunked.
    (full / "big.bin").write_bytes(os.urandom(BIG))
    git(env, "add", "big.bin", cwd=full)
    git(env, "commit", "-m", "a big file", cwd=full)
    pushed = git(env, "rev-parse", "HEAD", cwd=full).stdout.strip()
    trace = dict(env, GIT_TRACE_CURL="1", GIT_TRACE_CURL_NO_DATA="1")
    push = git(trace, "-c", "http.postBuffer=65536", "push", "origin", "main", cwd=full)
    assert "Transfer-Encoding: chunked" in push.stderr
    assert git(env, "rev-parse", "main", cwd=bare).stdout.strip() == pushed
    assert git(env, "cat-file", "-s", "main:big.bin", cwd=bare).stdout.strip() == str(BIG)
    git(env, "fsck", "--no-progress", cwd=bare)
    server.wait_access_log(r'"POST /git/project\.git/git-receive-pack HTTP/1\.1" 200 ')
    assert "Traceback" not in server.errors()
