"""A small synthetic fleet for report tests, plus the expected answers computed in plain Python.

The expected values are computed here from the generated snapshots, independently of the collector's
SQL and rollup: periods, "last reading in the period", counter deltas and percentiles are re-derived
from their definitions in docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from schema import encode_batch, install_id_from_secret, new_secret, parse_batch_obj

NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=dt.UTC)
"""The collector's clock in these tests."""
K = 5


@dataclass
class Install:
    """One generated install: its secret, id, product and snapshots (taken_at, version, metrics)."""

    secret: str
    install_id: str
    product: str
    snapshots: list[tuple[dt.datetime, str, dict[str, Any]]] = field(default_factory=list)


def _hour(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


def make_fleet(seed: int = 7) -> list[Install]:
    """30 installs: 26 of deployserver, 4 of buildfarm; 4 on FreeBSD, 4 on version 4.1.0; gaps and counter resets."""
    rng = random.Random(seed)
    fleet = []
    start = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)  # a Monday
    for i in range(30):
        secret = rng.randbytes(32).hex() if i else new_secret()  # one real random secret, the rest reproducible
        install = Install(secret, install_id_from_secret(secret), "buildfarm" if i >= 26 else "deployserver")
        first = start + dt.timedelta(days=rng.randrange(0, 20), hours=rng.choice([0, 6]))
        days = rng.randrange(5, 40) if i % 6 else 8  # every sixth install stops early: lost by NOW
        family = "freebsd" if i in (3, 9, 15, 21) else rng.choice(["linux", "linux", "windows"])
        os_version = {"freebsd": "FreeBSD 14.1", "windows": "Windows Server 2022"}.get(family) or rng.choice(
            ["Ubuntu 22.04", "Ubuntu 24.04", "Debian 12"]
        )
        cores = rng.choice([2, 4, 8, 16, 24])
        memory = cores * rng.choice([2, 4])
        disk = rng.choice([100, 250, 490, 1000])
        projects = rng.randrange(0, 50)
        deployments = rng.randrange(0, 1000)
        upgrade_at = first + dt.timedelta(days=rng.randrange(3, 30))
        moment = first
        while moment < first + dt.timedelta(days=days) and moment < NOW - dt.timedelta(hours=2):
            if rng.random() < 0.15:  # a missing snapshot (host down, agent stopped)
                moment += dt.timedelta(hours=6)
                continue
            version = "4.1.0" if i < 4 else ("4.3.0" if moment >= upgrade_at else "4.2.0")
            deployments += rng.randrange(0, 20)
            if rng.random() < 0.02:
                deployments = rng.randrange(0, 5)  # counter reset (reinstall)
            projects = max(0, projects + rng.choice([-1, 0, 0, 1, 2]))
            metrics: dict[str, Any] = {
                "os.family": family,
                "os.version": os_version,
                "host.cpu.logical_cores": cores,
                "host.cpu.usage_pct": rng.randrange(0, 101),
                "host.memory.total_gib": memory,
                "host.disk.total_gib": disk,
                "host.disk.free_gib": rng.choice([10, 45, 120]),
                "usage.projects": projects,
            }
            if rng.random() > 0.1:  # the usage provider sometimes fails: no counter reading
                metrics["usage.deployments"] = deployments
            install.snapshots.append((moment, version, metrics))
            moment += dt.timedelta(hours=6)
        fleet.append(install)
    return fleet


def batches(install: Install) -> Iterable[bytes]:
    """The install's snapshots as canonical batch bytes, one batch per ISO week (a version change starts a new one)."""
    groups: dict[tuple[int, int, str], list[tuple[dt.datetime, str, dict[str, Any]]]] = defaultdict(list)
    for snap in install.snapshots:
        year, week, _ = snap[0].isocalendar()
        groups[(year, week, snap[1])].append(snap)
    for (_, _, version), snaps in sorted(groups.items(), key=lambda kv: kv[1][0][0]):
        obj = {
            "schema_version": 1,
            "batch_id": str(uuid.uuid4()),
            "install_id": install.install_id,
            "product": {"name": install.product, "version": version},
            "agent_version": "0.1.0",
            "created_at": _hour(snaps[-1][0] + dt.timedelta(hours=1)),
            "snapshots": [{"taken_at": _hour(t), "metrics": m} for t, _, m in snaps],
        }
        yield encode_batch(parse_batch_obj(obj))


# -- expected answers ---------------------------------------------------------------------------


def period_of(day: dt.date, interval: str) -> dt.date:
    """The first day of the period holding ``day``."""
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (the 'type 7' definition), rounded like the reports."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 2)


def _select(fleet: list[Install], product: str | None) -> list[Install]:
    return [i for i in fleet if product is None or i.product == product]


def active(fleet: list[Install], interval: str, product: str | None = None) -> dict[dt.date, int]:
    """Distinct installs with a snapshot in each period."""
    seen: dict[dt.date, set[str]] = defaultdict(set)
    for inst in _select(fleet, product):
        for t, _, _ in inst.snapshots:
            seen[period_of(t.date(), interval)].add(inst.install_id)
    return {p: len(ids) for p, ids in seen.items()}


def first_and_last(fleet: list[Install]) -> list[tuple[dt.date, dt.date]]:
    """(first day, last day) of every install."""
    return [(i.snapshots[0][0].date(), i.snapshots[-1][0].date()) for i in fleet if i.snapshots]


def last_per_period(
    fleet: list[Install], interval: str, value: Callable[[str, dict[str, Any], Install], Any]
) -> dict[dt.date, dict[str, Any]]:
    """For each period, each install's last non-missing ``value(version, metrics, install)``."""
    out: dict[dt.date, dict[str, Any]] = defaultdict(dict)
    for inst in fleet:
        for t, version, metrics in inst.snapshots:
            v = value(version, metrics, inst)
            if v is not None:
                out[period_of(t.date(), interval)][inst.install_id] = v
    return out


def metric(key: str, bucket: bool = False) -> Callable[[str, dict[str, Any], Install], Any]:
    """A ``value`` for :func:`last_per_period`: the metric ``key`` (as its power-of-two bucket if ``bucket``)."""

    def value(version: str, metrics: dict[str, Any], install: Install) -> Any:
        v = metrics.get(key)
        return power_bucket(v) if bucket and v is not None else v

    return value


def groups_expected(per_period: dict[dt.date, dict[str, Any]], k: int = K) -> dict[dt.date, dict[str, int]]:
    """Group counts per period after suppression: small groups merged into '(other)' if that reaches k."""
    out = {}
    for period, by_install in per_period.items():
        counts: dict[str, int] = defaultdict(int)
        for label in by_install.values():
            counts[str(label)] += 1
        shown = {g: n for g, n in counts.items() if n >= k}
        small = sum(n for n in counts.values() if n < k)
        if small >= k:
            shown["(other)"] = small
        if shown:  # a period whose every group is withheld has no rows
            out[period] = shown
    return out


def deployments(fleet: list[Install], interval: str) -> dict[dt.date, dict[str, int]]:
    """Per period, per install with a counter reading in it: deployments made (deltas; a drop counts the new value)."""
    out: dict[dt.date, dict[str, int]] = defaultdict(dict)
    for inst in fleet:
        previous = None
        for t, _, metrics in inst.snapshots:
            value = metrics.get("usage.deployments")
            if value is None:
                continue
            period = period_of(t.date(), interval)
            delta = 0 if previous is None else (value - previous if value >= previous else value)
            out[period][inst.install_id] = out[period].get(inst.install_id, 0) + delta
            previous = value
    return out


def cpu_means(fleet: list[Install], interval: str) -> dict[dt.date, list[float]]:
    """Per period, each install's mean CPU usage over its snapshots there."""
    readings: dict[tuple[dt.date, str], list[int]] = defaultdict(list)
    for inst in fleet:
        for t, _, metrics in inst.snapshots:
            readings[(period_of(t.date(), interval), inst.install_id)].append(metrics["host.cpu.usage_pct"])
    out: dict[dt.date, list[float]] = defaultdict(list)
    for (period, _), values in readings.items():
        out[period].append(sum(values) / len(values))
    return out


def power_bucket(value: int) -> str:
    """The hardware bucket label of a value: up to the smallest power of two >= value."""
    upper = 1 << max(value - 1, 0).bit_length()
    lower = upper // 2 + 1 if upper > 1 else 0
    return str(upper) if lower == upper else f"{lower}-{upper}"
