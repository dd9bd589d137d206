"""The bytes of small static files, kept per worker: `[limits] file_cache_size`.

A hit spares the open, fstat, read and close of a small file; everything else a static request
does still runs (the path walk with its `lstat` per segment, the symlink, dot-file, script and
CGI checks). An entry is keyed by the stat of the file the walk found: (device, inode, size,
mtime, ctime), in nanoseconds. So a file replaced (rename over, delete and re-create: another
inode), rewritten (mtime and ctime), or whose owner, mode or ACL changed (chmod, chown, setfacl:
ctime) is looked up under another key and opened again, and a file made unreadable stops being
served exactly as without the cache: its open fails. A directory made unsearchable makes the
walk's `lstat` fail first.

Only files whose ctime lies more than two seconds in the past are kept: a file system stamps
times at its own resolution (nanoseconds on ext4, XFS and btrfs, a second on ext3, two seconds on
FAT), so a write in the same tick as the read would otherwise leave the key unchanged beside new
bytes. Once a whole tick has passed since the ctime, a later change stamps a later ctime, away
from any key kept.

The entries form an LRU bounded in total bytes; a file over `max_file` is never kept. With the
bytes go the file's validators (ETag, Last-Modified), which depend on the stat alone; its
Content-Type depends on the name asked for, so it is not kept (two names may share an inode).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

from frontd.http.conditional import make_etag
from frontd.http.dates import http_date

# Files up to this size are kept: the size the connection sends in one write with the head.
MAX_FILE = 64 * 1024
# A ctime older than this (ns) cannot be shared by a write still to come: the coarsest time
# stamps (FAT's) tick every two seconds (see the docstring).
SETTLED_NS = 2_000_000_000

Key = tuple[int, int, int, int, int]


def file_key(st: os.stat_result) -> Key:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class CachedFile:
    """A kept file: its bytes and the validators its stat gives."""

    __slots__ = ("data", "etag", "last_modified")

    def __init__(self, data: bytes, st: os.stat_result) -> None:
        self.data = data
        self.etag = make_etag(st)
        self.last_modified = http_date(st.st_mtime)


class FileCache:
    """An LRU of file contents by `file_key`, at most `max_size` bytes in all."""

    __slots__ = ("max_size", "max_file", "size", "_entries")

    def __init__(self, max_size: int, max_file: int = MAX_FILE) -> None:
        self.max_size = max_size
        self.max_file = min(max_file, max_size)
        self.size = 0
        self._entries: OrderedDict[Key, CachedFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, st: os.stat_result) -> CachedFile | None:
        """The file of this stat, if kept."""
        key = file_key(st)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def wanted(self, st: os.stat_result) -> bool:
        """Whether a file of this stat (from its open descriptor) may be kept."""
        return st.st_size <= self.max_file and time.time_ns() - st.st_ctime_ns > SETTLED_NS

    def put(self, st: os.stat_result, data: bytes) -> CachedFile | None:
        """Keep `data`, read from the open file whose fstat is `st` after that fstat; a short
        read (the file shrank meanwhile) is not kept. The entry, or None when not kept."""
        if len(data) != st.st_size or not self.wanted(st):
            return None
        key = file_key(st)
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.size -= len(old.data)
        while entries and self.size + len(data) > self.max_size:
            self.size -= len(entries.popitem(last=False)[1].data)
        entry = entries[key] = CachedFile(data, st)
        self.size += len(data)
        return entry
