"""The daemon loop behind `telemetry-agent run` and the embedded :class:`~agent.Agent`.

A snapshot at start (unless this hour has one already: a restart does not churn), then every
``snapshot_interval_s`` a snapshot, every ``batch_period_s`` a seal, and the send at a random
moment within ``send_window_s`` after it, so a fleet sealing at the same hour does not stampede the
collector. The schedule lives in ``schedule.json`` and survives restarts. With consent off the loop
reads nothing and opens no connection; it only keeps the schedule moving and re-reads consent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timedelta
from typing import Final

from schema import format_hour

from .engine import Engine
from .errors import StateIOError, StateLockedError
from .records import Schedule

__all__ = ["Daemon"]

log = logging.getLogger("agent")
_MAX_WAIT_S: Final = 60.0  # re-read consent and approvals at least this often (agent time)


def _advance(due: datetime, interval_s: int, now: datetime) -> datetime:
    # Missed slots (the machine slept, the agent was stopped) are skipped, not caught up in a burst.
    step = timedelta(seconds=interval_s)
    missed = int((now - due) / step) + 1 if now >= due else 0
    return due + step * missed


class Daemon:
    """Runs the schedule until ``stop`` is set."""

    def __init__(self, engine: Engine, stop: threading.Event, *, max_wait_s: float = _MAX_WAIT_S) -> None:
        self.engine = engine
        self.stop = stop
        self._max_wait_s = max_wait_s

    def run(self) -> None:
        """Hold the daemon lock and loop; returns once ``stop`` is set."""
        state = self.engine.state
        # Fail at start, not at the first seal hours later.
        self.engine.require_product("run")
        with state.daemon_lock():
            log.info("telemetry agent running (state dir %s)", state.root)
            with state.lock():
                self._start()
            while not self.stop.is_set():
                try:
                    wait_s = self.tick()
                except StateLockedError as exc:
                    # A manual command holds the state dir (e.g. a long `send`): try again shortly.
                    log.warning("%s; retrying", exc)
                    wait_s = self._max_wait_s
                except StateIOError as exc:
                    # A full or read-only state dir: the state on disk is intact (atomic writes), so log
                    # one line and retry; the admin frees space, and the next tick picks up where it left.
                    log.warning("%s; retrying in %g s", exc, self._max_wait_s)
                    wait_s = self._max_wait_s
                if self.engine.clock.wait(min(wait_s, self._max_wait_s), self.stop):
                    break
            log.info("telemetry agent stopped")

    def _start(self) -> None:
        """Say what consent allows, and take the first snapshot now, so whoever set the agent up (an admin, a
        vendor trying an embedded provider) sees a result at once rather than after ``snapshot_interval_s``."""
        engine = self.engine
        mode, source = engine.consent()
        if mode == "off":
            log.info(
                "consent is off (from %s): nothing is read or sent; `telemetry-agent consent review` opts in", source
            )
            return
        if engine.provider is None:
            log.info("no usage provider configured ([usage] command, file or url): snapshots carry no usage counts")
        try:
            opened = engine.state.open_batch()
            if (
                opened is not None
                and opened.snapshots
                and opened.snapshots[-1].taken_at == format_hour(engine.clock.now())
            ):
                # A restart within the hour: that hour has its snapshot; keep the CPU sample fresh for the next.
                engine.prime_cpu()
            else:
                # Without a recent CPU sample this one has no CPU usage (there is no interval to average
                # over yet); it stores the sample the next snapshot averages against.
                self._snapshot()
        except StateIOError as exc:
            log.warning("%s; the first snapshot waits for its schedule", exc)

    def _snapshot(self) -> None:
        result = self.engine.collect()
        log.info("snapshot %s: %d metrics, %d dropped", result.taken_at, len(result.metrics), len(result.dropped))
        for problem in result.problems:
            log.warning("snapshot: %s", problem)

    def _schedule(self, now: datetime) -> Schedule:
        saved = self.engine.state.schedule()
        cfg = self.engine.config
        return Schedule(
            next_snapshot_at=saved.next_snapshot_at or now + timedelta(seconds=cfg.snapshot_interval_s),
            next_seal_at=saved.next_seal_at or now + timedelta(seconds=cfg.batch_period_s),
            next_send_at=saved.next_send_at,
        )

    def _send_moment(self, now: datetime, extra_s: float = 0.0) -> datetime:
        return now + timedelta(seconds=extra_s + self.engine.rng.uniform(0, self.engine.config.send_window_s))

    def tick(self) -> float:
        """Do whatever is due now; returns the agent seconds until the next thing is due."""
        engine, cfg = self.engine, self.engine.config
        with engine.state.lock():
            now = engine.clock.now()
            mode, _ = engine.consent()
            sched = self._schedule(now)
            snap_at, seal_at, send_at = sched.next_snapshot_at, sched.next_seal_at, sched.next_send_at
            assert snap_at is not None
            assert seal_at is not None
            if now >= snap_at:
                if mode != "off":
                    self._snapshot()
                snap_at = _advance(snap_at, cfg.snapshot_interval_s, now)
            if now >= seal_at:
                if mode != "off" and (batch_id := engine.seal()) is not None:
                    log.info("sealed batch %s", batch_id)
                seal_at = _advance(seal_at, cfg.batch_period_s, now)
            if mode == "off":
                send_at = None
            elif send_at is None and engine.sendable():
                send_at = self._send_moment(now)
            if send_at is not None and now >= send_at:
                report = asyncio.run(engine.send())
                for r in report.results:
                    log.info(
                        "batch %s: %s after %d attempt(s), the last to %s",
                        r.batch_id,
                        r.outcome,
                        r.attempts,
                        r.endpoint,
                    )
                send_at = None if report.ok else self._send_moment(now, cfg.max_backoff_s)
            engine.state.set_schedule(Schedule(next_snapshot_at=snap_at, next_seal_at=seal_at, next_send_at=send_at))
            due = [t for t in (snap_at, seal_at, send_at) if t is not None]
            return max(0.0, min((t - now).total_seconds() for t in due))
