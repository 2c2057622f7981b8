"""Probes: small readers of one part of the host, each with its OS access injected.

A probe's :meth:`Probe.collect` returns raw readings keyed by catalogue metric; the policy step
(``agent.policy``) coarsens and checks them before anything enters a snapshot. A probe that cannot
read this OS raises :class:`~agent.errors.ProbeUnavailableError` and is skipped.
"""

from __future__ import annotations

from typing import Protocol

from .hardware import CpuCoresProbe, CpuUsageProbe, DiskProbe, MemoryProbe
from .host import HostAccess, real_host
from .recorded import recorded_host
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
