"""Which event loop a worker runs on: the `event_loop` key, FRONTD_EVENT_LOOP over it."""

from __future__ import annotations

import importlib.util

import pytest

from frontd.server.worker import EVENT_LOOP_ENV, loop_factory

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert loop_factory("asyncio") is None


def test_environment_overrides_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert loop_factory("uvloop") is None


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")
def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    factory = loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


@pytest.mark.skipif(HAS_UVLOOP, reason="uvloop is installed")
def test_uvloop_missing_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    assert loop_factory("asyncio") is None
