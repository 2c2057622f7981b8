"""What bench/scaleout.py watches during a run: the CPU time of each part, and the lake's WRITE advisory lock."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

import psutil
import psycopg

from collector.storage.lake import locks

__all__ = ["CpuMeter", "LockProbe"]

_LOCK_SAMPLE_S: Final = 0.02


class CpuMeter:
    """CPU time of each part (root pids and their descendants; this process alone) from construction to :meth:`shares`."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self._parts = {name: list(pids) for name, pids in parts.items()}
        self._before = self._sample()
        self._machine = psutil.cpu_times()
        self._t0 = time.perf_counter()

    def _sample(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pids in self._parts.items():
            seen = out[name] = {}
            for pid in pids:
                with_children: list[psutil.Process] = []
                try:
                    root = psutil.Process(pid)
                    # This process alone: its children are the other parts.
                    with_children = [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for proc in with_children:
                    try:
                        times = proc.cpu_times()
                    except psutil.Error:
                        continue
                    seen[proc.pid] = times.user + times.system
        return out

    def shares(self) -> dict[str, float]:
        """Percent of one core used by each part since construction, ``rest`` (every other process on the machine)
        and ``steal`` (time the hypervisor gave other guests). A process that ended meanwhile is not counted, one
        that started meanwhile counts whole."""
        after, machine = self._sample(), psutil.cpu_times()
        wall = time.perf_counter() - self._t0
        shares = {
            name: 100 * sum(t - self._before[name].get(pid, 0.0) for pid, t in pids.items()) / wall
            for name, pids in after.items()
        }
        busy = _busy(machine) - _busy(self._machine)
        shares["rest"] = max(0.0, 100 * busy / wall - sum(shares.values()))
        shares["steal"] = 100 * (getattr(machine, "steal", 0.0) - getattr(self._machine, "steal", 0.0)) / wall
        return shares


def _busy(times: Any) -> float:
    # guest time is already part of user time; steal (the hypervisor running other guests) is reported apart.
    return float(sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq")))


class LockProbe:
    """A thread that samples ``pg_locks`` every 20 ms: how often the WRITE and ROLLUP locks are held, who waits."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lock-probe", daemon=True)
        self._samples = self._held = self._waiting = self._rollup = 0
        self._t0 = self._t1 = 0.0

    def __enter__(self) -> LockProbe:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._t1 = time.perf_counter()
        self._conn.close()

    @property
    def seconds(self) -> float:
        """How long it sampled."""
        return self._t1 - self._t0

    @property
    def held(self) -> float:
        """Fraction of the samples in which a session held the lock."""
        return self._held / max(self._samples, 1)

    @property
    def waiting(self) -> float:
        """Sessions waiting for the WRITE lock, on average over the samples."""
        return self._waiting / max(self._samples, 1)

    @property
    def rollup(self) -> float:
        """Fraction of the samples in which a collector was refreshing the report rollup (ROLLUP held)."""
        return self._rollup / max(self._samples, 1)

    def _loop(self) -> None:
        query = (
            "SELECT count(*) FILTER (WHERE objid = %s AND granted), count(*) FILTER (WHERE objid = %s AND NOT granted),"
            " count(*) FILTER (WHERE objid = %s AND granted) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
        )
        params = (locks.WRITE, locks.WRITE, locks.ROLLUP, locks._NAMESPACE)
        while not self._stop.wait(_LOCK_SAMPLE_S):
            row = self._conn.execute(query, params).fetchone()
            if row is not None:
                self._samples += 1
                self._held += bool(row[0])
                self._waiting += int(row[1])
                self._rollup += bool(row[2])
