"""Probes replay recorded psutil/platform output; the policy gate coarsens, checks and drops."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.policy import admit
from agent.probes import CpuCoresProbe, CpuUsageProbe, DiskProbe, MemoryProbe, OsProbe, recorded_host
from agent.probes.hardware import cpu_busy_pct
from schema import CATALOGUE
from tests.agent.conftest import RECORDED

NOW = datetime(2026, 11, 28, 10, tzinfo=UTC)


def _recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((RECORDED / name).read_bytes())
    return data


def _host_metrics(name: str) -> dict[str, int | str]:
    host = recorded_host(RECORDED / name, lambda: NOW)
    raw: dict[str, object] = {}
    for probe in (OsProbe(host), CpuCoresProbe(host), MemoryProbe(host), DiskProbe(host, path=Path("/"))):
        raw.update(probe.collect())
    return admit(raw, catalogue=CATALOGUE, blocked={}, from_provider=False).metrics


def test_probes_linux_recording_gives_coarse_catalogue_values() -> None:
    """The Debian 12 recording: family, version, cores, memory rounded to GiB, disk to two significant digits."""
    assert _host_metrics("linux-debian12.json") == {
        "os.family": "linux",
        "os.version": "Debian 12",
        "host.cpu.logical_cores": 2,
        "host.memory.total_gib": 24,
        "host.disk.total_gib": 250,
        "host.disk.free_gib": 79,
    }


def test_probes_windows_server_and_macos_recordings() -> None:
    """Windows Server 2022 is named from its build number; macOS keeps major.minor."""
    windows = _host_metrics("windows-server2022.json")
    assert (windows["os.family"], windows["os.version"], windows["host.memory.total_gib"]) == (
        "windows", "Windows Server 2022", 32)  # fmt: skip
    mac = _host_metrics("macos-14.json")
    assert (mac["os.family"], mac["os.version"], mac["host.disk.total_gib"]) == ("macos", "macOS 14.5", 460)


@pytest.mark.parametrize(
    ("os_release", "expected"),
    [
        ('ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.3 LTS"\n', {"os.version": "Ubuntu 22.04"}),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n', {"os.version": "Rocky 9.3"}),
        ("ID=alpine\nVERSION_ID=3.19.1\n", {"os.version": "Alpine 3.19"}),
        ('ID=mydistro\nID_LIKE=debian\nVERSION_ID="12"\n', {"os.version": "Debian 12"}),
        ('ID=homebrew-os\nVERSION_ID="7 secret build"\n', {}),
        ("", {}),
    ],
)
def test_probes_os_release_is_reduced_to_name_and_major_minor(os_release: str, expected: dict[str, str]) -> None:
    """Only a recognised distribution name with major.minor is sent; anything else sends the family only."""
    host = replace(recorded_host(RECORDED / "linux-debian12.json", lambda: NOW), read_os_release=lambda: os_release)
    metrics = admit(OsProbe(host).collect(), catalogue=CATALOGUE, blocked={}, from_provider=False).metrics
    assert metrics == {"os.family": "linux", **expected}


def test_probes_windows_client_build_is_windows_11() -> None:
    """A client build from 22000 on is Windows 11; the build number itself is never sent."""
    host = replace(recorded_host(RECORDED / "windows-server2022.json", lambda: NOW),
                   win32_ver=lambda: ("10", "10.0.22631", "SP0", "Multiprocessor Free"), win32_edition=lambda: "Professional")  # fmt: skip
    assert OsProbe(host).collect() == {"os.family": "windows", "os.version": "Windows 11"}


def test_probes_cpu_usage_averages_recorded_interval() -> None:
    """CPU usage is the busy share between two recorded cpu_times samples, rounded by the policy."""
    first, second = _recording("linux-debian12.json")["cpu_times"]
    busy = cpu_busy_pct(first, second)
    assert busy is not None
    assert 57 < busy < 59
    host = replace(recorded_host(RECORDED / "linux-debian12.json", lambda: NOW), cpu_times=lambda: second)
    probe = CpuUsageProbe(host, previous=first)
    assert admit(probe.collect(), catalogue=CATALOGUE, blocked={}, from_provider=False).metrics == {
        "host.cpu.usage_pct": 58
    }
    assert probe.sample == second


def test_probes_cpu_usage_skips_first_sample_and_reboots() -> None:
    """No previous sample, or counters that went backwards (a reboot), give no usage value."""
    first, second = _recording("windows-server2022.json")["cpu_times"]
    host = replace(recorded_host(RECORDED / "windows-server2022.json", lambda: NOW), cpu_times=lambda: first)
    assert CpuUsageProbe(host, previous=None).collect() == {}
    assert CpuUsageProbe(host, previous=second).collect() == {}


def test_policy_maps_provider_keys_and_drops_the_rest() -> None:
    """Provider keys map onto usage metrics; unknown, host, disabled and non-integer values are dropped by reason."""
    admitted = admit(
        {"projects": 3, "usage.deployments": 10, "customer_email": "x@y.z", "host.memory.total_gib": 4,
         "deployments": True, "a b c " * 30: 1},
        catalogue=CATALOGUE, blocked={}, from_provider=True,
    )  # fmt: skip
    assert admitted.metrics == {"usage.projects": 3, "usage.deployments": 10}
    assert sorted(admitted.dropped) == [
        ("invalid_value", "usage.deployments"),
        ("not_in_catalogue", "<other>"),
        ("not_in_catalogue", "customer_email"),
        ("not_in_catalogue", "host.memory.total_gib"),
    ]
    disabled = admit({"projects": 3}, catalogue=CATALOGUE, blocked={"usage.projects": "disabled"}, from_provider=True)
    assert (disabled.metrics, disabled.dropped) == ({}, [("disabled", "usage.projects")])
    negative = admit({"projects": -1, "deployments": 2.5}, catalogue=CATALOGUE, blocked={}, from_provider=True)
    assert negative.metrics == {}
