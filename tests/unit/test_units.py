"""Sizes to int bytes and durations to float seconds, and the exact message for each bad value."""

from __future__ import annotations

import pytest

from frontd.config.model import ConfigError
from frontd.config.units import format_duration, format_rate, format_size, parse_duration, parse_rate, parse_size, show


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("512B", 512),
        ("16KiB", 16 * 1024),
        ("16 KiB", 16 * 1024),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        # nginx's suffixes are powers of 1024 too (ngx_parse_size).
        ("16k", 16 * 1024),
        ("16K", 16 * 1024),
        ("10m", 10 * 1024**2),
        ("10M", 10 * 1024**2),
        ("1g", 1024**3),
        ("1G", 1024**3),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    size = parse_size(value, "limits.max_body_size")
    assert size == expected and type(size) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "size must not be negative, got -1"),
        ("-1KiB", 'size must not be negative, got "-1KiB"'),
        ("10MB", 'bad size "10MB": unknown unit "MB" (expected B, KiB, MiB, GiB, or nginx\'s k, m, g; '
                 "all powers of 1024)"),
        ("16kib", 'bad size "16kib": unknown unit "kib" (expected B, KiB, MiB, GiB, or nginx\'s k, m, g; '
                  "all powers of 1024)"),
        ("", 'bad size "" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, g, '
             'e.g. "16KiB")'),
        ("1.5MiB", 'bad size "1.5MiB" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, '
                   'g, e.g. "16KiB")'),
        (" 12", 'bad size " 12" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, g, '
                'e.g. "16KiB")'),
        ("1_2", 'bad size "1_2" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, g, '
                'e.g. "16KiB")'),
        ("١٢", 'bad size "١٢" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, g, '
               'e.g. "16KiB")'),
        ("12\n", 'bad size "12\\n" (expected bytes, or a number with B, KiB, MiB, GiB, or nginx\'s k, m, g, '
                 'e.g. "16KiB")'),
        (1.5, 'expected a size (bytes, or a string such as "16KiB"), got 1.5'),
        (True, 'expected a size (bytes, or a string such as "16KiB"), got true'),
        ([1], 'expected a size (bytes, or a string such as "16KiB"), got an array'),
        (2**63, f"size {2**63} is too large"),
        ("9999999999GiB", 'size "9999999999GiB" is too large'),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(value, "limits.max_body_size")
    assert str(info.value) == f"limits.max_body_size: {message}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("0.5", 0.5),
        ("750ms", 0.75),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h5m", 3900.0),
    ],
)
def test_parse_duration(value: object, expected: float) -> None:
    seconds = parse_duration(value, "timeout")
    assert seconds == pytest.approx(expected) and type(seconds) is float


BAD_DURATION = (
    'bad duration {} (expected seconds, or a number with ms, s, m, h, e.g. "750ms", "30s", "5m", "1h")'
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-5, "duration must not be negative, got -5"),
        ("-5s", 'duration must not be negative, got "-5s"'),
        ("10 sec", BAD_DURATION.format('"10 sec"')),
        ("10sec", BAD_DURATION.format('"10sec"')),
        ("5d", BAD_DURATION.format('"5d"')),
        ("", BAD_DURATION.format('""')),
        ("s", BAD_DURATION.format('"s"')),
        ("1e3", BAD_DURATION.format('"1e3"')),
        (float("nan"), "duration must be a finite number of seconds, got nan"),
        (float("inf"), "duration must be a finite number of seconds, got inf"),
        (False, 'expected a duration (seconds, or a string such as "30s"), got false'),
        ({}, 'expected a duration (seconds, or a string such as "30s"), got a table'),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "timeout")
    assert str(info.value) == f"timeout: {message}"


def test_format_round_trip() -> None:
    for text in ("16KiB", "10MiB", "1GiB", "1000"):
        assert format_size(parse_size(text, "x")) == text
    assert format_size(0) == "0"
    assert format_duration(0.75) == "750ms"
    assert format_duration(30.0) == "30s"
    assert format_duration(0.0) == "0s"


def test_show() -> None:
    assert show("two") == '"two"'
    assert show('a"b\n') == '"a\\"b\\n"'
    assert show(True) == "true"
    assert show(3) == "3"
    assert show([1]) == "an array"
    assert show({"a": 1}) == "a table"


@pytest.mark.parametrize(("value", "rate"), [
    ("50/s", 50.0), ("600/m", 10.0), ("1/h", 1 / 3600), ("0.5/s", 0.5), ("30 / m", 0.5), (20, 20.0), (2.5, 2.5),
])
def test_rates(value: object, rate: float) -> None:
    assert parse_rate(value, "limits.client_rate") == pytest.approx(rate)


@pytest.mark.parametrize("value", ["50", "50/d", "-1/s", "/s", "1e3/s", True, 0, -2.0, float("inf")])
def test_bad_rates(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^limits\.client_rate: "):
        parse_rate(value, "limits.client_rate")


@pytest.mark.parametrize(("rate", "text"), [(50.0, "50/s"), (0.5, "30/m"), (1 / 3600, "1/h"), (2.5, "150/m")])
def test_format_rate(rate: float, text: str) -> None:
    assert format_rate(rate) == text
