"""Whether a given user may read, write or execute a path: what `frontd -t` needs to know ahead.

`frontd -t` often runs as root while the files it checks are opened by someone else: the workers'
`user`, or a spawned application's. `os.access` only answers for the caller, so the classic Unix
rule is computed here from `stat` for any uid and group list: owner bits for the owner, else group
bits for a member, else the others' bits; root may read and write anything and execute a file that
has any execute bit. To reach a path, every directory above it needs search (x) permission.
ACLs and read-only mounts are only seen through `os.access`, for frontd's own identity.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

READ, WRITE, EXECUTE = 4, 2, 1  # the rwx bits, as in each triple of st_mode


@dataclass(frozen=True, slots=True)
class Identity:
    """A user as the kernel sees it: uid, primary gid and supplementary groups; `name` for messages."""

    uid: int
    gids: frozenset[int]
    name: str

    @classmethod
    def current(cls) -> Identity:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(uid, frozenset({os.getegid(), *os.getgroups()}), name)

    @classmethod
    def of(cls, user: str, group: str | None = None) -> Identity:
        """The identity `user` gets from initgroups (its groups) with `group` (or its own) as gid.
        KeyError when the user or group does not exist."""
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group is not None else entry.pw_gid
        gids = {gid, entry.pw_gid}
        gids.update(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)
        return cls(entry.pw_uid, frozenset(gids), entry.pw_name)

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


def allowed(st: os.stat_result, want: int, who: Identity) -> bool:
    """Whether `who` has every permission in `want` (READ|WRITE|EXECUTE bits) on a file with `st`."""
    mode = stat.S_IMODE(st.st_mode)
    if who.uid == 0:
        if want & EXECUTE and not stat.S_ISDIR(st.st_mode):
            return bool(mode & 0o111)
        return True
    if st.st_uid == who.uid:
        bits = mode >> 6
    elif st.st_gid in who.gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def unreachable(path: str, who: Identity) -> str | None:
    """The first directory above `path` (absolute), as written and then with symbolic links
    resolved (the kernel walks both), that `who` cannot search; or None."""
    return _unreachable(os.path.abspath(path), who) or _unreachable(os.path.realpath(path), who)


def _unreachable(path: str, who: Identity) -> str | None:
    parts = os.path.dirname(path).split("/")
    for i in range(1, len(parts)):
        directory = "/".join(parts[: i + 1]) or "/"
        try:
            st = os.stat(directory)
        except OSError:
            return None  # a missing directory is reported by the caller, with what it is for
        if stat.S_ISDIR(st.st_mode) and not allowed(st, EXECUTE, who):
            return directory
    if not allowed(os.stat("/"), EXECUTE, who):
        return "/"
    return None


def may(path: str, want: int, who: Identity) -> bool:
    """Whether `who` may use the existing `path` (symlinks followed) as `want` says, every
    directory above it included; for frontd's own identity, as the kernel answers (os.access)."""
    if who.is_self:
        flags = (os.R_OK if want & READ else 0) | (os.W_OK if want & WRITE else 0) | (
            os.X_OK if want & EXECUTE else 0)
        return os.access(path, flags, effective_ids=os.access in os.supports_effective_ids)
    try:
        st = os.stat(path)
    except OSError:
        return False
    return unreachable(path, who) is None and allowed(st, want, who)


def interpreter(path: str) -> str | None:
    """The interpreter a `#!` line names (execve(2) runs it with the script), or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip()
    if not line:
        return None
    return os.fsdecode(line.split()[0])
