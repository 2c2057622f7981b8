"""One snapshot's readings: every host probe and the usage provider, through the policy gate.

Split from :mod:`agent.engine`, which stores the result in the open batch; this module only reads (and keeps
the CPU times sample that the next snapshot's usage is averaged against).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from schema import format_hour, format_instant

from .clock import Clock
from .config import AgentConfig
from .errors import ProbeUnavailableError
from .policy import Admitted, DropReason, admit
from .probes import CpuCoresProbe, CpuUsageProbe, DiskProbe, HostAccess, MemoryProbe, OsProbe, Probe, UsageProvider
from .probes.usage import ProviderError
from .records import CpuSample, ProviderRecord
from .state import StateDir

__all__ = ["CollectResult", "SnapshotReader"]


@dataclass(slots=True, kw_only=True)
class CollectResult:
    """What one snapshot took in, and what it left out (by reason, never by value)."""

    taken_at: str
    metrics: dict[str, int | str]
    dropped: list[tuple[str, str]]
    problems: list[str] = field(default_factory=list)
    stored: bool = True
    provider: str | None = None
    """The usage provider's label (kind and where), or None when none is configured."""
    provider_error: str | None = None
    """Why the usage provider gave nothing this time (None when it answered or there is none)."""
    replaced: bool = False
    """Whether this snapshot replaced an earlier one of the same hour (one per hour is kept)."""
    kept: list[str] = field(default_factory=list)
    """Metrics of that earlier snapshot kept because this reading lacks them (e.g. the provider failed)."""

    def to_json(self) -> dict[str, Any]:
        """The ``collect --json`` form."""
        return {
            "taken_at": self.taken_at,
            "stored": self.stored,
            "metrics": self.metrics,
            "dropped": [{"reason": r, "key": k} for r, k in self.dropped],
            "problems": self.problems,
            "provider": self.provider,
            "provider_error": self.provider_error,
            "replaced": self.replaced,
            "kept": self.kept,
        }


class SnapshotReader:
    """Reads the host and the provider for one snapshot; OS access, provider and clock come from the engine."""

    def __init__(
        self, config: AgentConfig, state: StateDir, host: HostAccess, provider: UsageProvider | None, clock: Clock
    ) -> None:
        self.config = config
        self.state = state
        self.host = host
        self.provider = provider
        self.clock = clock

    def cpu_previous(self, now: datetime) -> dict[str, float] | None:
        """The stored CPU sample, if it is recent enough to average over (else None)."""
        sample = self.state.cpu_sample()
        if sample is None:
            return None
        try:
            age = now - sample.at
        except TypeError:  # a sample stored without a time zone
            return None
        # A sample far older than the interval would average over the wrong period (or across a downtime).
        if not timedelta(0) < age <= timedelta(seconds=2 * self.config.snapshot_interval_s):
            return None
        return dict(sample.times)

    def prime_cpu(self) -> None:
        """Record a CPU sample now, so the first snapshot can average over its interval."""
        now = self.clock.now()
        if self.cpu_previous(now) is None:
            self.state.set_cpu_sample(CpuSample(at=now, times=self.host.cpu_times()))

    def probes(self, now: datetime) -> tuple[list[Probe], CpuUsageProbe]:
        """The host probes, and among them the CPU usage one (its new sample is stored after reading)."""
        cpu = CpuUsageProbe(self.host, previous=self.cpu_previous(now))
        probes: list[Probe] = [
            OsProbe(self.host),
            CpuCoresProbe(self.host),
            cpu,
            MemoryProbe(self.host),
            DiskProbe(self.host, path=self.config.data_path),
        ]
        return probes, cpu

    def read(self, blocked: Mapping[str, DropReason]) -> CollectResult:
        """Read every probe and the usage provider through the policy gate (stores only the CPU sample).

        ``blocked`` maps each catalogue metric not collected now to why (:attr:`agent.metrics.MetricsView.blocked`).
        """
        now = self.clock.now()
        gate = partial(admit, catalogue=self.config.catalogue_in_force, blocked=blocked)
        admitted, problems = Admitted(), []
        probes, cpu = self.probes(now)
        for probe in probes:
            try:
                gate(probe.collect(), from_provider=False, into=admitted)
            except ProbeUnavailableError as exc:
                problems.append(f"probe {probe.name} unavailable: {exc}")
            except Exception as exc:  # noqa: BLE001 - a probe bug costs its metrics, not the snapshot
                problems.append(f"probe {probe.name} failed: {type(exc).__name__}")
        if cpu.sample is not None:
            self.state.set_cpu_sample(CpuSample(at=now, times=cpu.sample))
        result = CollectResult(
            taken_at=format_hour(now), metrics=admitted.metrics, dropped=admitted.dropped, problems=problems
        )
        if self.provider is not None:
            result.provider = self.provider.label
            # Only a hint for `status`: a corrupt record is started afresh rather than stopping the snapshot.
            record = self.state.provider_record()
            try:
                gate(self.provider.collect(), from_provider=True, into=admitted)
            except ProviderError as exc:
                result.provider_error = str(exc)
                problems.append(str(exc))
                self.state.count("provider_failures")
                record = ProviderRecord(
                    kind=self.provider.kind,
                    last_ok_at=record.last_ok_at,
                    last_error_at=format_instant(now),
                    last_error=str(exc),
                )
            else:
                record = ProviderRecord(
                    kind=self.provider.kind,
                    last_ok_at=format_instant(now),
                    last_error_at=record.last_error_at,
                    last_error=record.last_error,
                )
            self.state.set_provider_record(record)
        return result
