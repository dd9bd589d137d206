"""The worker's cache of small static files (`[limits] file_cache_size`) never serves what the
file system no longer holds.

One frontd serves the module. Every file is created first and the tests wait (on the condition,
with a deadline) until their ctime is more than two seconds old, the age the cache asks before it
keeps a file; each test then asks for its file twice (the second answer from the cache, which
`test_cached_file_is_sent_without_opening_it` shows with strace), changes it the way a deploy or
an administrator would, and checks the next answer is the new state's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import tests.conftest
from frontd.handlers.file_cache import SETTLED_NS
from tests.conftest import Frontd, start_frontd, wait_for, wait_listening
from tests.integration.processes import syscalls, worker_of
from tests.integration.test_operations import shared_dir  # noqa: F401 (a fixture: a directory nobody can read)
from tests.integration.test_unprivileged_worker import python_for_nobody

MTIME = 1_600_000_000
NAMES = ("hit.txt", "renamed.txt", "rewritten.txt", "deleted.txt", "symlinked.txt", "ranges.txt", "index.txt",
         "a.txt", "b.txt", "c.txt")


def content(name: str, version: int = 1) -> bytes:
    return (f"{name} version {version}\n".encode() * 40)[:600]  # the same size in every version


def settle(paths: list[Path]) -> None:
    """Until every file's ctime is old enough for the cache to keep it."""
    wait_for(lambda: all(time.time_ns() - p.lstat().st_ctime_ns > SETTLED_NS + 50_000_000 for p in paths),
             10, "the files' ctime to be old enough")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Frontd, Path]]:
    top = tmp_path_factory.mktemp("file-cache")
    root = top / "www"
    root.mkdir()
    for name in NAMES:
        (root / name).write_bytes(content(name))
        os.utime(root / name, (MTIME, MTIME))
    (top / "outside.txt").write_bytes(content("outside.txt"))
    # 1500 bytes: a.txt, b.txt and c.txt (600 each) cannot all be kept.
    server = start_frontd(top, f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{root}"\n',
                          top='workers = 1\n[limits]\nfile_cache_size = 1500\n')
    try:
        settle([root / name for name in NAMES])
        yield server, root
    finally:
        server.stop()


def fetch(server: Frontd, name: str, **headers: str) -> requests.Response:
    return requests.get(server.url(f"/{name}"), headers=headers, timeout=10)


def served_twice(server: Frontd, name: str, data: bytes) -> requests.Response:
    """The file asked for twice, the same answer both times: the second came from the cache."""
    first, second = fetch(server, name), fetch(server, name)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == data
    assert first.headers["etag"] == second.headers["etag"]
    return second


def test_cached_file_is_sent_without_opening_it(site: tuple[Frontd, Path], tmp_path: Path) -> None:
    server, root = site
    answer = served_twice(server, "hit.txt", content("hit.txt"))
    assert answer.headers["content-length"] == "600"
    assert answer.headers["last-modified"] == "Sun, 13 Sep 2020 12:26:40 GMT"
    worker = worker_of(server)
    log = tmp_path / "strace.log"
    with syscalls([worker], "openat,open,lstat,newfstatat,statx", log, children=False):
        assert fetch(server, "hit.txt").content == content("hit.txt")
    calls = log.read_text()
    assert "hit.txt" in calls  # the walk still looks at the file...
    assert not re.search(r"open(at)?\(.*hit\.txt", calls)  # ... but does not open it


def test_file_renamed_over_with_same_size_and_mtime(site: tuple[Frontd, Path]) -> None:
    """A deploy: the new file written beside, its mtime copied (rsync -t), renamed over."""
    server, root = site
    served_twice(server, "renamed.txt", content("renamed.txt"))
    new = root / ".renamed.txt.tmp"
    new.write_bytes(content("renamed.txt", 2))
    os.utime(new, (MTIME, MTIME))
    os.rename(new, root / "renamed.txt")
    assert fetch(server, "renamed.txt").content == content("renamed.txt", 2)


def test_file_rewritten_in_place_with_same_size_and_mtime(site: tuple[Frontd, Path]) -> None:
    """Same inode, size and mtime: only the ctime tells the change."""
    server, root = site
    served_twice(server, "rewritten.txt", content("rewritten.txt"))
    with open(root / "rewritten.txt", "r+b") as f:
        f.write(content("rewritten.txt", 2))
    os.utime(root / "rewritten.txt", (MTIME, MTIME))
    assert fetch(server, "rewritten.txt").content == content("rewritten.txt", 2)


def test_deleted_file_is_not_found(site: tuple[Frontd, Path]) -> None:
    server, root = site
    served_twice(server, "deleted.txt", content("deleted.txt"))
    (root / "deleted.txt").unlink()
    assert fetch(server, "deleted.txt").status_code == 404


def test_file_replaced_by_a_symlink_out_of_the_root_is_refused(site: tuple[Frontd, Path]) -> None:
    server, root = site
    served_twice(server, "symlinked.txt", content("symlinked.txt"))
    link = root / ".symlinked.tmp"
    link.symlink_to(root.parent / "outside.txt")
    os.rename(link, root / "symlinked.txt")
    answer = fetch(server, "symlinked.txt")
    assert answer.status_code == 403
    assert b"outside" not in answer.content


def test_ranges_conditionals_and_head_from_the_cache(site: tuple[Frontd, Path]) -> None:
    server, root = site
    data = content("ranges.txt")
    answer = served_twice(server, "ranges.txt", data)
    etag = answer.headers["etag"]
    part = fetch(server, "ranges.txt", Range="bytes=10-19")
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == "bytes 10-19/600"
    multi = fetch(server, "ranges.txt", Range="bytes=0-99,500-599")
    assert multi.status_code == 206 and multi.headers["content-type"].startswith("multipart/byteranges")
    assert data[:100] in multi.content and data[500:] in multi.content
    assert fetch(server, "ranges.txt", **{"If-None-Match": etag}).status_code == 304
    head = requests.head(server.url("/ranges.txt"), timeout=10)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "600"


def test_eviction_keeps_answers_right(site: tuple[Frontd, Path]) -> None:
    """Three files of 600 bytes in a 1500-byte cache: each request may evict another."""
    server, root = site
    for _ in range(3):
        for name in ("a.txt", "b.txt", "c.txt"):
            assert fetch(server, name).content == content(name)


# -- permissions: the worker must not be root, or every file is readable ---------------------


@pytest.fixture
def unprivileged(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Frontd, Path]]:
    """frontd whose worker runs as nobody (when the tests run as root) or as this user."""
    top = ""
    if os.geteuid() == 0:
        python, pythonpath = python_for_nobody()
        monkeypatch.setattr(tests.conftest, "frontd_command", lambda: [python, "-m", "frontd"])
        monkeypatch.setenv("PYTHONPATH", pythonpath)
        top = 'user = "nobody"\n'
    root = shared_dir / "www"
    root.mkdir(mode=0o755)
    (root / "sub").mkdir(mode=0o755)
    for path in (root / "locked.txt", root / "sub" / "inner.txt"):
        path.write_bytes(content(path.name))
        path.chmod(0o644)
    server = start_frontd(shared_dir, f'[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "{root}"\n',
                          top=top + f'workers = 1\nerror_log = "{shared_dir}/error.log"\n'
                                    f'access_log = "{shared_dir}/access.log"\n', wait=False)
    server.error_log = shared_dir / "error.log"
    server.access_log = shared_dir / "access.log"
    try:
        wait_listening(server, shared_dir / "frontd.conf.stderr")
        settle([root / "locked.txt", root / "sub" / "inner.txt"])
        yield server, root
    finally:
        server.stop()


def test_file_made_unreadable_stops_being_served(unprivileged: tuple[Frontd, Path]) -> None:
    server, root = unprivileged
    locked = root / "locked.txt"
    served_twice(server, "locked.txt", content("locked.txt"))
    locked.chmod(0)
    assert fetch(server, "locked.txt").status_code == 403
    locked.chmod(0o644)
    assert fetch(server, "locked.txt").content == content("locked.txt")


def test_directory_made_unsearchable_stops_serving_its_files(unprivileged: tuple[Frontd, Path]) -> None:
    server, root = unprivileged
    served_twice(server, "sub/inner.txt", content("inner.txt"))
    (root / "sub").chmod(0o700)  # the owner's alone: the worker may no longer look inside
    try:
        assert fetch(server, "sub/inner.txt").status_code == 404
    finally:
        (root / "sub").chmod(0o755)
    assert fetch(server, "sub/inner.txt").content == content("inner.txt")

