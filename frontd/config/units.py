"""Sizes and durations from `frontd.conf`, converted once: to int bytes and float seconds.

Sizes are integers of bytes or strings such as "512", "16KiB", "10MiB", "1GiB", and nginx's "16k",
"16K", "10M", "1G" (powers of 1024, like nginx). Durations are numbers of seconds or strings such as
"750ms", "30s", "5m", "1h", "1m30s".
"""

from __future__ import annotations

import json
import math
import re

from frontd.config.model import ConfigError

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    # nginx's suffixes: "k"/"K" and "m"/"M" are KiB and MiB (ngx_parse_size), "g"/"G" GiB.
    "k": 1024,
    "K": 1024,
    "m": 1024**2,
    "M": 1024**2,
    "g": 1024**3,
    "G": 1024**3,
}
_SIZE_RE = re.compile(r"([0-9]{1,19}) ?([A-Za-z]*)")
_MAX_SIZE = 2**63 - 1  # what an off_t holds

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = r"[0-9]{1,12}(?:\.[0-9]{1,9})?"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART}(?:ms|s|m|h))+|{_DURATION_PART}")
_DURATION_PARTS_RE = re.compile(rf"({_DURATION_PART})(ms|s|m|h)")


def show(value: object) -> str:
    """A TOML value as the user wrote it, for error messages: strings quoted, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def parse_size(value: object, where: str) -> int:
    """Bytes from an integer or a string such as "16KiB" or nginx's "16k"; ConfigError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where}: size must not be negative, got {value}")
        if value > _MAX_SIZE:
            raise ConfigError(f"{where}: size {value} is too large")
        return value
    if not isinstance(value, str):
        raise ConfigError(
            f'{where}: expected a size (bytes, or a string such as "16KiB"), got {show(value)}'
        )
    if value.startswith("-"):
        raise ConfigError(f"{where}: size must not be negative, got {show(value)}")
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ConfigError(
            f'{where}: bad size {show(value)} (expected bytes, or a number with B, KiB, MiB, GiB, '
            f'or nginx\'s k, m, g, e.g. "16KiB")'
        )
    number, unit = match.groups()
    if unit not in _SIZE_UNITS:
        raise ConfigError(
            f'{where}: bad size {show(value)}: unknown unit "{unit}" '
            f"(expected B, KiB, MiB, GiB, or nginx's k, m, g; all powers of 1024)"
        )
    size = int(number) * _SIZE_UNITS[unit]
    if size > _MAX_SIZE:
        raise ConfigError(f"{where}: size {show(value)} is too large")
    return size


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a string such as "750ms", "30s", "5m", "1h"; ConfigError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ConfigError(f"{where}: duration must be a finite number of seconds, got {value}")
        if seconds < 0:
            raise ConfigError(f"{where}: duration must not be negative, got {value}")
        return seconds
    if not isinstance(value, str):
        raise ConfigError(
            f'{where}: expected a duration (seconds, or a string such as "30s"), got {show(value)}'
        )
    if value.startswith("-"):
        raise ConfigError(f"{where}: duration must not be negative, got {show(value)}")
    if _DURATION_RE.fullmatch(value) is None:
        raise ConfigError(
            f'{where}: bad duration {show(value)} (expected seconds, or a number with ms, s, m, h, '
            f'e.g. "750ms", "30s", "5m", "1h")'
        )
    parts = _DURATION_PARTS_RE.findall(value)
    if not parts:  # a bare number: seconds
        return float(value)
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def format_size(size: int) -> str:
    """The shortest exact spelling of a size: 16384 -> "16KiB", 1000 -> "1000"."""
    for unit in ("GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_duration(seconds: float) -> str:
    """A duration as written in frontd.conf: 0.75 -> "750ms", 30.0 -> "30s"."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


_RATE_RE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?) ?/ ?(s|m|h)")
_RATE_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: object, where: str) -> float:
    """Events per second from a positive number (per second) or a string such as "50/s", "600/m"
    or "100/h"; ConfigError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        rate = float(value)
    elif isinstance(value, str) and (match := _RATE_RE.fullmatch(value)) is not None:
        rate = float(match.group(1)) / _RATE_UNITS[match.group(2)]
    else:
        raise ConfigError(f'{where}: expected a rate such as "50/s", "600/m" or "100/h", got {show(value)}')
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"{where}: a rate must be more than 0, got {show(value)}")
    return rate


def format_rate(rate: float) -> str:
    """A rate as written in frontd.conf: 50.0 -> "50/s", 0.5 -> "30/m"."""
    for unit in ("s", "m", "h"):
        count = rate * _RATE_UNITS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}/{unit}"
    return f"{rate:g}/s"
