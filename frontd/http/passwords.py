"""Password hashes of Apache's htpasswd files: parse a stored hash once, verify a password later.

The crypt(3) formats are implemented here, from their specifications: SHA-256/SHA-512 crypt
(`$5$`, `$6$`, Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512") and MD5 crypt (`$1$`,
and Apache's `$apr1$`, the same algorithm under another magic). The standard library's `crypt`
module is gone in Python 3.13. bcrypt (`$2y$`, `$2b$`, `$2a$`) is the `bcrypt` package's.
`{SHA}` is base64 of SHA-1. Plain text and DES crypt are refused: they are not worth a lock.

Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt

ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SHA_ROUNDS_DEFAULT = 5000
SHA_ROUNDS_MIN, SHA_ROUNDS_MAX = 1000, 999_999_999
MD5_MAGICS: tuple[bytes, ...] = (b"$1$", b"$apr1$")

# The order in which SHA-crypt and MD5-crypt spread the final digest over the base-64 text: groups
# of three bytes, each written as four characters, the last group shorter.
_SHA256_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
    (27, 7, 17), (18, 28, 8), (9, 19, 29), (31, 30),
)
_SHA512_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
    (63,),
)
_MD5_ORDER: tuple[tuple[int, ...], ...] = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5), (11,))

_SHA_RE = re.compile(rb"\$([56])\$(?:rounds=([0-9]{1,9})\$)?([^$:\n]{0,16})\$([./0-9A-Za-z]+)")
_MD5_RE = re.compile(rb"(\$1\$|\$apr1\$)([^$:\n]{0,8})\$([./0-9A-Za-z]{22})")
_BCRYPT_RE = re.compile(rb"\$2[aby]\$[0-9]{2}\$[./0-9A-Za-z]{53}")
_SHA1_RE = re.compile(rb"\{SHA\}[A-Za-z0-9+/]{27}=")
_DES_RE = re.compile(rb"[./0-9A-Za-z]{13}")


class UnsupportedHash(ValueError):
    """A stored hash frontd does not accept; the message says which kind it is."""


def _b64(digest: bytes, order: tuple[tuple[int, ...], ...]) -> bytes:
    """crypt(3)'s base 64: each group's bytes as one big-endian number, 6 bits at a time, low first."""
    out = bytearray()
    for group in order:
        value = 0
        for index in group:
            value = (value << 8) | digest[index]
        for _ in range(len(group) + 1):
            out.append(ALPHABET[value & 0x3F])
            value >>= 6
    return bytes(out)


def sha_crypt(password: bytes, salt: bytes, rounds: int | None, variant: int) -> bytes:
    """SHA-256 (`variant` 5) or SHA-512 (6) crypt, as glibc's crypt(3) writes it."""
    new = hashlib.sha256 if variant == 5 else hashlib.sha512
    size = 32 if variant == 5 else 64
    salt = salt[:16]
    count = SHA_ROUNDS_DEFAULT if rounds is None else min(max(rounds, SHA_ROUNDS_MIN), SHA_ROUNDS_MAX)
    b = new(password + salt + password).digest()
    a = new(password + salt)
    n = len(password)
    while n > size:
        a.update(b)
        n -= size
    a.update(b[:n])
    n = len(password)
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    c = a.digest()
    dp = new(password * len(password)).digest()
    p = (dp * (len(password) // size + 1))[: len(password)]
    ds = new(salt * (16 + c[0])).digest()
    s = (ds * (len(salt) // size + 1))[: len(salt)]
    for i in range(count):
        h = new(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    head = b"$%d$" % variant + (b"rounds=%d$" % count if rounds is not None else b"") + salt + b"$"
    return head + _b64(c, _SHA256_ORDER if variant == 5 else _SHA512_ORDER)


def md5_crypt(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> bytes:
    """MD5 crypt (Poul-Henning Kamp's `$1$`; Apache's `$apr1$` differs only in the magic)."""
    salt = salt[:8]
    ctx = hashlib.md5(password + magic + salt)
    final = hashlib.md5(password + salt + password).digest()
    n = len(password)
    while n > 0:
        ctx.update(final[: min(16, n)])
        n -= 16
    n = len(password)
    while n:
        ctx.update(b"\0" if n & 1 else password[:1])
        n >>= 1
    final = ctx.digest()
    for i in range(1000):
        h = hashlib.md5(password if i & 1 else final)
        if i % 3:
            h.update(salt)
        if i % 7:
            h.update(password)
        h.update(final if i & 1 else password)
        final = h.digest()
    return magic + salt + b"$" + _b64(final, _MD5_ORDER)


@dataclass(frozen=True, slots=True)
class StoredHash:
    """One user's hash from the file, checked for its format when the file is read."""

    text: bytes
    scheme: str  # "bcrypt", "sha256-crypt", "sha512-crypt", "md5-crypt", "sha1"
    expensive: bool  # worth a thread: bcrypt and the crypt(3) formats

    def verify(self, password: bytes) -> bool:
        return _VERIFY[self.scheme](self.text, password)


def _verify_bcrypt(stored: bytes, password: bytes) -> bool:
    if len(password) > 72:
        return False  # bcrypt 5 refuses longer passwords; older ones cut them, htpasswd too
    # `checkpw` compares in constant time; $2y$ (PHP's, htpasswd's) is $2b$ under another name.
    return bcrypt.checkpw(password, b"$2b$" + stored[4:] if stored.startswith(b"$2y$") else stored)


def _verify_sha(stored: bytes, password: bytes) -> bool:
    match = _SHA_RE.fullmatch(stored)
    assert match is not None
    rounds = int(match.group(2)) if match.group(2) else None
    return hmac.compare_digest(sha_crypt(password, match.group(3), rounds, int(match.group(1))), stored)


def _verify_md5(stored: bytes, password: bytes) -> bool:
    match = _MD5_RE.fullmatch(stored)
    assert match is not None
    return hmac.compare_digest(md5_crypt(password, match.group(2), match.group(1)), stored)


def _verify_sha1(stored: bytes, password: bytes) -> bool:
    return hmac.compare_digest(b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest()), stored)


_VERIFY: dict[str, Callable[[bytes, bytes], bool]] = {
    "bcrypt": _verify_bcrypt, "sha256-crypt": _verify_sha, "sha512-crypt": _verify_sha,
    "md5-crypt": _verify_md5, "sha1": _verify_sha1,
}


def parse_hash(text: bytes) -> StoredHash:
    """The stored hash of one htpasswd line; UnsupportedHash names what it is when refused."""
    if _BCRYPT_RE.fullmatch(text):
        return StoredHash(text, "bcrypt", True)
    match = _SHA_RE.fullmatch(text)
    if match is not None:
        expected = 43 if match.group(1) == b"5" else 86
        if len(match.group(4)) != expected:
            raise UnsupportedHash("a SHA-crypt hash of the wrong length")
        return StoredHash(text, "sha256-crypt" if match.group(1) == b"5" else "sha512-crypt", True)
    if _MD5_RE.fullmatch(text):
        return StoredHash(text, "md5-crypt", True)
    if _SHA1_RE.fullmatch(text):
        return StoredHash(text, "sha1", False)
    if text.startswith((b"$1$", b"$apr1$", b"$2", b"$5$", b"$6$", b"{SHA}")):
        raise UnsupportedHash("a malformed hash")
    if _DES_RE.fullmatch(text):
        raise UnsupportedHash("DES crypt (htpasswd -d) is refused: it keeps only 8 characters "
                              "and is cracked in hours; use htpasswd -B (bcrypt)")
    if text.startswith(b"$"):
        raise UnsupportedHash(f"unknown hash scheme {text.split(b'$')[1][:10].decode('latin-1')!r}; "
                              "use htpasswd -B (bcrypt)")
    raise UnsupportedHash("a plain-text password (htpasswd -p) is refused; use htpasswd -B (bcrypt)")


MAX_FILE_SIZE = 16 * 1024 * 1024  # an htpasswd file larger than this is refused


class HtpasswdError(Exception):
    """The file cannot be used: missing, unreadable, or a line frontd refuses (with its number)."""


def parse_htpasswd(data: bytes, path: str) -> dict[bytes, StoredHash]:
    """Users and their hashes; blank lines and `#` comments are skipped."""
    users: dict[bytes, StoredHash] = {}
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        user, colon, stored = line.partition(b":")
        if not colon or not user:
            raise HtpasswdError(f"{path}: line {number}: expected user:hash")
        try:
            users[user] = parse_hash(stored.strip())
        except UnsupportedHash as exc:
            raise HtpasswdError(f"{path}: line {number} (user {user.decode('utf-8', 'replace')!r}): {exc}") from None
    return users


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_htpasswd(path: str) -> tuple[dict[bytes, StoredHash], tuple[int, int, int, int]]:
    """The users of the file at `path` and the identity of what was read."""
    try:
        with open(path, "rb") as file:
            st = os.fstat(file.fileno())
            if st.st_size > MAX_FILE_SIZE:
                raise HtpasswdError(f"{path}: larger than {MAX_FILE_SIZE} bytes")
            data = file.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise HtpasswdError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_htpasswd(data, path), file_identity(st)
