"""The agent's operations on one state directory: collect, seal, preview, approve, send, export, forget.

The CLI, the daemon loop and the embedded :class:`~agent.Agent` all go through :class:`Engine`, so the
rules (the policy gate, consent, exact bytes) live in one place. Callers hold ``engine.state.lock()``
around each operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from schema import (
    MAX_SNAPSHOTS,
    Batch,
    Product,
    Snapshot,
    encode_batch,
    format_hour,
    install_id_from_secret,
    parse_batch,
)

from ._version import __version__
from .clock import Clock
from .config import CONSENT_MODES, AgentConfig, Endpoint
from .errors import AgentError, ConfigError, StateError, StateIOError
from .files import atomic_write
from .probes import HostAccess, default_host, provider_from_config
from .snapshot import CollectResult, SnapshotReader
from .state import EndpointChoice, StateDir
from .transport import Attempt, Transport, starting_endpoint

__all__ = ["CollectResult", "Engine", "SendReport"]

log = logging.getLogger("agent")
_FORCED: Final = "DO_NOT_TRACK / TELEMETRY_DISABLED"


@dataclass(slots=True, kw_only=True)
class SendReport:
    """Per batch: ``delivered``, ``duplicate``, ``rejected`` or ``failed``; ``skipped`` says why nothing went."""

    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing failed or was rejected."""
        return all(r["outcome"] in ("delivered", "duplicate") for r in self.results)


class Engine:
    """One agent's operations; OS access, clock, sleep and randomness are injected for tests."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        host: HostAccess | None = None,
        usage: Callable[[], Mapping[str, object]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        lock_wait_s: float = 10.0,
    ) -> None:
        self.config = config
        self.clock = clock if clock is not None else Clock.from_env()
        self.state = StateDir(config.state_dir, lock_wait_s=lock_wait_s)
        self.host = host if host is not None else default_host(self.clock.now)
        self.provider = provider_from_config(config, usage)
        self._reader = SnapshotReader(config, self.state, self.host, self.provider, self.clock)
        self.rng = rng if rng is not None else random.SystemRandom()
        self._sleep = sleep

    # -- identity and consent --------------------------------------------------------------------

    def install_id(self) -> str:
        """This install's public id (derived from the secret, created on first use)."""
        return install_id_from_secret(self.state.secret())

    def consent(self) -> tuple[str, str]:
        """The mode in force and where it comes from (forced off, the consent command, or the config)."""
        if self.config.consent_forced_off:
            return "off", _FORCED
        stored = self.state.read("consent.json", {}).get("mode")
        if stored in CONSENT_MODES:
            return str(stored), "consent command"
        return self.config.consent, "config"

    def set_consent(self, mode: str) -> None:
        """Persist the admin's choice; it wins over the config (but not over DO_NOT_TRACK)."""
        if mode not in CONSENT_MODES:
            raise ConfigError("consent", "must be off, review or auto")
        self.state.write("consent.json", {"mode": mode, "set_at": self._stamp()})

    def _stamp(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- collecting ------------------------------------------------------------------------------

    def prime_cpu(self) -> None:
        """Record a CPU sample now, so the first snapshot can average over its interval."""
        self._reader.prime_cpu()

    def read_metrics(self) -> CollectResult:
        """Read every probe and the usage provider through the policy gate (stores only the CPU sample)."""
        return self._reader.read()

    def _open(self) -> dict[str, Any]:
        opened: dict[str, Any] = self.state.read("open.json", {})
        if not opened.get("batch_id"):
            opened = {"batch_id": str(uuid.uuid4()), "snapshots": []}
        return opened

    def collect(self) -> CollectResult:
        """Take a snapshot now into the open batch (a second one in the same hour replaces the first)."""
        result = self.read_metrics()
        self.state.count_drops(result.dropped)
        opened = self._open()
        snaps: list[dict[str, Any]] = opened["snapshots"]
        if snaps and snaps[-1]["taken_at"] > result.taken_at:
            # The clock went back: a snapshot here would break the strictly increasing order.
            self.state.count("snapshots_skipped_clock")
            result.stored = False
            result.problems.append("clock is behind the last snapshot; snapshot skipped")
            return result
        if snaps and snaps[-1]["taken_at"] == result.taken_at:
            snaps[-1] = {"taken_at": result.taken_at, "metrics": result.metrics}
        else:
            if len(snaps) >= MAX_SNAPSHOTS:
                self.seal()
                opened = self._open()
                snaps = opened["snapshots"]
            snaps.append({"taken_at": result.taken_at, "metrics": result.metrics})
        self.state.write("open.json", opened)
        return result

    # -- sealing and preview -------------------------------------------------------------------

    def _batch(self, opened: dict[str, Any]) -> bytes:
        if self.config.product_name is None or self.config.product_version is None:
            missing = "product.name" if self.config.product_name is None else "product.version"
            raise ConfigError(missing, "required to build a batch")
        snaps = tuple(Snapshot(taken_at=s["taken_at"], metrics=s["metrics"]) for s in opened["snapshots"])
        created_at = max(format_hour(self.clock.now()), snaps[-1].taken_at)
        batch = Batch(
            batch_id=opened["batch_id"],
            install_id=self.install_id(),
            product=Product(name=self.config.product_name, version=self.config.product_version),
            agent_version=__version__,
            created_at=created_at,
            snapshots=snaps,
        )
        data = encode_batch(batch)
        parse_batch(data)  # the collector's own check, before anything is stored or shown
        return data

    def seal(self) -> str | None:
        """Seal the open batch into the outbox; its bytes never change afterwards. None if it is empty."""
        opened = self.state.read("open.json", {})
        if not opened.get("snapshots"):
            return None
        data = self._batch(opened)
        dropped = self.state.add_to_outbox(opened["batch_id"], data, max_batches=self.config.max_outbox_batches)
        for batch_id in dropped:
            log.warning("outbox full: dropped the oldest batch %s", batch_id)
        self.state.remove("open.json")
        return str(opened["batch_id"])

    def preview(self) -> list[dict[str, Any]]:
        """Every sealed batch waiting (exact bytes), then the open batch as it would be sealed now."""
        approved = self.state.approvals()
        items = [
            {"kind": "sealed", "batch_id": e.batch_id, "data": e.data,
             "status": "approved" if e.batch_id in approved else "waiting"}
            for e in self.state.outbox()
        ]  # fmt: skip
        opened = self.state.read("open.json", {})
        if opened.get("snapshots"):
            items.append(
                {"kind": "open", "batch_id": opened["batch_id"], "data": self._batch(opened), "status": "open"}
            )
        return items

    def approve(self, batch_ids: list[str], *, every: bool = False) -> list[str]:
        """Approve sealed batches for sending in review mode; returns the ids approved."""
        waiting = [e.batch_id for e in self.state.outbox()]
        if every:
            batch_ids = waiting
        unknown = [b for b in batch_ids if b not in waiting]
        if unknown:
            raise AgentError(f"batch {unknown[0]} is not waiting in the outbox (see `telemetry-agent preview`)")
        self.state.approve(batch_ids)
        return batch_ids

    # -- sending ---------------------------------------------------------------------------------

    def _record(self, batch_id: str, data: bytes, attempt: Attempt) -> None:
        entry = {
            "at": attempt.at,
            "batch_id": batch_id,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "status": attempt.status,
            "outcome": attempt.outcome,
            "error": attempt.error,
            "wait_s": None if attempt.wait_s is None else round(attempt.wait_s, 3),
            "endpoint": attempt.endpoint,
        }
        self.state.record(entry, max_entries=self.config.max_history_entries)

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
        report = SendReport()
        for entry in entries:
            delivery = await transport.deliver(
                entry.data, entry.batch_id, partial(self._record, entry.batch_id, entry.data)
            )
            last = delivery.attempts[-1]
            outcome = last.outcome if delivery.outcome == "delivered" else delivery.outcome
            report.results.append({"batch_id": entry.batch_id, "outcome": outcome, "status": last.status,
                                   "endpoint": last.endpoint, "attempts": len(delivery.attempts),
                                   "error": delivery.error})  # fmt: skip
            if delivery.outcome == "delivered":
                self.state.mark_sent(entry)
            elif delivery.outcome == "rejected":
                self.state.mark_rejected(entry, {"at": last.at, "status": last.status, **(delivery.error or {})})
            else:
                break  # the collector is unreachable or failing: later batches wait for the next send
        return report

    def _transport(self) -> Transport:
        """A transport that starts at the stored endpoint choice and stores a new one when it changes."""
        choice = self.state.endpoint_choice()
        return Transport(self.config, sleep=self._sleep, rng=self.rng, now=self.clock.now,
                         current=None if choice is None else choice.key, on_answer=self._choose_endpoint)  # fmt: skip

    def _choose_endpoint(self, endpoint: Endpoint) -> None:
        # Best effort: the choice only saves one failover after a restart, so failing to store it
        # (disk full, say) must not stop a delivery that is going well.
        try:
            self.state.choose_endpoint(EndpointChoice(key=endpoint.key, since=self._stamp()))
        except (OSError, StateError) as exc:
            log.warning("cannot store the current endpoint %s: %s", endpoint.label, exc)

    # -- admin views -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Mode, identity, outbox, last attempt, schedule and counters (no metric values).

        On a full or read-only state dir it shows what it can read: without a secret yet, no install id.
        """
        mode, source = self.consent()
        try:
            install_id: str | None = self.install_id()
        except StateIOError as exc:
            install_id, problems = None, [f"no install id yet: {exc}"]
        else:
            problems = []
        outbox = self.state.outbox()
        approved = self.state.approvals()
        history = self.state.history()
        opened = self.state.read("open.json", {})
        endpoints = self.config.endpoints
        choice = self.state.endpoint_choice()
        current = starting_endpoint(endpoints, None if choice is None else choice.key)
        return {
            "consent": mode,
            "consent_source": source,
            "install_id": install_id,
            "problems": problems,
            "endpoint": endpoints[current].url if endpoints else None,
            "endpoints": [{"url": e.url, "label": e.label, "current": n == current} for n, e in enumerate(endpoints)],
            "state_dir": str(self.state.root),
            "outbox": {
                "batches": len(outbox),
                "approved": sum(e.batch_id in approved for e in outbox),
                "max_batches": self.config.max_outbox_batches,
            },
            "open_batch": {"batch_id": opened.get("batch_id"), "snapshots": len(opened.get("snapshots", []))},
            "rejected": [{"batch_id": b, **err} for b, err in self.state.rejected()],
            "last_attempt": history[-1] if history else None,
            "schedule": self.state.read("schedule.json", {}),
            "counters": self.state.read("counters.json", {}),
        }

    def export(self, target: Path) -> list[Path]:
        """Write each sealed batch as ``<batch_id>.json`` (exact bytes) for an air-gapped upload."""
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"{target}: cannot create ({exc.strerror})") from None
        written = []
        for entry in self.state.outbox():
            path = target / f"{entry.batch_id}.json"
            try:
                atomic_write(path, entry.data, mode=0o644)
            except OSError as exc:  # the admin's target (a USB stick, say) is full or read-only: exit 1
                raise StateIOError(f"{path}: cannot write ({exc.strerror or exc})") from None
            self._record(entry.batch_id, entry.data, Attempt(at=self._stamp(), status=None, outcome="exported"))
            written.append(path)
        return written

    async def remote(self) -> dict[str, Any]:
        """What the collector holds about this install (proven by the secret)."""
        return await self._transport().install_request("GET", self.install_id(), self.state.secret())

    async def forget(self) -> dict[str, Any]:
        """Ask the collector to erase this install; on success start over with a new secret and id."""
        answer = await self._transport().install_request("DELETE", self.install_id(), self.state.secret())
        self.state.reset()
        self.state.new_secret()
        return {"deleted": answer.get("deleted"), "old_install_id": answer.get("install_id"),
                "new_install_id": self.install_id()}  # fmt: skip
