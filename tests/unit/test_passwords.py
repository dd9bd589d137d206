"""Password hashes against vectors made by the real tools (tests/data/password_vectors.txt:
Debian's htpasswd and mkpasswd), and the htpasswd file's re-reading and cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from frontd.http.passwords import md5_crypt, parse_hash, sha_crypt
from frontd.rules import htpasswd as htpasswd_module
from frontd.rules.htpasswd import HtpasswdError, PasswordFile

DATA = Path(__file__).resolve().parents[1] / "data" / "password_vectors.txt"
VECTORS = [tuple(line.split("\t")) for line in DATA.read_text(encoding="utf-8").splitlines()
           if line and not line.startswith("#")]


def test_every_format_is_in_the_vectors() -> None:
    schemes = {parse_hash(h.encode()).scheme for _, h in VECTORS}
    assert schemes == {"bcrypt", "sha256-crypt", "sha512-crypt", "md5-crypt", "sha1"}
    assert any(h.startswith("$apr1$") for _, h in VECTORS) and any(h.startswith("$1$") for _, h in VECTORS)
    assert any("rounds=" in h for _, h in VECTORS)


@pytest.mark.parametrize(("password", "stored"), VECTORS)
def test_vector(password: str, stored: str) -> None:
    parsed = parse_hash(stored.encode())
    assert parsed.verify(password.encode())
    assert not parsed.verify(password.encode() + b"x")
    assert not parsed.verify(password.encode()[:-1])


def test_crypt_functions_rebuild_the_vectors() -> None:
    """The hash text itself, not only a yes: the salt, rounds and encoding are written back exactly."""
    for password, stored in VECTORS:
        if stored.startswith(("$5$", "$6$")):
            head, _, _ = stored.rpartition("$")
            parts = head.split("$")
            rounds = int(parts[2][7:]) if parts[2].startswith("rounds=") else None
            salt = parts[-1]
            assert sha_crypt(password.encode(), salt.encode(), rounds, int(parts[1])).decode() == stored
        elif stored.startswith(("$1$", "$apr1$")):
            magic, salt = stored.split("$")[1], stored.split("$")[2]
            assert md5_crypt(password.encode(), salt.encode(), f"${magic}$".encode()).decode() == stored


def test_bcrypt_over_72_bytes_never_matches() -> None:
    stored = next(h for _, h in VECTORS if h.startswith("$2y$"))
    assert not parse_hash(stored.encode()).verify(b"x" * 100)


def test_file_is_reread_when_it_changes_and_cache_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha1 = {pw: h for pw, h in VECTORS if h.startswith("{SHA}")}
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{sha1['secret']}\n")
    clock = [100.0]
    monkeypatch.setattr(htpasswd_module.time, "monotonic", lambda: clock[0])
    file = PasswordFile(str(path))
    assert asyncio.run(file.verify(b"alice", b"secret"))
    assert len(file.cache) == 1 and b"secret" not in b"".join(file.cache)  # keyed by an HMAC
    path.write_text(f"alice:{sha1['pässwörd']}\n")
    os.utime(path, ns=(1, 1))  # a new identity even within the same clock tick
    assert asyncio.run(file.verify(b"alice", b"secret"))  # not looked at again within a second
    clock[0] += 1.5
    assert not asyncio.run(file.verify(b"alice", b"secret"))
    assert asyncio.run(file.verify(b"alice", "pässwörd".encode()))
    path.unlink()
    clock[0] += 1.5
    with pytest.raises(HtpasswdError, match="cannot read"):
        asyncio.run(file.verify(b"alice", "pässwörd".encode()))  # never an open door
