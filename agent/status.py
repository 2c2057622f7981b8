"""What `telemetry-agent status` reports: the settings in force, what waits, and what happens next and when.

Read from the config and the state directory only (no metric value ever appears). The schedule is shown only
when it will happen: while a daemon (`run`, or an agent embedded in the product) holds the state directory
and consent is not off. Every time is UTC in the ``Z`` form the rest of the agent writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from schema import format_instant

from .client import starting_endpoint
from .errors import StateIOError
from .metrics import MetricsView
from .outbound import HeldBatch
from .records import ConsentMode, ConsentSource, HistoryEntry, ProviderRecord, Rejection

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["EndpointLine", "NextSend", "NextSteps", "Status", "read_status"]

NextSend = Literal["scheduled", "pending", "after_seal", "after_approval"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NextSteps:
    """What the daemon does next, and when; all None while no daemon runs or consent is off."""

    snapshot_at: str | None = None
    seal_at: str | None = None
    send_at: str | None = None
    send: NextSend | None = None
    """``scheduled`` (at ``send_at``), ``pending`` (batches may go; the daemon picks a moment within a minute),
    ``after_seal`` (nothing waits: within ``send_window_s`` of the next seal), ``after_approval`` (review mode:
    only once you approve a batch)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointLine:
    """One configured collector, as status lists it."""

    url: str
    label: str
    current: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Everything `status` shows; :meth:`to_json` is its ``--json`` form."""

    config_file: str | None
    """The config file read, or None: defaults and ``TELEMETRY_*`` variables only."""
    consent: ConsentMode
    consent_source: ConsentSource
    """``config``, ``consent command`` or ``DO_NOT_TRACK / TELEMETRY_DISABLED``."""
    consent_set_at: str | None
    """When `telemetry-agent consent MODE` stored the mode in force (None unless that is the source)."""
    config_consent: str
    """The mode of the config file or ``TELEMETRY_CONSENT``: what `telemetry-agent consent reset` returns to
    (``DO_NOT_TRACK``/``TELEMETRY_DISABLED`` still force off over it)."""
    install_id: str | None
    endpoints: tuple[EndpointLine, ...]
    state_dir: str
    daemon_pid: int | None
    """The pid of the daemon holding the state dir (0: one does, pid unknown); None when none runs."""
    next: NextSteps
    outbox_batches: int
    outbox_approved: int
    max_outbox_batches: int
    waiting_approval: int
    """Sealed batches that go only once approved (review mode; 0 in the other modes)."""
    open_batch_id: str | None
    open_snapshots: int
    rejected: tuple[Rejection, ...]
    held: tuple[HeldBatch, ...]
    """Sealed batches not sent because the collector's policy would refuse them: batch id, code, message, path."""
    metrics: MetricsView
    """Every catalogue metric and its state (what waits for approval, what the collector does not accept)."""
    last_attempt: HistoryEntry | None
    provider: str | None
    """The configured usage provider (kind and command, file or URL), or None."""
    provider_record: ProviderRecord
    counters: dict[str, Any]
    problems: tuple[str, ...]

    @property
    def daemon_running(self) -> bool:
        """Whether a daemon holds the state directory."""
        return self.daemon_pid is not None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form (times as ``YYYY-MM-DDTHH:MM:SSZ``)."""
        current = next((e.url for e in self.endpoints if e.current), None)
        return {
            "config_file": self.config_file,
            "consent": self.consent,
            "consent_source": self.consent_source,
            "consent_set_at": self.consent_set_at,
            "config_consent": self.config_consent,
            "install_id": self.install_id,
            "problems": list(self.problems),
            "endpoint": current,
            "endpoints": [asdict(e) for e in self.endpoints],
            "state_dir": self.state_dir,
            "daemon": {"running": self.daemon_running, "pid": self.daemon_pid or None},
            "next": asdict(self.next),
            "outbox": {
                "batches": self.outbox_batches,
                "approved": self.outbox_approved,
                "waiting_approval": self.waiting_approval,
                "max_batches": self.max_outbox_batches,
            },
            "open_batch": {"batch_id": self.open_batch_id, "snapshots": self.open_snapshots},
            "rejected": [{"batch_id": r.batch_id, **r.to_json()} for r in self.rejected],
            "held": [h.to_json() for h in self.held],
            "metrics": self.metrics.to_json(),
            "last_attempt": None if self.last_attempt is None else self.last_attempt.to_json(),
            "provider": {"configured": self.provider, **self.provider_record.to_json()},
            "counters": self.counters,
        }


def _z(moment: datetime | None) -> str | None:
    """A stored time in the ``Z`` form, or None when it is missing or unreadable."""
    return None if moment is None else format_instant(moment)


def _next_steps(engine: Engine, mode: str, *, running: bool, sendable: int) -> NextSteps:
    if not running or mode == "off":
        return NextSteps()  # a schedule left by a daemon that stopped, or one that reads nothing: not shown
    saved = engine.state.schedule()
    send_at = _z(saved.next_send_at)
    send: NextSend
    if send_at is not None:
        send = "scheduled"
    elif sendable:
        send = "pending"
    elif mode == "review":
        send = "after_approval"
    else:
        send = "after_seal"
    return NextSteps(snapshot_at=_z(saved.next_snapshot_at), seal_at=_z(saved.next_seal_at), send_at=send_at, send=send)


def read_status(engine: Engine) -> Status:
    """Gather the status of ``engine``'s state dir (the caller holds its lock).

    On a full or read-only state dir it shows what it can read: without a secret yet, no install id.
    """
    state = engine.state
    mode, source = engine.consent()
    problems: list[str] = []
    try:
        install_id: str | None = engine.install_id()
    except StateIOError as exc:
        install_id = None
        problems.append(f"no install id yet: {exc}")
    try:
        pid = state.daemon_pid()
    except StateIOError as exc:
        pid = None
        problems.append(f"cannot tell whether the daemon runs: {exc}")
    outbox = state.outbox()
    approved = state.approvals()
    n_approved = sum(e.batch_id in approved for e in outbox)
    waiting = len(outbox) - n_approved if mode == "review" else 0
    sendable = 0 if mode == "off" else n_approved if mode == "review" else len(outbox)
    history = state.history_entries()
    opened = state.open_batch()
    endpoints = engine.config.endpoints
    choice = state.endpoint_choice()
    current = starting_endpoint(endpoints, None if choice is None else choice.key)
    stored = state.consent() if source == "consent command" else None
    return Status(
        config_file=None if engine.config_file is None else str(engine.config_file),
        consent=mode,
        consent_source=source,
        consent_set_at=None if stored is None else stored.set_at,
        config_consent=engine.config.consent,
        install_id=install_id,
        endpoints=tuple(EndpointLine(url=e.url, label=e.label, current=n == current) for n, e in enumerate(endpoints)),
        state_dir=str(state.root),
        daemon_pid=pid,
        next=_next_steps(engine, mode, running=pid is not None, sendable=sendable),
        outbox_batches=len(outbox),
        outbox_approved=n_approved,
        max_outbox_batches=engine.config.max_outbox_batches,
        waiting_approval=waiting,
        open_batch_id=None if opened is None else opened.batch_id,
        open_snapshots=0 if opened is None else len(opened.snapshots),
        rejected=tuple(state.rejected()),
        held=tuple(engine.held()),
        metrics=engine.metrics(),
        last_attempt=history[-1] if history else None,
        provider=None if engine.provider is None else engine.provider.label,
        provider_record=state.provider_record(),
        counters=state.counters(),
        problems=tuple(problems),
    )
