"""Apache's htpasswd files as a worker keeps them, read again whenever the file changes.

The file format and `read_htpasswd` (what `frontd -t` runs) are in frontd/http/passwords.py;
`PasswordFile` is what a worker keeps: the users, the
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

from frontd.http.passwords import (
    HtpasswdError,
    StoredHash,
    file_identity,
    read_htpasswd,
)

RECHECK_INTERVAL = 1.0  # seconds between two looks at the file's identity
CACHE_TTL = 30.0  # seconds a successful check is remembered
CACHE_SIZE = 1024  # remembered successes per file; the oldest goes first
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
                identity: tuple[int, int, int, int] | None = file_identity(os.stat(self.path))
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
