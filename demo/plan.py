"""The plan of a simulated fleet: who joins when, runs what, on which host, and how busy (deterministic for a seed).

Versions are released over time and adopted with a lag, with several OS families and releases, hardware mixes,
growing projects, installs joining over time and some going away, a few installs in ``review`` or ``off``
consent, and a small group (fewer than five) on a rare version and OS so report suppression shows.
:mod:`demo.fleet` runs a plan through the real agent code.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

__all__ = ["InstallPlan", "Simulation", "plan_fleet"]

# Releases as (version, days before the end of the simulation it shipped); ages scale with --days.
_RELEASES: Final = (("4.0.2", 1.0e9), ("4.1.0", 0.9), ("4.2.0", 0.55), ("4.3.0", 0.2))
_RARE: Final = ("5.0.0-beta1", "FreeBSD", "14.1")  # the small group: suppressed in every grouped report
_RARE_INSTALLS: Final = 3
# (weight, system, distribution id or Windows build, version) of the OS mix.
_OSES: Final = (
    (30, "Linux", "ubuntu", "22.04"),
    (14, "Linux", "ubuntu", "24.04"),
    (7, "Linux", "ubuntu", "20.04"),
    (10, "Linux", "debian", "12"),
    (10, "Linux", "rhel", "9.4"),
    (5, "Linux", "rocky", "9.3"),
    (4, "Linux", "sles", "15.5"),
    (12, "Windows", "20348", "2022"),
    (8, "Windows", "17763", "2019"),
)
_CORES: Final = ((2, 10), (4, 30), (8, 30), (16, 18), (32, 9), (64, 3))  # (cores, weight)
_DISKS_GIB: Final = (100, 200, 500, 1000, 2000)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallPlan:
    """One synthetic install's life: when it appears and leaves, what it runs, and how busy it is."""

    index: int
    joins_at: datetime
    leaves_at: datetime | None
    consent: str
    upgrades: tuple[tuple[datetime, str], ...]  # (when, version), the first at joins_at
    system: str
    os_id: str
    os_version: str
    cores: int
    memory_gib: int
    disk_gib: int
    cpu_base_pct: float
    projects: int
    projects_per_week: float
    deploys_per_project_day: float
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    """What to simulate and where to send it; validated on construction (raises :class:`ValueError`)."""

    endpoint: str
    installs: int = 300
    days: int = 42
    seed: int = 1
    product: str = "deployserver"
    end: datetime | None = None
    """The last simulated moment (default: the current hour), so the data ends today for the reports."""
    state_root: Path | None = None
    """Keep the install state directories here (default: a temporary directory, removed afterwards)."""
    workers: int = 4
    snapshot_interval_s: int = 86400
    batch_period_s: int = 7 * 86400

    def __post_init__(self) -> None:
        if not 1 <= self.installs <= 100_000:
            raise ValueError("installs: must be between 1 and 100000")
        if not 1 <= self.days <= 400:
            raise ValueError("days: must be between 1 and 400")
        if not 1 <= self.workers <= 64:
            raise ValueError("workers: must be between 1 and 64")
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint: must be an http:// or https:// URL")


def plan_fleet(sim: Simulation, end: datetime) -> list[InstallPlan]:
    """The fleet's installs for ``sim`` (deterministic for its seed), the last few on the rare version and OS."""
    rng = random.Random(sim.seed)  # noqa: S311 - a reproducible synthetic fleet, not a secret
    start = end - timedelta(days=sim.days)
    span_s = sim.days * 86400
    releases = [(v, start if age > 1 else end - timedelta(seconds=age * span_s)) for v, age in _RELEASES]
    plans = []
    for i in range(sim.installs):
        rare = i >= sim.installs - min(_RARE_INSTALLS, sim.installs // 10)
        # Six in ten were there from the start; the others appear over the period.
        joins = start if rng.random() < 0.6 else start + timedelta(seconds=rng.uniform(0, 0.9 * span_s))
        joins += timedelta(hours=rng.randrange(24))
        leaves = joins + timedelta(seconds=rng.uniform(0.2, 1.0) * (end - joins).total_seconds())
        out = leaves if rng.random() < 0.12 and not rare else None
        # The version at join time is the newest release (old-timers may run an older one), then upgrades
        # follow each later release after an install-specific lag; one in five never upgrades.
        shipped = [v for v, at in releases if at <= joins]
        first = shipped[-1] if joins > start else rng.choice(shipped[-2:] if len(shipped) > 1 else shipped)
        upgrades = [(joins, first)]
        lag_days = rng.expovariate(1 / 8) if rng.random() < 0.8 else math.inf
        for version, at in releases:
            when = at + timedelta(days=lag_days) if math.isfinite(lag_days) else None
            if at > joins and when is not None and when < end:
                upgrades.append((when, version))
        _, system, os_id, os_version = rng.choices(_OSES, weights=[o[0] for o in _OSES])[0]
        cores = rng.choices([c for c, _ in _CORES], weights=[w for _, w in _CORES])[0]
        if rare:
            upgrades = [(joins, _RARE[0])]
            system, os_id, os_version = _RARE[1], "", _RARE[2]
        plans.append(
            InstallPlan(
                index=i,
                joins_at=joins,
                leaves_at=out,
                consent="off" if rng.random() < 0.04 else "review" if rng.random() < 0.1 else "auto",
                upgrades=tuple(upgrades),
                system=system,
                os_id=os_id,
                os_version=os_version,
                cores=cores,
                memory_gib=max(4, cores * rng.choice((2, 4, 4, 8))),
                disk_gib=rng.choice(_DISKS_GIB),
                cpu_base_pct=rng.uniform(3, 60),
                projects=max(1, int(rng.lognormvariate(2.5, 1.0))),
                projects_per_week=rng.uniform(0, 2.5),
                deploys_per_project_day=rng.uniform(0.05, 3),
                seed=rng.randrange(2**32),
            )
        )
    return plans
