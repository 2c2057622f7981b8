"""The OS access the host probes use, gathered in one injectable bundle."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["HostAccess", "real_host"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAccess:
    """Functions that read the host; tests replace them with recorded output (``tests/data/psutil``)."""

    system: Callable[[], str]
    read_os_release: Callable[[], str]
    win32_ver: Callable[[], tuple[str, str, str, str]]
    win32_edition: Callable[[], str]
    mac_ver: Callable[[], str]
    release: Callable[[], str]
    cpu_count: Callable[[], int | None]
    cpu_times: Callable[[], dict[str, float]]
    memory_total: Callable[[], int]
    disk_usage: Callable[[Path], tuple[int, int]]


def _read_os_release() -> str:
    # os-release(5): /etc first, /usr/lib as the vendor fallback.
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            return Path(candidate).read_text("utf-8", errors="replace")
        except OSError:
            continue
    return ""


def _disk_usage(path: Path) -> tuple[int, int]:
    usage = psutil.disk_usage(str(path))
    return usage.total, usage.free


def real_host() -> HostAccess:
    """Access to the machine this process runs on, through platform and psutil."""
    return HostAccess(
        system=platform.system,
        read_os_release=_read_os_release,
        win32_ver=platform.win32_ver,
        win32_edition=lambda: platform.win32_edition() or "",
        mac_ver=lambda: platform.mac_ver()[0],
        release=platform.release,
        cpu_count=lambda: psutil.cpu_count(logical=True),
        cpu_times=lambda: dict(psutil.cpu_times()._asdict()),
        memory_total=lambda: int(psutil.virtual_memory().total),
        disk_usage=_disk_usage,
    )
