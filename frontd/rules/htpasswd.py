"""Apache's htpasswd files: `user:hash` lines, read at load and again whenever the file changes.

`read_htpasswd` is what `frontd -t` runs; `PasswordFile` is what a worker keeps: the users, the
file's identity (inode, size, mtime) looked at again at most once a second, and a short-lived
cache of successful checks keyed by an HMAC of the credentials (never the password itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from frontd.rules.passwords import StoredHash, UnsupportedHash, parse_hash

RECHECK_INTERVAL = 1.0  # seconds between two looks at the file's identity
CACHE_TTL = 30.0  # seconds a successful check is remembered
CACHE_SIZE = 1024  # remembered successes per file; the oldest goes first
MAX_FILE_SIZE = 16 * 1024 * 1024
# Threads that check passwords, per worker: a flood of wrong passwords queues here and never
# takes the event loop's default executor from others.
HASH_THREADS = 2
_executor: ThreadPoolExecutor | None = None


def _hashing() -> ThreadPoolExecutor:
    """The worker's password-checking threads, made on first use (after the fork: threads do not
    survive one)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="frontd-password")
    return _executor


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


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
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
    return parse_htpasswd(data, path), _identity(st)


@dataclass(slots=True, eq=False)
class PasswordFile:
    """One htpasswd file as a worker uses it (shared by every vhost and route that names it)."""

    path: str
    users: dict[bytes, StoredHash] = field(default_factory=dict)
    identity: tuple[int, int, int, int] | None = None
    checked: float = float("-inf")
    error: str | None = None
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    cache: dict[bytes, tuple[float, bytes]] = field(default_factory=dict)

    def current(self) -> dict[bytes, StoredHash]:
        """The users, re-read when the file changed (looked at once a second at most);
        HtpasswdError when the file cannot be used now (the caller answers 500)."""
        now = time.monotonic()
        if now - self.checked >= RECHECK_INTERVAL:
            self.checked = now
            try:
                identity: tuple[int, int, int, int] | None = _identity(os.stat(self.path))
            except OSError as exc:
                identity, self.error = None, f"{self.path}: cannot read: {exc.strerror or exc}"
            if identity is not None and identity != self.identity:
                try:
                    self.users, self.identity = read_htpasswd(self.path)
                    self.error = None
                except HtpasswdError as exc:
                    self.error, self.identity = str(exc), None
                self.cache.clear()
        if self.error is not None:
            raise HtpasswdError(self.error)
        return self.users

    async def verify(self, user: bytes, password: bytes) -> bool:
        """Whether the password is the user's. Hashing runs in a thread: bcrypt costs tens of
        milliseconds by design, which the event loop must not wait for."""
        stored = self.current().get(user)
        if stored is None:
            return False
        digest = hmac.new(self.key, user + b"\0" + password, hashlib.sha256).digest()
        now = time.monotonic()
        hit = self.cache.get(digest)
        if hit is not None and hit[0] > now and hit[1] == stored.text:
            return True
        if stored.expensive:
            ok = await asyncio.get_running_loop().run_in_executor(_hashing(), stored.verify, password)
        else:
            ok = stored.verify(password)
        if ok:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.pop(next(iter(self.cache)))
            self.cache[digest] = (now + CACHE_TTL, stored.text)
        return ok
