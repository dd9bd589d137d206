"""frontd.handlers.file_cache: keys, the settle rule, the LRU bound; and `[limits] file_cache_size`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from frontd.config.load import ConfigError, load_config
from frontd.config.summary import summary
from frontd.handlers.file_cache import SETTLED_NS, CachedFile, FileCache, file_key
from frontd.http.dates import http_date


def data(entry: CachedFile | None) -> bytes | None:
    return entry.data if entry is not None else None


def settled_stat(path: Path, data: bytes) -> os.stat_result:
    """A stat of `path` holding `data`, its ctime moved past the settling age (as
    seen by the cache) by a stat_result copy: the kernel sets ctime only to now."""
    path.write_bytes(data)
    st = os.stat(path)
    values = list(st)
    fields = {name: getattr(st, name) for name in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns")}
    fields["st_ctime_ns"] -= 2 * SETTLED_NS
    return os.stat_result(values, fields)


def test_a_kept_file_is_found_by_its_stat(tmp_path: Path) -> None:
    cache = FileCache(1024)
    st = settled_stat(tmp_path / "a", b"abc")
    kept = cache.put(st, b"abc")
    assert kept is not None and cache.get(st) is kept
    assert kept.data == b"abc"
    assert kept.etag == b'"%x-3"' % st.st_mtime_ns
    assert kept.last_modified == http_date(st.st_mtime)
    assert len(cache) == 1 and cache.size == 3


def test_each_part_of_the_key_counts(tmp_path: Path) -> None:
    st = settled_stat(tmp_path / "a", b"abc")
    key = file_key(st)
    assert key == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cache = FileCache(1024)
    cache.put(st, b"abc")
    for index in range(len(key)):
        other = list(key)
        other[index] += 1
        assert tuple(other) not in cache._entries


def test_a_fresh_file_is_not_kept(tmp_path: Path) -> None:
    """A ctime within the last two seconds may be shared by a write still to come."""
    cache = FileCache(1024)
    path = tmp_path / "a"
    path.write_bytes(b"abc")
    st = os.stat(path)
    assert time.time_ns() - st.st_ctime_ns < SETTLED_NS
    assert not cache.wanted(st)
    assert cache.put(st, b"abc") is None
    assert cache.get(st) is None


def test_a_short_read_is_not_kept(tmp_path: Path) -> None:
    cache = FileCache(1024)
    st = settled_stat(tmp_path / "a", b"abcd")
    assert cache.put(st, b"abc") is None  # the file shrank between fstat and read
    assert cache.get(st) is None


def test_files_over_the_size_limit_are_not_kept(tmp_path: Path) -> None:
    cache = FileCache(1 << 20, max_file=4)
    small = settled_stat(tmp_path / "small", b"1234")
    big = settled_stat(tmp_path / "big", b"12345")
    assert cache.wanted(small) and not cache.wanted(big)
    cache.put(big, b"12345")
    assert cache.get(big) is None
    # Never more per file than the whole cache holds.
    assert FileCache(3).max_file == 3


def test_least_recently_used_goes_first(tmp_path: Path) -> None:
    cache = FileCache(10)
    a = settled_stat(tmp_path / "a", b"aaaa")
    b = settled_stat(tmp_path / "b", b"bbbb")
    c = settled_stat(tmp_path / "c", b"cccc")
    cache.put(a, b"aaaa")
    cache.put(b, b"bbbb")
    assert data(cache.get(a)) == b"aaaa"  # a is now the most recent
    cache.put(c, b"cccc")  # 12 bytes > 10: b goes
    assert cache.get(b) is None
    assert data(cache.get(a)) == b"aaaa" and data(cache.get(c)) == b"cccc"
    assert cache.size == 8
    cache.put(a, b"aaaa")  # the same key again is not counted twice
    assert cache.size == 8 and len(cache) == 2


VHOST = '[[vhost]]\nnames = ["example.test"]\nroot = "www"\n'


@pytest.mark.parametrize(("value", "expected"), [(None, 16 << 20), ('"1MiB"', 1 << 20), ("0", 0)])
def test_file_cache_size_key(tmp_path: Path, value: str | None, expected: int) -> None:
    (tmp_path / "www").mkdir()
    conf = tmp_path / "frontd.conf"
    conf.write_text(VHOST + ("" if value is None else f"[limits]\nfile_cache_size = {value}\n"))
    config = load_config(str(conf))
    assert config.limits.file_cache_size == expected
    # `frontd -t` shows it as a size, as it is written.
    assert f"file_cache_size={({16 << 20: '16MiB', 1 << 20: '1MiB', 0: 'off'})[expected]}" in summary(config)


def test_file_cache_size_must_not_be_negative(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    conf = tmp_path / "frontd.conf"
    conf.write_text(VHOST + "[limits]\nfile_cache_size = -1\n")
    with pytest.raises(ConfigError, match="limits.file_cache_size: size must not be negative, got -1"):
        load_config(str(conf))
