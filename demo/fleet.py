"""A simulated fleet: hundreds of synthetic installs run through the real agent code into a real collector.

``python -m demo.fleet --endpoint http://127.0.0.1:8080 --installs 300 --days 42`` plans the fleet
(:mod:`demo.plan`) and gives each install its own state directory, :class:`~agent.engine.Engine` and
:class:`~agent.daemon.Daemon` (policy gate, coarsening, sealing, outbox, consent, transport with retries), and
replaces only what a demo cannot have: the host readings (a synthetic :class:`~agent.probes.HostAccess`), the
product's counts (a callable provider) and the clock (stepped through the simulated weeks, ending now).
Batches go over real HTTP. :func:`run_fleet` is what ``telemetry-collector demo`` calls, in its own process.
State directories live in a temporary directory (in ``/dev/shm`` when there is one: the agent fsyncs
every state write, which a disk turns into most of the run time) and are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson

from agent.clock import Clock
from agent.config import AgentConfig
from agent.daemon import Daemon
from agent.engine import Engine
from agent.errors import AgentError
from agent.probes import HostAccess
from demo.plan import InstallPlan, Simulation, plan_fleet
from schema import parse_batch

__all__ = ["FleetResult", "Progress", "SimClock", "main", "run_fleet"]

_GIB: Final = 2**30


class SimClock(Clock):
    """A clock that only moves when told to: the simulation steps it from one due moment to the next."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start=start)
        self._now = start

    def now(self) -> datetime:
        """The simulated time."""
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (never backwards)."""
        self._now = max(self._now, moment)

    def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward."""
        self._now += timedelta(seconds=max(0.0, seconds))


@dataclass(slots=True)
class FleetResult:
    """Totals over the fleet (installs, delivery outcomes, snapshots acknowledged)."""

    installs: int = 0
    installs_active_at_end: int = 0
    installs_sending: int = 0
    batches_delivered: int = 0
    batches_duplicate: int = 0
    batches_rejected: int = 0
    batches_failed: int = 0
    snapshots_delivered: int = 0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_json(self) -> dict[str, object]:
        """The totals as a JSON object."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


class _Install:
    """The synthetic host and product of one plan, driven by the simulated clock."""

    def __init__(self, plan: InstallPlan, clock: SimClock) -> None:
        self.plan = plan
        self.clock = clock
        self.rng = random.Random(plan.seed)  # noqa: S311 - synthetic readings
        self._cpu = {"user": 0.0, "system": 0.0, "idle": 0.0}
        self._cpu_at = plan.joins_at
        self._usage_at = plan.joins_at
        self.deployments = self.rng.randrange(0, 50 * plan.projects)

    def _days(self) -> float:
        return (self.clock.now() - self.plan.joins_at).total_seconds() / 86400

    def cpu_times(self) -> dict[str, float]:
        now = self.clock.now()
        elapsed = max(0.0, (now - self._cpu_at).total_seconds()) * self.plan.cores
        busy = min(0.97, max(0.01, (self.plan.cpu_base_pct + self.rng.gauss(0, 6)) / 100))
        self._cpu["user"] += elapsed * busy * 0.8
        self._cpu["system"] += elapsed * busy * 0.2
        self._cpu["idle"] += elapsed * (1 - busy)
        self._cpu_at = now
        return dict(self._cpu)

    def disk_usage(self, _path: Path) -> tuple[int, int]:
        total = self.plan.disk_gib * _GIB
        used = min(0.95, 0.15 + 0.002 * self.projects() + 0.001 * self._days())
        return total, int(total * (1 - used))

    def projects(self) -> int:
        return self.plan.projects + int(self.plan.projects_per_week * self._days() / 7)

    def usage(self) -> dict[str, object]:
        """The product's counts, as a provider callable hands them over."""
        now = self.clock.now()
        days = max(0.0, (now - self._usage_at).total_seconds() / 86400)
        self._usage_at = now
        if self.rng.random() < 0.004 * days:  # a reinstall or database restore resets the counter
            self.deployments = 0
        rate = self.projects() * self.plan.deploys_per_project_day * days
        self.deployments += max(0, int(self.rng.gauss(rate, math.sqrt(rate + 1))))
        return {"projects": self.projects(), "deployments": self.deployments}

    def host(self) -> HostAccess:
        p = self.plan
        build = p.os_id if p.system == "Windows" else "0"
        return HostAccess(
            system=lambda: p.system,
            read_os_release=lambda: f'ID={p.os_id}\nVERSION_ID="{p.os_version}"\n',
            win32_ver=lambda: (f"{p.os_version}Server", f"10.0.{build}", "SP0", "Multiprocessor Free"),
            win32_edition=lambda: "ServerStandard",
            mac_ver=lambda: "",
            release=lambda: f"{p.os_version}-RELEASE",
            cpu_count=lambda: p.cores,
            cpu_times=self.cpu_times,
            memory_total=lambda: p.memory_gib * _GIB - 300 * 2**20,  # firmware reserves a little
            disk_usage=self.disk_usage,
        )


def _outcomes(engine: Engine) -> Iterator[tuple[str, int]]:
    """(outcome, snapshots) of each batch's last delivery attempt."""
    last: dict[str, str] = {}
    for entry in engine.state.history_entries():
        if entry.outcome != "retry":
            last[entry.batch_id] = entry.outcome
    for batch_id, outcome in last.items():
        sent = engine.state.stored_bytes(batch_id) if outcome in ("delivered", "duplicate") else None
        yield outcome, len(parse_batch(sent).snapshots) if sent is not None else 0


def _simulate_install(plan: InstallPlan, sim: Simulation, root: Path, end: datetime, result: FleetResult) -> None:
    clock = SimClock(plan.joins_at)
    fake = _Install(plan, clock)
    rng = random.Random(plan.seed ^ 0x5EED)  # noqa: S311 - send jitter of a simulated agent

    async def sleep(seconds: float) -> None:
        # A backoff passes in simulated time; a little real time lets an overloaded collector catch up.
        clock.advance(seconds)
        await asyncio.sleep(min(seconds, 0.05))

    config = AgentConfig(
        endpoint=sim.endpoint,
        consent=plan.consent,
        state_dir=root / f"install-{plan.index:05d}",
        snapshot_interval_s=sim.snapshot_interval_s,
        batch_period_s=sim.batch_period_s,
        send_window_s=6 * 3600,
        product_name=sim.product,
        product_version=plan.upgrades[0][1],
        max_backoff_s=60.0,
    )

    def engine_for(version: str) -> Engine:
        # An upgraded product restarts its agent with the new version in its config; the state dir stays.
        cfg = dataclasses.replace(config, product_version=version)
        return Engine(cfg, clock=clock, host=fake.host(), usage=fake.usage, sleep=sleep, rng=rng, lock_wait_s=1.0)

    upgrades = list(plan.upgrades[1:])
    engine = engine_for(plan.upgrades[0][1])
    with engine.state.lock():
        engine.prime_cpu()
    daemon = Daemon(engine, threading.Event())
    stop_at = min(plan.leaves_at or end, end)
    while True:
        wait_s = daemon.tick()
        if plan.consent == "review":
            with engine.state.lock():
                engine.approve([], every=True)  # the admin reads `preview` and approves
        due = clock.now() + timedelta(seconds=max(wait_s, 1.0))
        if upgrades and upgrades[0][0] <= due:
            due = upgrades[0][0]
            engine = engine_for(upgrades.pop(0)[1])
            daemon = Daemon(engine, threading.Event())
        if due > stop_at:
            break
        clock.set(due)
    if plan.leaves_at is None and plan.consent != "off":
        # Still running at the end: seal and send what is open so the reports reach today.
        clock.set(end)
        with engine.state.lock():
            engine.collect()
            engine.seal()
            engine.approve([], every=True)
            asyncio.run(engine.send())
    with result._lock:
        result.installs += 1
        result.installs_active_at_end += plan.leaves_at is None
        result.installs_sending += plan.consent != "off"
        for outcome, snapshots in _outcomes(engine):
            name = {"delivered": "batches_delivered", "duplicate": "batches_duplicate"}.get(outcome)
            name = name or ("batches_rejected" if outcome == "rejected" else "batches_failed")
            setattr(result, name, getattr(result, name) + 1)
            result.snapshots_delivered += snapshots if outcome in ("delivered", "duplicate") else 0


def run_fleet(
    sim: Simulation,
    *,
    progress: Callable[[FleetResult, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> FleetResult:
    """Simulate every install of ``sim`` (``workers`` at a time); ``progress(result, total)`` after each one.

    Once ``cancel`` is set (or on Ctrl-C), installs already running finish their (short) run; the rest never start.
    """
    end = sim.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    plans = plan_fleet(sim, end)
    result = FleetResult()
    began = time.monotonic()
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private 0700 dir in it
    if sim.state_root is not None:
        sim.state_root.mkdir(parents=True, exist_ok=True)
        root, temporary = sim.state_root, False
    else:
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        root, temporary = Path(tempfile.mkdtemp(prefix="telemetry-fleet-", dir=base)), True

    cancel = cancel if cancel is not None else threading.Event()

    def one(plan: InstallPlan) -> None:
        if cancel.is_set():
            return
        try:
            _simulate_install(plan, sim, root, end, result)
        except (AgentError, OSError) as exc:
            with result._lock:
                result.errors.append(f"install {plan.index}: {exc}")
        if progress is not None:
            progress(result, len(plans))

    try:
        pool = ThreadPoolExecutor(max_workers=sim.workers, thread_name_prefix="fleet")
        try:
            list(pool.map(one, plans))
        except KeyboardInterrupt:
            cancel.set()  # installs already running finish their (short) run; the rest never start
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    result.wall_s = round(time.monotonic() - began, 2)
    return result


class Progress:
    """A progress line on stderr, redrawn at most every ``every_s`` (and once at the end)."""

    def __init__(self, every_s: float = 0.25) -> None:
        self._every_s = every_s
        self._last = 0.0

    def __call__(self, result: FleetResult, total: int) -> None:
        done = result.installs + len(result.errors)
        now = time.monotonic()
        if done < total and now - self._last < self._every_s:
            return
        self._last = now
        _progress_line(done, total, result)


def _progress_line(done: int, total: int, result: FleetResult) -> None:
    sys.stderr.write(
        f"\rsimulating fleet: {done}/{total} installs, {result.batches_delivered} batches delivered,"
        f" {result.batches_failed + result.batches_rejected} failed  "
    )
    sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo.fleet",
        description="Run a simulated fleet through the real agent code into a collector (for demos and load).",
    )
    parser.add_argument("--endpoint", required=True, help="the collector's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--installs", type=int, default=300, help="number of installs (default 300)")
    parser.add_argument("--days", type=int, default=42, help="simulated days, ending now (default 42)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument("--product", default="deployserver", help="product name (default deployserver)")
    parser.add_argument("--workers", type=int, default=4, help="installs simulated at once (default 4)")
    parser.add_argument("--state-root", type=Path, help="keep install state dirs here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the totals as one JSON line")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; exit 0 when every batch was delivered, 1 when some failed, 2 on bad usage."""
    args = _parser().parse_args(argv)
    try:
        sim = Simulation(
            endpoint=args.endpoint,
            installs=args.installs,
            days=args.days,
            seed=args.seed,
            product=args.product,
            workers=args.workers,
            state_root=args.state_root,
        )
        dataclasses.replace(AgentConfig(), product_name=sim.product, endpoint=sim.endpoint)  # checks both
    except (ValueError, AgentError) as exc:
        print(f"demo.fleet: {exc}", file=sys.stderr)
        return 2
    # Per-snapshot agent logging would drown the progress line; failures are counted in the totals.
    logging.getLogger("agent").setLevel(logging.ERROR)
    try:
        result = run_fleet(sim, progress=None if args.quiet else Progress())
    except KeyboardInterrupt:
        return 130
    if not args.quiet:
        sys.stderr.write("\n")
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_json()) + b"\n")
    else:
        print(
            f"{result.installs} installs simulated over {sim.days} days in {result.wall_s} s:"
            f" {result.batches_delivered} batches ({result.snapshots_delivered} snapshots) delivered,"
            f" {result.batches_duplicate} duplicates, {result.batches_rejected} rejected, {result.batches_failed} failed"
        )
    for error in result.errors[:5]:
        print(f"demo.fleet: {error}", file=sys.stderr)
    ok = not result.errors and not result.batches_failed and not result.batches_rejected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
