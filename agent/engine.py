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
from .snapshot import CollectResult, SnapshotReader, stamp
from .state import EndpointChoice, StateDir
from .status import Status, read_status
from .transport import Attempt, Transport

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
        config_file: Path | None = None,
    ) -> None:
        self.config = config
        self.config_file = config_file
        """The config file ``config`` was read from (None: defaults and environment only), for ``status``."""
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

    def reset_consent(self) -> None:
        """Forget the admin's stored choice: the config's (or ``TELEMETRY_CONSENT``'s) mode applies again."""
        self.state.remove("consent.json")

    def _stamp(self) -> str:
        return stamp(self.clock.now())

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

    def require_product(self, command: str) -> None:
        """Raise :class:`ConfigError` when ``[product]`` is incomplete: no batch could ever hold a snapshot then."""
        for key, value in (("product.name", self.config.product_name),
                           ("product.version", self.config.product_version)):  # fmt: skip
            if value is None:
                raise ConfigError(key, f"not set; {command} needs the product's name and version ([product] table)")

    def collect(self) -> CollectResult:
        """Take a snapshot now into the open batch.

        One snapshot per hour is kept: a second one in the same hour replaces the first, but keeps the
        earlier values of metrics this reading lacks (a provider that failed this time, say), unless they
        are disabled now. ``result.replaced`` and ``result.kept`` say so.
        """
        self.require_product("collect")
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
            earlier: dict[str, Any] = snaps[-1]["metrics"]
            disabled = set(self.config.disabled_metrics)
            # An earlier value of the same hour is still true of that hour; a failing provider must not
            # overwrite good counts with nothing.
            result.kept = sorted(k for k in earlier if k not in result.metrics and k not in disabled)
            result.metrics.update({k: earlier[k] for k in result.kept})
            result.replaced = True
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
            raise ConfigError(missing, "not set; needed to build a batch ([product] table)")
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

    def _record(self, batch_id: str, data: bytes, attempt: Attempt, *, exported_to: str | None = None) -> None:
        entry: dict[str, Any] = {
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
        if exported_to is not None:
            entry["exported_to"] = exported_to  # a local path: history is for the admin, never sent
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

    def status(self) -> Status:
        """Mode, identity, outbox, last attempt, what happens next and when, and counters (no metric values)."""
        return read_status(self)

    def export(self, target: Path) -> list[Path]:
        """Write each sealed batch as ``<batch_id>.json`` (exact bytes) for an air-gapped upload.

        Each one written leaves the outbox (history records it as ``exported``), so the next export writes
        only batches sealed since.
        """
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
            # Carried over by hand from now on: out of the outbox (so not exported again, nor sent, nor
            # dropped as the oldest when it fills up), its bytes kept in sent/ while the history names them.
            self.state.mark_sent(entry)
            self._record(entry.batch_id, entry.data, Attempt(at=self._stamp(), status=None, outcome="exported"),
                         exported_to=str(target))  # fmt: skip
            written.append(path)
        return written

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
        return {"deleted": answer.get("deleted"), "old_install_id": answer.get("install_id"),
                "new_install_id": self.install_id()}  # fmt: skip
