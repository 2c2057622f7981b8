"""What the state directory holds, typed: one small frozen record per state file (or per entry of one).

Each record reads its file's JSON with ``from_json`` and writes it with ``to_json``; the file names and the
reading and writing themselves belong to :class:`~agent.state.StateDir`. The JSON is the format the agent has
always written, so a state dir of an earlier release reads unchanged: a field it lacks reads as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

from schema import Snapshot

from .errors import StateError

__all__ = [
    "AttemptOutcome",
    "ConsentMode",
    "ConsentRecord",
    "ConsentScope",
    "ConsentSource",
    "CpuSample",
    "EndpointChoice",
    "ErrorInfo",
    "Attempt",
    "HistoryEntry",
    "OpenBatch",
    "ProviderRecord",
    "Rejection",
    "Schedule",
    "is_consent_mode",
]

ConsentMode = Literal["off", "review", "auto"]
ConsentSource = Literal["config", "consent command", "DO_NOT_TRACK / TELEMETRY_DISABLED"]
"""Where the consent mode in force comes from: the config, `telemetry-agent consent`, or the variables that force
it off."""
AttemptOutcome = Literal["delivered", "duplicate", "retry", "rejected", "failed", "exported"]
"""What one attempt came to: ``retry`` (another attempt follows) and ``failed`` (none does) are failures;
``exported`` is a batch written to a directory for an air-gapped upload."""


def is_consent_mode(value: object) -> TypeGuard[ConsentMode]:
    """Whether ``value`` is one of the consent modes (``off``, ``review``, ``auto``)."""
    return value in ("off", "review", "auto")


def _text(saved: Mapping[str, Any], key: str) -> str | None:
    value = saved.get(key)
    return value if isinstance(value, str) else None


def _corrupt(path: str) -> StateError:
    return StateError(f"{path}: corrupt state file (unexpected content); move it aside to reset it")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """Why an attempt failed or a batch was refused: the collector's error (or the agent's own, e.g. ``network``)."""

    code: str
    message: str | None = None
    path: str | None = None
    """The JSON path at fault, when the collector names one."""

    @classmethod
    def from_json(cls, saved: object) -> ErrorInfo | None:
        """The error of a stored object (None when there is none)."""
        if not isinstance(saved, Mapping) or not isinstance(saved.get("code"), str):
            return None
        return cls(code=saved["code"], message=_text(saved, "message"), path=_text(saved, "path"))

    def to_json(self) -> dict[str, str]:
        """``code``, and ``message`` and ``path`` when known."""
        out = {"code": self.code}
        if self.message is not None:
            out["message"] = self.message
        if self.path is not None:
            out["path"] = self.path
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One POST (or export) of one batch and what came of it."""

    at: str
    status: int | None
    """The HTTP status of the answer; None when there was none (or for an export)."""
    outcome: AttemptOutcome
    error: ErrorInfo | None = None
    wait_s: float | None = None
    """The wait before the next attempt: 0 when it fails over at once, None when none follows."""
    endpoint: str | None = None
    """The endpoint's label (host and port); None for an export, and in entries older than failover."""
    exported_to: str | None = None
    """The directory an export wrote the batch to (a local path: history is for the admin, never sent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry(Attempt):
    """One entry of ``history.json``: an :class:`Attempt`, and which batch it carried."""

    batch_id: str
    sha256: str
    size: int
    """The batch's length in bytes (``bytes`` in the file)."""

    @classmethod
    def from_json(cls, saved: object, path: str) -> HistoryEntry:
        """One entry as stored; :class:`StateError` naming ``path`` when it is not one."""
        if not isinstance(saved, Mapping):
            raise _corrupt(path)
        try:
            status, wait_s = saved.get("status"), saved.get("wait_s")
            return cls(
                at=str(saved["at"]),
                batch_id=str(saved["batch_id"]),
                sha256=str(saved["sha256"]),
                size=int(saved["bytes"]),
                status=status if type(status) is int else None,
                outcome=saved["outcome"],
                error=ErrorInfo.from_json(saved.get("error")),
                wait_s=float(wait_s) if isinstance(wait_s, int | float) else None,
                endpoint=_text(saved, "endpoint"),
                exported_to=_text(saved, "exported_to"),
            )
        except (KeyError, TypeError, ValueError):
            raise _corrupt(path) from None

    def to_json(self) -> dict[str, Any]:
        """The entry as ``history.json`` (and ``history --json``) holds it."""
        entry: dict[str, Any] = {
            "at": self.at,
            "batch_id": self.batch_id,
            "sha256": self.sha256,
            "bytes": self.size,
            "status": self.status,
            "outcome": self.outcome,
            "error": None if self.error is None else self.error.to_json(),
            "wait_s": self.wait_s,
            "endpoint": self.endpoint,
        }
        if self.exported_to is not None:
            entry["exported_to"] = self.exported_to
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """Why the collector refused a batch for good (``rejected/ID.error.json``), for the admin to see."""

    batch_id: str
    at: str | None
    status: int | None
    error: ErrorInfo | None

    @classmethod
    def from_json(cls, batch_id: str, saved: Mapping[str, Any]) -> Rejection:
        """The stored error of the refused batch ``batch_id``."""
        status = saved.get("status")
        return cls(
            batch_id=batch_id,
            at=_text(saved, "at"),
            status=status if type(status) is int else None,
            error=ErrorInfo.from_json(saved),
        )

    def to_json(self) -> dict[str, Any]:
        """The file's content: ``at``, ``status`` and the collector's error (code, message, path)."""
        return {"at": self.at, "status": self.status, **({} if self.error is None else self.error.to_json())}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenBatch:
    """The batch snapshots go into until it is sealed (``open.json``)."""

    batch_id: str
    snapshots: tuple[Snapshot, ...] = ()

    @classmethod
    def from_json(cls, saved: Mapping[str, Any], path: str) -> OpenBatch | None:
        """The open batch; None when there is none; :class:`StateError` naming ``path`` when it is not one."""
        if not saved.get("batch_id"):
            return None
        try:
            snapshots = tuple(
                Snapshot(taken_at=str(s["taken_at"]), metrics=dict(s["metrics"])) for s in saved.get("snapshots", [])
            )
        except (KeyError, TypeError, ValueError):
            raise _corrupt(path) from None
        return cls(batch_id=str(saved["batch_id"]), snapshots=snapshots)

    def to_json(self) -> dict[str, Any]:
        """The content of ``open.json``."""
        return {
            "batch_id": self.batch_id,
            "snapshots": [{"taken_at": s.taken_at, "metrics": dict(s.metrics)} for s in self.snapshots],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentRecord:
    """The mode set by `telemetry-agent consent MODE` (``consent.json``): it wins over the config."""

    mode: ConsentMode
    set_at: str | None = None

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> ConsentRecord | None:
        """The stored mode; None when none (or none that is a mode) is stored."""
        mode = saved.get("mode")
        return cls(mode=mode, set_at=_text(saved, "set_at")) if is_consent_mode(mode) else None

    def to_json(self) -> dict[str, Any]:
        """The content of ``consent.json``."""
        return {"mode": self.mode, "set_at": self.set_at}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentScope:
    """The catalogue version consent was given for, and the metrics approved since (``metrics.json``)."""

    version: int | None = None
    """None while no consent was recorded (turning consent on records the agent's catalogue version)."""
    at: str | None = None
    approved: Mapping[str, str] = field(default_factory=dict)
    """Metric key -> when `telemetry-agent metrics approve` approved it (UTC)."""

    @classmethod
    def from_json(cls, saved: Mapping[str, Any], path: str) -> ConsentScope:
        """Read ``metrics.json``'s content; :class:`StateError` naming ``path`` when it is not one."""
        version, at, approved = saved.get("consented_version"), saved.get("consented_at"), saved.get("approved", {})
        if not (
            (version is None or type(version) is int)
            and (at is None or isinstance(at, str))
            and isinstance(approved, dict)
            and all(isinstance(v, str) for v in approved.values())
        ):
            raise _corrupt(path)
        return cls(version=version, at=at, approved=dict(approved))

    def to_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {"consented_version": self.version, "consented_at": self.at, "approved": dict(self.approved)}


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuSample:
    """The previous CPU times (``cpu.json``): the next snapshot's usage is averaged over the interval since."""

    at: datetime
    times: Mapping[str, float]

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> CpuSample | None:
        """The stored sample; None when there is none or it is unreadable (the next snapshot stores another)."""
        try:
            at = datetime.fromisoformat(saved["at"])
            times = {str(k): float(v) for k, v in saved["times"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return cls(at=at, times=times)

    def to_json(self) -> dict[str, Any]:
        """The content of ``cpu.json``."""
        return {"at": self.at.isoformat(), "times": dict(self.times)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRecord:
    """The usage provider's last outcomes (``provider.json``), for ``status``; local only, never sent."""

    kind: str | None = None
    """``command``, ``file``, ``url`` or ``callable``: the provider the last snapshot asked."""
    last_ok_at: str | None = None
    last_error_at: str | None = None
    last_error: str | None = None
    """The reason, naming the provider (its program, file or URL) and, for a command, its first stderr line."""

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> ProviderRecord:
        """The record from ``provider.json``'s content (fields missing or of the wrong type read as None)."""
        return cls(
            kind=_text(saved, "kind"),
            last_ok_at=_text(saved, "last_ok_at"),
            last_error_at=_text(saved, "last_error_at"),
            last_error=_text(saved, "last_error"),
        )

    def to_json(self) -> dict[str, str | None]:
        """The content of ``provider.json``."""
        return {
            "kind": self.kind,
            "last_ok_at": self.last_ok_at,
            "last_error_at": self.last_error_at,
            "last_error": self.last_error,
        }


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When the daemon next snapshots, seals and sends (``schedule.json``); None: not scheduled (yet)."""

    next_snapshot_at: datetime | None = None
    next_seal_at: datetime | None = None
    next_send_at: datetime | None = None

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> Schedule:
        """The stored schedule (a time missing or unreadable reads as None)."""
        return cls(
            next_snapshot_at=_moment(saved.get("next_snapshot_at")),
            next_seal_at=_moment(saved.get("next_seal_at")),
            next_send_at=_moment(saved.get("next_send_at")),
        )

    def to_json(self) -> dict[str, str | None]:
        """The content of ``schedule.json`` (ISO 8601 times)."""
        return {
            "next_snapshot_at": None if self.next_snapshot_at is None else self.next_snapshot_at.isoformat(),
            "next_seal_at": None if self.next_seal_at is None else self.next_seal_at.isoformat(),
            "next_send_at": None if self.next_send_at is None else self.next_send_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointChoice:
    """The collector endpoint that answered last (when ``endpoint`` lists several): requests start there."""

    key: str
    """The endpoint's key (scheme, host, port, path; never user info), see :class:`agent.config.Endpoint`."""
    since: str
    """When it became the current endpoint (UTC, ``YYYY-MM-DDTHH:MM:SSZ``)."""
