"""Collector endpoints: the URLs of ``endpoint`` parsed into :class:`Endpoint`, and the URL checks the config uses.

Split from :mod:`agent.config` (which re-exports :class:`Endpoint`); the rules are the config's: an error
names the entry (``endpoint`` or ``endpoint[N]``), and a URL holding user info is refused, never redacted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["MAX_ENDPOINTS", "Endpoint", "check_url", "endpoints_of"]

MAX_ENDPOINTS: Final = 8
"""Most collector URLs ``endpoint`` may list: a retry round tries each once, so this bounds one round's cost."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One collector base URL of ``endpoint``, as configured, with the names the agent knows it by."""

    url: str
    """The URL as configured (requests go to it without its trailing slash, plus ``/v1/...``)."""
    key: str
    """Which collector this is: scheme, host, port (the default one spelled out) and path, never user info.
    Two entries with the same key are duplicates; the stored endpoint choice is this key."""
    label: str
    """Host, and port when the URL gives one: what history and messages show (never user info)."""
    name: str = "endpoint"
    """How errors name this entry: ``endpoint``, or ``endpoint[N]`` in a list (counted from 0)."""

    @property
    def base(self) -> str:
        """The URL to which API paths such as ``/v1/batches`` are appended."""
        return self.url.rstrip("/")

    @property
    def cleartext(self) -> bool:
        """Whether requests travel unencrypted over a network: ``http://`` to a host other than this machine
        (127.0.0.0/8, ::1, ``localhost``). The install secret is never sent to such an endpoint."""
        parts = urlsplit(self.url)
        return parts.scheme != "https" and not _is_loopback(parts.hostname or "")


def check_url(name: str, value: str, *, loopback_only: bool) -> None:
    """Raise :class:`ConfigError` on ``name`` unless ``value`` is an http(s) URL (on this machine if ``loopback_only``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, "must be an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - parsing the port is the check (it raises on a bad one)
    except ValueError:
        raise ConfigError(name, "has an invalid port") from None
    if loopback_only and not _is_loopback(parts.hostname):
        raise ConfigError(name, "must point at this machine (localhost, 127.0.0.1 or ::1)")


def _endpoint(name: str, url: object) -> Endpoint:
    if not isinstance(url, str):
        raise ConfigError(name, "must be a string")
    check_url(name, url, loopback_only=False)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Refused rather than redacted: a URL that holds no password can never print one (status, logs).
        raise ConfigError(
            name, "must not contain user info (user:password@); the collector needs no credentials in its URL"
        )
    assert parts.hostname is not None  # _check_url made sure
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    label = f"{host}:{parts.port}" if parts.port else host
    return Endpoint(url=url, key=f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}", label=label, name=name)


def endpoints_of(value: object) -> tuple[Endpoint, ...]:
    """The endpoints an ``endpoint`` setting names (a URL or a tuple of them); :class:`ConfigError` naming the entry."""
    if value is None:
        return ()
    if not isinstance(value, tuple):
        return (_endpoint("endpoint", value),)
    if not value:
        raise ConfigError("endpoint", "must list at least one URL")
    if len(value) > MAX_ENDPOINTS:
        raise ConfigError("endpoint", f"must list at most {MAX_ENDPOINTS} URLs")
    endpoints: list[Endpoint] = []
    for n, url in enumerate(value):
        endpoint = _endpoint(f"endpoint[{n}]", url)
        same = next((i for i, e in enumerate(endpoints) if e.key == endpoint.key), None)
        if same is not None:
            raise ConfigError(f"endpoint[{n}]", f"names the same collector as endpoint[{same}]")
        endpoints.append(endpoint)
    return tuple(endpoints)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
