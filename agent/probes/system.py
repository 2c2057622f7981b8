"""The operating system probe: ``os.family`` and ``os.version`` (name and major.minor only)."""

from __future__ import annotations

import re
import shlex
from typing import Final

from agent.errors import ProbeUnavailableError

from .host import HostAccess

__all__ = ["OsProbe", "parse_os_release"]

# os-release ID (and ID_LIKE fallbacks) -> the names the catalogue's os.version pattern allows.
_DISTROS: Final = {
    "ubuntu": "Ubuntu",
    "debian": "Debian",
    "rhel": "RHEL",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "centos": "CentOS",
    "ol": "Oracle Linux",
    "sles": "SUSE",
    "sled": "SUSE",
    "opensuse-leap": "openSUSE",
    "opensuse-tumbleweed": "openSUSE",
    "opensuse": "openSUSE",
    "amzn": "Amazon Linux",
    "fedora": "Fedora",
    "alpine": "Alpine",
}
# Windows Server releases by build number; client builds from 22000 are Windows 11.
_SERVER_BUILDS: Final = ((26100, "2025"), (20348, "2022"), (17763, "2019"), (14393, "2016"))
_VERSION: Final = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")


def parse_os_release(text: str) -> dict[str, str]:
    """The ``KEY=value`` pairs of an os-release file (quotes removed)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            try:
                parts = shlex.split(value)
            except ValueError:
                continue
            fields[key.strip()] = parts[0] if parts else ""
    return fields


class OsProbe:
    """Reads the OS family and its coarse version; never a kernel string, build or hostname."""

    name = "os"

    def __init__(self, host: HostAccess) -> None:
        self._host = host

    def collect(self) -> dict[str, object]:
        """``os.family`` and, where the release is recognised, ``os.version``."""
        system = self._host.system()
        if system == "Linux":
            return {"os.family": "linux", **self._linux()}
        if system == "Windows":
            return {"os.family": "windows", **self._windows()}
        if system == "Darwin":
            version = self._host.mac_ver()
            return {"os.family": "macos", **({"os.version": f"macOS {version}"} if _VERSION.match(version) else {})}
        if system == "FreeBSD":
            release = self._host.release()
            return {"os.family": "freebsd", **({"os.version": f"FreeBSD {release}"} if _VERSION.match(release) else {})}
        if not system:
            raise ProbeUnavailableError("platform.system() is empty")
        return {"os.family": "other"}

    def _linux(self) -> dict[str, object]:
        fields = parse_os_release(self._host.read_os_release())
        version = fields.get("VERSION_ID", "")
        candidates = [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]
        name = next((_DISTROS[c] for c in candidates if c in _DISTROS), None)
        # An unknown distribution's version number means nothing without its name: send the family only.
        if name is None or not _VERSION.match(version):
            return {}
        return {"os.version": f"{name} {version}"}

    def _windows(self) -> dict[str, object]:
        release, version, _csd, _ptype = self._host.win32_ver()
        try:
            build = int(version.split(".")[2])
        except (IndexError, ValueError):
            return {}
        if "Server" in self._host.win32_edition() or "Server" in release:
            year = next((name for first, name in _SERVER_BUILDS if build >= first), None)
            return {"os.version": f"Windows Server {year}"} if year else {}
        return {"os.version": "Windows 11" if build >= 22000 else "Windows 10"}
