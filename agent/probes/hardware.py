"""Hardware probes: CPU cores, CPU usage over the snapshot interval, memory, and the data volume's disk."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from agent.errors import ProbeUnavailableError

from .host import HostAccess

__all__ = ["CpuCoresProbe", "CpuUsageProbe", "DiskProbe", "MemoryProbe", "cpu_busy_pct"]

_GIB: Final = 2**30
# Time not spent working. On Linux guest time is already counted in user/nice, so it is left out of the
# total (as psutil.cpu_percent does) to avoid counting it twice.
_IDLE: Final = ("idle", "iowait")
_DOUBLE_COUNTED: Final = ("guest", "guest_nice")


class CpuCoresProbe:
    """``host.cpu.logical_cores``."""

    name = "cpu_cores"

    def __init__(self, host: HostAccess) -> None:
        self._host = host

    def collect(self) -> dict[str, object]:
        """The number of logical cores."""
        count = self._host.cpu_count()
        if not count:
            raise ProbeUnavailableError("cpu count unknown")
        return {"host.cpu.logical_cores": count}


def cpu_busy_pct(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Percent of CPU time spent busy between two ``cpu_times`` samples, or None when they don't compare."""
    if before.keys() != after.keys():
        return None

    def totals(sample: dict[str, float]) -> tuple[float, float]:
        total = sum(v for k, v in sample.items() if k not in _DOUBLE_COUNTED)
        idle = sum(sample.get(k, 0.0) for k in _IDLE)
        return total, idle

    total0, idle0 = totals(before)
    total1, idle1 = totals(after)
    elapsed = total1 - total0
    # Counters that went backwards mean a reboot between the samples: no interval to average over.
    if elapsed <= 0 or idle1 < idle0:
        return None
    return min(100.0, max(0.0, 100.0 * (elapsed - (idle1 - idle0)) / elapsed))


class CpuUsageProbe:
    """``host.cpu.usage_pct``: the average over the interval since the previous sample (no blocking call).

    The previous sample is injected (the agent keeps it in its state directory); after :meth:`collect`,
    :attr:`sample` holds the new one to keep for next time.
    """

    name = "cpu_usage"

    def __init__(self, host: HostAccess, *, previous: dict[str, float] | None) -> None:
        self._host = host
        self._previous = previous
        self.sample: dict[str, float] | None = None

    def collect(self) -> dict[str, object]:
        """The busy percentage since the previous sample; nothing on the first sample."""
        self.sample = self._host.cpu_times()
        if self._previous is None:
            return {}
        busy = cpu_busy_pct(self._previous, self.sample)
        return {} if busy is None else {"host.cpu.usage_pct": busy}


class MemoryProbe:
    """``host.memory.total_gib``."""

    name = "memory"

    def __init__(self, host: HostAccess) -> None:
        self._host = host

    def collect(self) -> dict[str, object]:
        """Total physical memory in GiB (coarsened later)."""
        return {"host.memory.total_gib": self._host.memory_total() / _GIB}


class DiskProbe:
    """``host.disk.total_gib`` and ``host.disk.free_gib`` of the volume holding ``path`` (the path is never sent)."""

    name = "disk"

    def __init__(self, host: HostAccess, *, path: Path) -> None:
        self._host = host
        self._path = path

    def collect(self) -> dict[str, object]:
        """Size and free space of the data volume in GiB (coarsened later)."""
        try:
            total, free = self._host.disk_usage(self._path)
        except OSError as exc:
            raise ProbeUnavailableError(f"disk usage unreadable ({exc.strerror})") from None
        return {"host.disk.total_gib": total / _GIB, "host.disk.free_gib": free / _GIB}
