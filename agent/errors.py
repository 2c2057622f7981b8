"""The agent's exceptions.

::

    AgentError
    ├── ConfigError (also ValueError)   bad config file, key or env var: names the field (CLI exit 2)
    ├── StateError                      a corrupt or unreadable state file: names the file (CLI exit 2)
    ├── StateLockedError                another agent process holds the state directory (CLI exit 1)
    ├── ProbeUnavailableError           a probe cannot read this OS; the probe is skipped
    └── SendError                       a delivery or data-subject request failed (CLI exit 1)
        └── RejectedError               the collector refused the request for good (a 4xx other than 408/429)
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "ConfigError",
    "ProbeUnavailableError",
    "RejectedError",
    "SendError",
    "StateError",
    "StateLockedError",
]


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """A configuration value that is missing, malformed or not allowed.

    Attributes:
        field: the config key as written in the TOML file, e.g. ``consent`` or ``usage.command``.
        message: what is wrong with it, in one line.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StateError(AgentError):
    """A state file that cannot be read or parsed (the message names the file)."""


class StateLockedError(AgentError):
    """The state directory is in use by another agent process."""


class ProbeUnavailableError(AgentError):
    """A probe has no way to read this value on this operating system."""


class SendError(AgentError):
    """A request to the collector failed (network error, timeout, unexpected answer)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RejectedError(SendError):
    """The collector answered with a final 4xx: retrying the same request cannot succeed."""
