"""Wall-clock time for the agent, with a testing hook that fakes it.

``TELEMETRY_AGENT_FAKE_NOW`` (an ISO 8601 time) starts the clock at that moment and
``TELEMETRY_AGENT_FAKE_SPEED`` (default 1) makes it run that many times faster than real time, so a
test can drive hours of schedule in seconds. Both are testing hooks only: never set them in production.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from .errors import ConfigError

__all__ = ["ENV_FAKE_NOW", "ENV_FAKE_SPEED", "Clock"]

ENV_FAKE_NOW: Final = "TELEMETRY_AGENT_FAKE_NOW"
"""Testing hook: the time the agent believes it is when it starts."""
ENV_FAKE_SPEED: Final = "TELEMETRY_AGENT_FAKE_SPEED"
"""Testing hook: how many agent seconds pass per real second."""


class Clock:
    """Current time (timezone-aware UTC) and interruptible waiting measured in agent time."""

    def __init__(self, *, start: datetime | None = None, speed: float = 1.0) -> None:
        self._start = start
        self._speed = speed
        self._t0 = time.monotonic()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Clock:
        """The real clock, or a fake one when the testing hooks are set."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_FAKE_NOW)
        if not text:
            return cls()
        try:
            start = datetime.fromisoformat(text.replace("Z", "+00:00"))
            speed = float(env.get(ENV_FAKE_SPEED, "1"))
        except ValueError:
            raise ConfigError(ENV_FAKE_NOW, "must be an ISO 8601 time (and the speed a number)") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return cls(start=start, speed=speed)

    def now(self) -> datetime:
        """The current time in UTC."""
        if self._start is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self._start.timestamp() + (time.monotonic() - self._t0) * self._speed, UTC)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds`` of agent time or until ``stop`` is set; returns whether it was set."""
        return stop.wait(max(0.0, seconds) / self._speed)
