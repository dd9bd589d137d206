"""The pid file (atomic write, refusal, removal only when ours) and the words for a worker's end."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from frontd.server import pidfile
from frontd.server.master import exit_description


@pytest.mark.parametrize("text, pid", [
    (b"123\n", 123), (b"123", 123), (b" 42 \n", 42),
    (b"", None), (b"0\n", None), (b"-5\n", None), (b"+5\n", None), (b"1_2\n", None), (b"12a\n", None),
    (b"\xd9\xa1\xd9\xa2\n", None),  # Arabic-Indic digits: int() would take them
    (b"99999999999\n", None),
])
def test_read_pid(tmp_path: Path, text: bytes, pid: int | None) -> None:
    path = tmp_path / "frontd.pid"
    path.write_bytes(text)
    assert pidfile.read_pid(str(path)) == pid


def test_read_pid_missing(tmp_path: Path) -> None:
    assert pidfile.read_pid(str(tmp_path / "none.pid")) is None


def test_create_writes_our_pid_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "frontd.pid"
    path.write_text("garbage\n")
    pidfile.create(str(path))
    assert path.read_text() == f"{os.getpid()}\n"
    assert os.listdir(tmp_path) == ["frontd.pid"]


def test_create_refuses_a_live_frontd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "frontd.pid"
    path.write_text("4242\n")
    monkeypatch.setattr(pidfile, "is_frontd", lambda pid: pid == 4242)
    with pytest.raises(pidfile.PidFileError, match=r"is held by frontd process 4242, which is running"):
        pidfile.create(str(path))
    assert path.read_text() == "4242\n"


def test_create_replaces_a_dead_or_foreign_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "frontd.pid"
    path.write_text("4242\n")
    monkeypatch.setattr(pidfile, "is_frontd", lambda pid: False)
    pidfile.create(str(path))
    assert path.read_text() == f"{os.getpid()}\n"


def test_remove_only_our_own(tmp_path: Path) -> None:
    path = tmp_path / "frontd.pid"
    path.write_text("4242\n")  # a newer master took the file over
    pidfile.remove(str(path))
    assert path.exists()
    path.write_text(f"{os.getpid()}\n")
    pidfile.remove(str(path))
    assert not path.exists()
    pidfile.remove(str(path))  # already gone: nothing to do


def test_signal_names_follow_nginx() -> None:
    assert pidfile.SIGNALS == {"reload": signal.SIGHUP, "stop": signal.SIGTERM, "quit": signal.SIGQUIT,
                               "reopen": signal.SIGUSR1}


@pytest.mark.parametrize("status, text", [
    (0, "exited with status 0"),
    (3 << 8, "exited with status 3"),
    (signal.SIGKILL, "killed by signal SIGKILL"),
    (signal.SIGSEGV | 0x80, "killed by signal SIGSEGV (core dumped)"),
])
def test_exit_description(status: int, text: str) -> None:
    # waitpid(2) status words as Linux builds them: exit code in bits 8-15, signal in 0-6, core flag 7.
    assert exit_description(status) == text
