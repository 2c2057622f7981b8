"""Testing hook: a :class:`HostAccess` that replays recorded psutil/platform output from a JSON file.

Used when ``TELEMETRY_AGENT_FAKE_HOST`` names such a file (see ``tests/data/psutil``); never in production.
CPU times advance with the (possibly fake) clock along the two recorded samples, so the usage
averaged over any interval equals the recorded one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from agent.errors import ConfigError

from .host import HostAccess

__all__ = ["ENV_FAKE_HOST", "recorded_host"]

ENV_FAKE_HOST: Final = "TELEMETRY_AGENT_FAKE_HOST"
"""Testing hook: path of a recorded host JSON file replacing the real OS readings."""
_EPOCH: Final = datetime(2020, 1, 1, tzinfo=UTC)


def recorded_host(path: Path, now: Callable[[], datetime]) -> HostAccess:
    """Replay the recording at ``path``; ``now`` drives the CPU counters."""
    try:
        rec: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(ENV_FAKE_HOST, f"cannot read recorded host {path}: {exc}") from None
    first, second = rec["cpu_times"][0], rec["cpu_times"][1]

    def cpu_times() -> dict[str, float]:
        # One recorded step per agent minute: monotonic, and the busy share stays the recorded one.
        steps = (now() - _EPOCH).total_seconds() / 60
        return {k: first[k] + (second[k] - first[k]) * steps for k in first}

    win = rec.get("win32_ver", ["", "", "", ""])
    return HostAccess(
        system=lambda: str(rec["platform_system"]),
        read_os_release=lambda: str(rec.get("os_release", "")),
        win32_ver=lambda: (str(win[0]), str(win[1]), str(win[2]), str(win[3])),
        win32_edition=lambda: str(rec.get("win32_edition", "")),
        mac_ver=lambda: str(rec.get("mac_ver", [""])[0]),
        release=lambda: str(rec.get("release", "")),
        cpu_count=lambda: int(rec["cpu_count"]),
        cpu_times=cpu_times,
        memory_total=lambda: int(rec["virtual_memory"]["total"]),
        disk_usage=lambda _path: (int(rec["disk_usage"]["total"]), int(rec["disk_usage"]["free"])),
    )
