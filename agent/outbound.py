"""What leaves the install, and what the agent learns from its collector: send, export, the collector's policy,
and the data-subject requests (``remote``, ``forget``).

Split from :mod:`agent.engine`: :class:`Outbound` is a base of :class:`~agent.Engine` and works on the state
and settings the engine holds. Nothing here opens a connection while consent is off, except the admin's own
``remote`` and ``forget``.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from schema import SchemaError, parse_policy

from .client import HttpTransport
from .clock import Clock
from .config import AgentConfig, Endpoint
from .errors import AgentError, SendError, StateError
from .metrics import Scope
from .records import ConsentMode, ConsentSource, ErrorInfo, HistoryEntry, Rejection
from .remote_policy import CollectorPolicy, read_policy_file
from .state import EndpointChoice, OutboxEntry, StateDir
from .transport import Attempt, ExportTransport, Transport

__all__ = ["HeldBatch", "Outbound", "SendReport", "SendResult"]

log = logging.getLogger("agent")
SendOutcome = Literal["delivered", "duplicate", "exported", "rejected", "failed", "held"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldBatch:
    """A sealed batch not sent because the collector's policy would refuse it, and why."""

    batch_id: str
    code: str
    message: str
    path: str

    @classmethod
    def of(cls, batch_id: str, refusal: SchemaError) -> HeldBatch:
        """The held batch ``batch_id`` refused for ``refusal``."""
        return cls(batch_id=batch_id, code=refusal.code, message=refusal.message, path=refusal.path)

    @property
    def error(self) -> ErrorInfo:
        """The refusal as an error (code, message, path)."""
        return ErrorInfo(code=self.code, message=self.message, path=self.path)

    def to_json(self) -> dict[str, str]:
        """Batch id, code, message and path."""
        return {"batch_id": self.batch_id, "code": self.code, "message": self.message, "path": self.path}


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What became of one batch in a send (or an export)."""

    batch_id: str
    outcome: SendOutcome
    status: int | None = None
    endpoint: str | None = None
    attempts: int = 0
    error: ErrorInfo | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``send --json`` form of one batch."""
        return {
            "batch_id": self.batch_id,
            "outcome": self.outcome,
            "status": self.status,
            "endpoint": self.endpoint,
            "attempts": self.attempts,
            "error": None if self.error is None else self.error.to_json(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReport:
    """Per batch, what came of it (oldest first); ``skipped`` says why nothing went."""

    results: tuple[SendResult, ...] = ()
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing failed or was rejected (a batch ``held`` back waits for its collector: no failure)."""
        return all(r.outcome in ("delivered", "duplicate", "exported", "held") for r in self.results)

    def to_json(self) -> dict[str, Any]:
        """The ``send --json`` form."""
        return {"skipped": self.skipped, "results": [r.to_json() for r in self.results]}


class Outbound(abc.ABC):
    """The engine's operations that talk to the collector or hand batches over by other means."""

    config: AgentConfig
    state: StateDir
    scope: Scope
    clock: Clock
    rng: random.Random
    _sleep: Callable[[float], Awaitable[None]]

    @abc.abstractmethod
    def consent(self) -> tuple[ConsentMode, ConsentSource]:
        """The mode in force and where it comes from."""

    @abc.abstractmethod
    def install_id(self) -> str:
        """This install's public id."""

    @abc.abstractmethod
    def _stamp(self) -> str: ...

    # -- the collector's policy ------------------------------------------------------------------

    def policy(self) -> CollectorPolicy | None:
        """The collector's policy the agent goes by (fetched or imported), or None: its own catalogue applies."""
        return self.scope.policy()

    def import_policy(self, path: Path) -> CollectorPolicy:
        """Load a policy document carried over from the collector (air-gapped installs) and go by it."""
        policy = read_policy_file(path, at=self._stamp())
        self.scope.learn(policy)
        return policy

    async def refresh_policy(self, transport: HttpTransport | None = None) -> str | None:
        """Fetch the collector's ``GET /v1/policy`` and keep it; returns why not (None when it worked or when
        the collector has no policy to give). With consent off it opens no connection and says so."""
        mode, source = self.consent()
        if mode == "off":
            return f"collector policy not fetched: consent is off ({source})"
        try:
            found = await (transport if transport is not None else self._transport()).fetch_policy()
        except SendError as exc:
            return f"collector policy not refreshed: {exc}"
        if found is None:
            return None
        endpoint, doc = found
        try:
            catalogue = parse_policy(doc)
        except SchemaError as exc:
            return f"collector policy not refreshed: {endpoint.label} served a policy that does not read: {exc}"
        self.scope.learn(
            CollectorPolicy(catalogue=catalogue, source="collector", origin=endpoint.label, at=self._stamp())
        )
        return None

    def held(self) -> list[HeldBatch]:
        """Sealed batches the collector's policy would refuse (e.g. it went back to an older catalogue): they
        stay in the outbox, unsent, until it takes them. Oldest first."""
        policy = self.scope.policy()
        if policy is None:
            return []
        return [HeldBatch.of(e.batch_id, err) for e in self.state.outbox() if (err := policy.refusal(e.data))]

    # -- sending ---------------------------------------------------------------------------------

    def _record(self, entry: OutboxEntry, attempt: Attempt) -> None:
        fields = {f.name: getattr(attempt, f.name) for f in dataclasses.fields(attempt)}
        if attempt.wait_s is not None:
            fields["wait_s"] = round(attempt.wait_s, 3)  # milliseconds are plenty in the admin's history
        self.state.record(
            HistoryEntry(
                **fields,
                batch_id=entry.batch_id,
                sha256=hashlib.sha256(entry.data).hexdigest(),
                size=len(entry.data),
            ),
            max_entries=self.config.max_history_entries,
        )

    async def _hand_over(
        self, transport: Transport, entries: list[OutboxEntry], policy: CollectorPolicy | None
    ) -> tuple[SendResult, ...]:
        """The one walk of the outbox: each batch in turn through ``transport``, oldest first, every attempt
        recorded; delivered batches leave the outbox, refused ones go to ``rejected/``, and the first that fails
        ends the walk (later batches wait for the next one). Batches ``policy`` refuses stay, ``held``."""
        results: list[SendResult] = []
        for entry in entries:
            refusal = None if policy is None else policy.refusal(entry.data)
            if refusal is not None:
                # The collector would refuse it for good: it waits, unsent, until the collector takes it.
                results.append(
                    SendResult(
                        batch_id=entry.batch_id, outcome="held", error=HeldBatch.of(entry.batch_id, refusal).error
                    )
                )
                continue
            delivery = await transport.deliver(entry.data, entry.batch_id, partial(self._record, entry))
            last = delivery.attempts[-1]
            outcome: SendOutcome = delivery.outcome
            if outcome == "delivered" and last.outcome in ("duplicate", "exported"):
                outcome = "duplicate" if last.outcome == "duplicate" else "exported"
            results.append(
                SendResult(
                    batch_id=entry.batch_id,
                    outcome=outcome,
                    status=last.status,
                    endpoint=last.endpoint,
                    attempts=len(delivery.attempts),
                    error=delivery.error,
                )
            )
            if delivery.outcome == "delivered":
                self.state.mark_sent(entry)
            elif delivery.outcome == "rejected":
                self.state.mark_rejected(
                    entry, Rejection(batch_id=entry.batch_id, at=last.at, status=last.status, error=delivery.error)
                )
            else:
                break  # the collector is unreachable or failing: later batches wait for the next send
        return tuple(results)

    def sendable(self) -> list[str]:
        """Ids of sealed batches consent lets go now (all in auto, approved ones in review, none when off)."""
        mode, _ = self.consent()
        if mode == "off":
            return []
        entries = self.state.outbox()
        if mode == "review":
            approved = self.state.approvals()
            entries = [e for e in entries if e.batch_id in approved]
        return [e.batch_id for e in entries]

    async def send(self) -> SendReport:
        """Deliver what consent allows, oldest first; stops at the first batch that could not be delivered."""
        mode, source = self.consent()
        if mode == "off":
            # Off means no connection at all: not even a transport is created.
            return SendReport(skipped=f"consent is off ({source}): nothing sent")
        ids = set(self.sendable())
        entries = [e for e in self.state.outbox() if e.batch_id in ids]
        if not entries:
            return SendReport(skipped="nothing to send" if mode == "auto" else "no approved batch waiting")
        transport = self._transport()
        problem = await self.refresh_policy(transport)
        if problem:
            log.debug("%s; going by the policy known before", problem)  # the delivery says why if it fails too
        return SendReport(results=await self._hand_over(transport, entries, self.scope.policy()))

    def _transport(self) -> HttpTransport:
        """A transport that starts at the stored endpoint choice and stores a new one when it changes."""
        choice = self.state.endpoint_choice()
        return HttpTransport(
            self.config,
            sleep=self._sleep,
            rng=self.rng,
            now=self.clock.now,
            current=None if choice is None else choice.key,
            on_answer=self._choose_endpoint,
        )

    def _choose_endpoint(self, endpoint: Endpoint) -> None:
        # Best effort: the choice only saves one failover after a restart, so failing to store it
        # (disk full, say) must not stop a delivery that is going well.
        try:
            self.state.choose_endpoint(EndpointChoice(key=endpoint.key, since=self._stamp()))
        except (OSError, StateError) as exc:
            log.warning("cannot store the current endpoint %s: %s", endpoint.label, exc)

    # -- export and data-subject requests ---------------------------------------------------------

    def export(self, target: Path) -> list[Path]:
        """Write each sealed batch as ``<batch_id>.json`` (exact bytes) for an air-gapped upload.

        Each one written leaves the outbox (history records it as ``exported``), so the next export writes
        only batches sealed since. Batches the known policy would refuse (:meth:`held`) are not written.
        """
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"{target}: cannot create ({exc.strerror})") from None
        # Carried over by hand from now on: each batch written leaves the outbox (so it is not exported again,
        # nor sent, nor dropped as the oldest when it fills up), its bytes kept in sent/ while the history
        # names them. The known (imported) policy holds back what the collector would refuse.
        transport = ExportTransport(target, now=self.clock.now)
        results = asyncio.run(self._hand_over(transport, self.state.outbox(), self.scope.policy()))
        return [transport.path(r.batch_id) for r in results if r.outcome == "exported"]

    async def remote(self) -> dict[str, Any]:
        """What the collector holds about this install (proven by the secret)."""
        return await self._transport().install_request("GET", self.install_id(), self.state.secret())

    def check_install_requests(self) -> None:
        """Raise :class:`ConfigError` now if `remote`/`forget` could not be sent (no endpoint, or plain HTTP to
        another machine), so `forget` does not ask for a confirmation it cannot act on."""
        self._transport().refuse_cleartext()

    async def forget(self) -> dict[str, Any]:
        """Ask the collector to erase this install; on success start over with a new secret and id."""
        answer = await self._transport().install_request("DELETE", self.install_id(), self.state.secret())
        self.state.reset()
        self.state.new_secret()
        return {
            "deleted": answer.get("deleted"),
            "old_install_id": answer.get("install_id"),
            "new_install_id": self.install_id(),
        }
