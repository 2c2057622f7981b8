"""Probes: small readers of one part of the host, each with its OS access injected.

A probe's :meth:`Probe.collect` returns raw readings keyed by catalogue metric; the policy step
(``agent.policy``) coarsens and checks them before anything enters a snapshot. A probe that cannot
read this OS raises :class:`~agent.errors.ProbeUnavailableError` and is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from .hardware import CpuCoresProbe, CpuUsageProbe, DiskProbe, MemoryProbe
from .host import HostAccess, real_host
from .recorded import ENV_FAKE_HOST, recorded_host
from .system import OsProbe
from .usage import UsageProvider, provider_from_config

__all__ = [
    "CpuCoresProbe",
    "CpuUsageProbe",
    "DiskProbe",
    "HostAccess",
    "MemoryProbe",
    "OsProbe",
    "Probe",
    "UsageProvider",
    "default_host",
    "provider_from_config",
    "real_host",
    "recorded_host",
]


class Probe(Protocol):
    """Anything that reads raw values for catalogue metrics."""

    name: str

    def collect(self) -> dict[str, object]:
        """Raw readings keyed by catalogue metric (not yet coarsened)."""
        ...


def default_host(now: Callable[[], datetime]) -> HostAccess:
    """The real host, or the recorded one named by the ``TELEMETRY_AGENT_FAKE_HOST`` testing hook."""
    fake = os.environ.get(ENV_FAKE_HOST)
    return recorded_host(Path(fake), now) if fake else real_host()
