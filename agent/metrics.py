"""What the agent collects now, metric by metric: consent's catalogue version, approvals, and the collector's policy.

Consent binds to a catalogue version. `telemetry-agent consent review|auto` records the version of the
agent's catalogue (with consent set in the config instead, the version in force at the first snapshot is
recorded). A metric whose ``since`` is newer waits until the admin approves it (`telemetry-agent metrics
approve`). Each catalogue metric is in one :data:`METRIC_STATES` state, decided in this order:

- ``retired``: the agent's catalogue retired it (``removed_in``): never collected again;
- ``disabled``: in the admin's ``disabled_metrics``;
- ``awaiting_approval``: added after the consented version and not approved;
- ``not_accepted``: the collector's policy (:mod:`agent.remote_policy`) does not take it in this agent's batches;
- ``collected``.

Kept in ``metrics.json`` in the state dir: ``{"consented_version", "consented_at", "approved": {key: at}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from schema import Catalogue

from .errors import AgentError
from .policy import DropReason
from .records import ConsentScope
from .remote_policy import CollectorPolicy
from .state import StateDir

__all__ = ["METRIC_STATES", "ConsentScope", "MetricState", "MetricStateName", "MetricsView", "Scope", "metric_states"]

MetricStateName = Literal["collected", "disabled", "awaiting_approval", "not_accepted", "retired"]
METRIC_STATES: Final[tuple[MetricStateName, ...]] = (
    "collected",
    "disabled",
    "awaiting_approval",
    "not_accepted",
    "retired",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricState:
    """One catalogue metric and whether it is collected now (and if not, why)."""

    key: str
    state: MetricStateName
    since: int
    removed_in: int | None
    category: str
    description: str
    approved_at: str | None
    """When the admin approved it with `metrics approve` (None: covered by the consented version, or not approved)."""
    accepted: bool | None
    """Whether the collector's policy takes it in this agent's batches; None when no policy is known."""

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "key": self.key,
            "state": self.state,
            "since": self.since,
            "removed_in": self.removed_in,
            "category": self.category,
            "description": self.description,
            "approved_at": self.approved_at,
            "accepted_by_collector": self.accepted,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsView:
    """Every metric of the agent's catalogue with its state, and what the states were decided by."""

    catalogue_version: int
    """The agent's catalogue version: what its batches are built against."""
    consented_version: int | None
    """The version consent was recorded for; None when none was (the states assume the agent's version)."""
    policy: CollectorPolicy | None
    """The collector's policy in use, or None: the agent's own catalogue applies."""
    metrics: tuple[MetricState, ...]
    catalogue: Catalogue = field(compare=False, repr=False)
    """The agent's catalogue the states were decided by."""

    def keys(self, state: MetricStateName) -> tuple[str, ...]:
        """The metrics in ``state``."""
        return tuple(m.key for m in self.metrics if m.state == state)

    @property
    def blocked(self) -> dict[str, DropReason]:
        """Metric key -> the reason it is left out now, for every metric not collected (the gate's input)."""
        return {m.key: m.state for m in self.metrics if m.state != "collected"}

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form of `telemetry-agent metrics` (and the ``metrics`` part of `status --json`)."""
        return {
            "catalogue_version": self.catalogue_version,
            "consented_version": self.consented_version,
            "collector": None if self.policy is None else self.policy.to_json(),
            "metrics": [m.to_json() for m in self.metrics],
            **{state: list(self.keys(state)) for state in METRIC_STATES if state != "collected"},
        }


def metric_states(
    catalogue: Catalogue, *, disabled: frozenset[str], scope: ConsentScope, policy: CollectorPolicy | None
) -> MetricsView:
    """The state of every metric of ``catalogue`` (see the module docstring for the order of the rules)."""
    consented = scope.version if scope.version is not None else catalogue.version
    states = []
    for key, entry in catalogue.metrics.items():
        accepted = None if policy is None else policy.accepts(key, catalogue.version)
        state: MetricStateName
        if not entry.active_at(catalogue.version):
            state = "retired"
        elif key in disabled:
            state = "disabled"
        elif entry.since > consented and key not in scope.approved:
            state = "awaiting_approval"
        elif accepted is False:
            state = "not_accepted"
        else:
            state = "collected"
        states.append(
            MetricState(
                key=key,
                state=state,
                since=entry.since,
                removed_in=entry.removed_in,
                category=entry.category,
                description=entry.description,
                approved_at=scope.approved.get(key),
                accepted=accepted,
            )
        )
    return MetricsView(
        catalogue_version=catalogue.version,
        consented_version=scope.version,
        policy=policy,
        metrics=tuple(states),
        catalogue=catalogue,
    )


class Scope:
    """Consent's catalogue version, the admin's approvals and the collector's policy, for one state dir."""

    def __init__(
        self, catalogue: Catalogue, disabled: frozenset[str], state: StateDir, stamp: Callable[[], str]
    ) -> None:
        self.catalogue = catalogue
        self._disabled = disabled
        self._state = state
        self._stamp = stamp

    def consent_scope(self) -> ConsentScope:
        """What ``metrics.json`` holds (an empty scope when it does not exist)."""
        return self._state.consent_scope()

    def record_consent(self) -> None:
        """Consent was given (or confirmed) now: for this agent's catalogue version."""
        scope = self.consent_scope()
        self._state.set_consent_scope(
            ConsentScope(version=self.catalogue.version, at=self._stamp(), approved=scope.approved)
        )

    def ensure_recorded(self) -> None:
        """Record the catalogue version in force if consent (from the config) has none recorded yet."""
        if self.consent_scope().version is None:
            self.record_consent()

    def policy(self) -> CollectorPolicy | None:
        """The collector's policy last fetched or imported, if any."""
        return self._state.collector_policy()

    def learn(self, policy: CollectorPolicy) -> None:
        """Keep a newly fetched or imported policy."""
        self._state.set_collector_policy(policy)

    def view(self) -> MetricsView:
        """Every metric with its state now."""
        return metric_states(self.catalogue, disabled=self._disabled, scope=self.consent_scope(), policy=self.policy())

    def approve(self, keys: list[str], *, every: bool = False) -> list[str]:
        """Approve metrics awaiting approval; returns those newly approved.

        Raises :class:`AgentError` (CLI exit 2) for a key that is not a metric of the agent's catalogue or that
        is retired. A key already covered by the consented version is accepted and left as it is.
        """
        view = self.view()
        by_key = {m.key: m for m in view.metrics}
        if every:
            keys = list(view.keys("awaiting_approval"))
        for key in keys:
            metric = by_key.get(key)
            if metric is None:
                raise AgentError(
                    f"metrics approve: {key!r} is not a metric of catalogue version "
                    f"{self.catalogue.version} (see `telemetry-agent metrics`)"
                )
            if metric.state == "retired":
                raise AgentError(
                    f"metrics approve: {key} was retired in catalogue version {metric.removed_in}; "
                    "it is no longer collected"
                )
        scope = self.consent_scope()
        consented = scope.version if scope.version is not None else self.catalogue.version
        new = [k for k in dict.fromkeys(keys) if by_key[k].since > consented and k not in scope.approved]
        if new:
            at = self._stamp()
            approved = {**scope.approved, **dict.fromkeys(new, at)}
            self._state.set_consent_scope(ConsentScope(version=scope.version, at=scope.at, approved=approved))
        return new
