"""Certificate state paths and atomic writes (frontd/certs/store.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from frontd.certs import store


def test_paths(tmp_path: Path) -> None:
    s = str(tmp_path)
    assert store.certificate_paths(s, "example.test") == (
        f"{s}/certificates/example.test/fullchain.pem", f"{s}/certificates/example.test/privkey.pem")
    assert store.internal_ca_paths(s) == (f"{s}/internal/ca.pem", f"{s}/internal/ca-key.pem")
    assert store.http01_challenge_dir(s) == f"{s}/challenges/http-01"
    assert store.http01_challenge_path(s, "tok_en-1") == f"{s}/challenges/http-01/tok_en-1"
    assert store.tls_alpn01_path(s, "example.test") == f"{s}/challenges/tls-alpn-01/example.test.pem"


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", ".hidden", "a\0b", "a..b"])
def test_unsafe_names_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        store.certificate_paths(str(tmp_path), name)
    with pytest.raises(ValueError):
        store.http01_challenge_path(str(tmp_path), name)


def test_write_pair_modes_and_no_temp_left(tmp_path: Path) -> None:
    cert, key = store.write_certificate_pair(str(tmp_path), "example.test", b"CHAIN", b"KEY")
    assert Path(cert).read_bytes() == b"CHAIN" and Path(key).read_bytes() == b"KEY"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cert).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.dirname(cert)).st_mode) == 0o700
    store.write_certificate_pair(str(tmp_path), "example.test", b"CHAIN2", b"KEY2")
    assert Path(cert).read_bytes() == b"CHAIN2"
    assert sorted(os.listdir(os.path.dirname(cert))) == ["fullchain.pem", "privkey.pem"]


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.pem"
    store.write_atomic(str(path), b"old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken)
    with pytest.raises(OSError):
        store.write_atomic(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.pem"]
