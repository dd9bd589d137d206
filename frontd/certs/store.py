"""Where certificate state lives under `[acme] storage`, and how files get there.

One function per path, so that the process that writes a file (the master, the ACME client) and the
workers that read it agree without sharing code paths:

    {storage}/certificates/{name}/fullchain.pem   leaf first, then the chain
    {storage}/certificates/{name}/privkey.pem     0600
    {storage}/internal/ca.pem                     the local CA of tls = "internal"
    {storage}/internal/ca-key.pem                 0600
    {storage}/challenges/http-01/{token}          the key authorization, one file per token
    {storage}/challenges/tls-alpn-01/{name}.pem   certificate and key for RFC 8737

`name` is a vhost's first name. Writes are atomic: a reader sees the old file or the new one,
never half of one (temp file in the same directory, fsync, rename).
"""

from __future__ import annotations

import os
import re
import tempfile

# What a file name may be made of: a host name (IDNA, so ASCII), or an ACME token (base64url).
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,253}")
# RFC 8555 §8.1: a token is base64url without padding, and may start with "-" or "_" (no dots: no "..").
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
DIRECTORY_MODE = 0o700


def _safe(name: str, what: str) -> str:
    """A path component that cannot climb out of its directory ("..", "/", NUL refused)."""
    if not _SAFE_NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"unsafe {what} for a file name: {name!r}")
    return name


def certificate_dir(storage: str, name: str) -> str:
    return os.path.join(storage, "certificates", _safe(name, "certificate name"))


def certificate_paths(storage: str, name: str) -> tuple[str, str]:
    """(fullchain.pem, privkey.pem) of the certificate for the vhost whose first name is `name`."""
    directory = certificate_dir(storage, name)
    return os.path.join(directory, "fullchain.pem"), os.path.join(directory, "privkey.pem")


def internal_ca_paths(storage: str) -> tuple[str, str]:
    """(ca.pem, ca-key.pem) of the local CA that issues tls = "internal" certificates."""
    directory = os.path.join(storage, "internal")
    return os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")


def http01_challenge_dir(storage: str) -> str:
    """Where http-01 answers live: a file per token, holding the key authorization (RFC 8555 §8.3)."""
    return os.path.join(storage, "challenges", "http-01")


def http01_challenge_path(storage: str, token: str) -> str:
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(f"not an ACME token: {token[:80]!r}")
    return os.path.join(http01_challenge_dir(storage), token)


def tls_alpn01_path(storage: str, name: str) -> str:
    """The acme-tls/1 certificate and key (one PEM file) answering RFC 8737 for `name`."""
    return os.path.join(storage, "challenges", "tls-alpn-01", f"{_safe(name, 'certificate name')}.pem")


def ensure_dir(path: str) -> None:
    """Create `path` and its parents, 0700: certificate state is nobody else's business.

    One level at a time: os.makedirs gives `mode` to the last directory only, and the parents it
    creates (`account/` above `account/HASH/`) would be 0755."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        ensure_dir(parent)
    try:
        os.mkdir(path, DIRECTORY_MODE)
    except FileExistsError:
        pass


def write_atomic(path: str, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new one, never a mix.

    The temp file is created with `mode` already set (a key is never readable by others, not even
    for a moment), fsynced, renamed over `path`, and the directory fsynced so the rename lasts.
    """
    directory = os.path.dirname(path)
    ensure_dir(directory)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_key(path: str, data: bytes) -> None:
    """A private key: written atomically, mode 0600."""
    write_atomic(path, data, PRIVATE_MODE)


def write_certificate_pair(storage: str, name: str, fullchain: bytes, key: bytes) -> tuple[str, str]:
    """Store a certificate and its key for `name`; the key first, so that a reader that finds
    the new chain also finds its key (a reader that catches the new key with the old chain
    fails to load the pair and keeps what it had)."""
    cert_path, key_path = certificate_paths(storage, name)
    write_key(key_path, key)
    write_atomic(cert_path, fullchain)
    return cert_path, key_path
