"""The Unix permission rule computed for any user (config/permissions.py), from stat results."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from frontd.config.permissions import EXECUTE, READ, WRITE, Identity, allowed, interpreter


def result(mode: int, uid: int = 1000, gid: int = 1000) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


OWNER = Identity(1000, frozenset({1000}), "owner")
MEMBER = Identity(1001, frozenset({1001, 1000}), "member")
OTHER = Identity(1002, frozenset({1002}), "other")
ROOT = Identity(0, frozenset({0}), "root")


def test_owner_group_and_other_bits_each_for_their_class_only() -> None:
    st = result(stat.S_IFREG | 0o750)
    assert allowed(st, READ | WRITE | EXECUTE, OWNER)
    assert allowed(st, READ | EXECUTE, MEMBER) and not allowed(st, WRITE, MEMBER)
    assert not allowed(st, READ, OTHER)
    # The owner's bits apply to the owner even when the group's would allow more.
    assert not allowed(result(stat.S_IFREG | 0o070), READ, OWNER)


def test_root_reads_and_writes_all_but_executes_only_files_with_an_x_bit() -> None:
    assert allowed(result(stat.S_IFREG | 0o000), READ | WRITE, ROOT)
    assert not allowed(result(stat.S_IFREG | 0o644), EXECUTE, ROOT)
    assert allowed(result(stat.S_IFREG | 0o001), EXECUTE, ROOT)
    assert allowed(result(stat.S_IFDIR | 0o000), EXECUTE, ROOT)  # search: always


def test_interpreter_of_a_script(tmp_path: Path) -> None:
    script = tmp_path / "run"
    script.write_bytes(b"#! /usr/bin/env python3 -u\nprint()\n")
    assert interpreter(str(script)) == "/usr/bin/env"
    script.write_bytes(b"\x7fELF...")
    assert interpreter(str(script)) is None
    assert interpreter(str(tmp_path / "missing")) is None
