"""The simulated fleet's plan: deterministic for a seed, varied, with a small group that reports must suppress."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from demo.plan import Simulation, plan_fleet

END = datetime(2026, 11, 28, 10, tzinfo=UTC)


def test_plan_is_deterministic_and_varied() -> None:
    """The same seed gives the same fleet, with versions, OSes, joins, departures and consent modes mixed."""
    sim = Simulation(endpoint="http://127.0.0.1:1", installs=300, days=42, seed=7)
    plans = plan_fleet(sim, END)
    assert plans == plan_fleet(sim, END)
    assert plans != plan_fleet(Simulation(endpoint="http://127.0.0.1:1", installs=300, days=42, seed=8), END)
    versions = Counter(v for p in plans for _, v in p.upgrades)
    assert len(versions) >= 5
    assert sum(len(p.upgrades) > 1 for p in plans) > 50  # upgrades over time
    assert len({p.os_version for p in plans}) >= 8
    assert {p.system for p in plans} == {"Linux", "Windows", "FreeBSD"}
    assert len({p.cores for p in plans}) >= 5
    start = min(p.joins_at for p in plans)
    assert sum(p.joins_at.date() > start.date() for p in plans) > 50  # installs appear over time
    assert 10 < sum(p.leaves_at is not None for p in plans) < 100  # some go away
    assert {p.consent for p in plans} == {"auto", "review", "off"}


def test_rare_group_is_smaller_than_the_suppression_threshold() -> None:
    """Fewer than five installs run the rare version and OS, so grouped reports suppress them."""
    plans = plan_fleet(Simulation(endpoint="http://127.0.0.1:1", installs=300), END)
    rare = [p for p in plans if p.upgrades[0][1] == "5.0.0-beta1"]
    assert 0 < len(rare) < 5
    assert all(p.system == "FreeBSD" and p.leaves_at is None for p in rare)
