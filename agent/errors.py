"""The agent's exceptions.

::

    AgentError
    ├── ConfigError (also ValueError)   bad config file, key or env var: names the field (CLI exit 2)
    ├── StateError                      a corrupt state file: names the file (CLI exit 2)
    │   ├── StateAccessError            a state dir or file this user must not trust or cannot read: another
    │   │                               user's, writable by others, a symbolic link (CLI exit 2)
    │   └── StateIOError                the OS failed a read or write (disk full, read-only, I/O error) (CLI exit 1)
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
    "StateAccessError",
    "StateError",
    "StateIOError",
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


class StateAccessError(StateError):
    """The state dir (or a file in it) is not safe or not possible to use as this user; nothing was read from it.

    Attributes:
        problem: what is wrong, naming the path (the message without the hint on how to run the command).
        owner: the name of the user the state dir belongs to, when the fix is to run the command as that
            user (e.g. root running an admin command against the service user's dir); else None.
    """

    def __init__(self, problem: str, *, owner: str | None = None) -> None:
        hint = f": run the command as that user, e.g. `sudo -u {owner} telemetry-agent ...`" if owner else ""
        super().__init__(problem + hint)
        self.problem = problem
        self.owner = owner


class StateIOError(StateError):
    """The OS failed to read or write a state file (disk full, read-only file system); the message names the
    path and the OS error. The state stays as it was: every write is atomic."""


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
