"""Fixtures for the lake tests: collector processes that are always stopped, whatever the test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lake.cluster import Collector


@pytest.fixture
def spawn() -> Iterator[Callable[..., Collector]]:
    """``spawn(env)`` starts a collector process; every one still running is SIGKILLed at teardown."""
    started: list[Collector] = []

    def start(env: Any) -> Collector:
        collector = Collector(env).start()
        started.append(collector)
        return collector

    yield start
    for collector in started:
        if collector.proc is not None:
            collector.kill()
