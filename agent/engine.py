"""The agent's operations on one state directory: collect, seal, preview, approve, send, export, forget.

The CLI, the daemon loop and the embedded :class:`~agent.Agent` all go through :class:`Engine`, so the
rules (the policy gate, consent and its catalogue version, the collector's policy, exact bytes) live in one
place. Callers hold ``engine.state.lock()`` around each operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from schema import (
    MAX_SNAPSHOTS,
    Batch,
    Product,
    Snapshot,
    encode_batch,
    format_hour,
    format_instant,
    install_id_from_secret,
    parse_batch,
)

from ._version import __version__
from .clock import Clock
from .config import AgentConfig
from .errors import AgentError, ConfigError
from .metrics import MetricsView, Scope
from .outbound import Outbound, SendReport
from .probes import HostAccess, default_host, provider_from_config
from .records import ConsentMode, ConsentRecord, ConsentSource, OpenBatch, is_consent_mode
from .snapshot import CollectResult, SnapshotReader
from .state import StateDir
from .status import Status, read_status

__all__ = ["CollectResult", "Engine", "Preview", "PreviewItem", "SendReport"]

log = logging.getLogger("agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewItem:
    """One batch `preview` shows: a sealed one waiting in the outbox, or the open one as it would be sealed now."""

    kind: Literal["sealed", "open"]
    batch_id: str
    data: bytes
    """The exact bytes (of a sealed batch: what is sent)."""
    status: Literal["approved", "waiting", "open"]
    """``approved`` or ``waiting`` (for approval, in review mode) for a sealed batch; ``open`` for the open one."""

    def to_json(self) -> dict[str, Any]:
        """The ``preview --json`` form: the bytes as text, their length and sha256."""
        return {
            "kind": self.kind,
            "batch_id": self.batch_id,
            "status": self.status,
            "bytes": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "text": self.data.decode("utf-8"),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """What `preview` shows: every batch waiting, the consent mode they wait under, and the metrics' states."""

    consent: ConsentMode
    items: tuple[PreviewItem, ...]
    metrics: MetricsView

    def to_json(self, *, explain: bool) -> dict[str, Any]:
        """The ``preview --json`` form (with ``explain``, each metric's state too)."""
        doc: dict[str, Any] = {"consent": self.consent, "batches": [i.to_json() for i in self.items]}
        if explain:
            doc["metrics"] = self.metrics.to_json()
        return doc


class Engine(Outbound):
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
        self.catalogue = config.catalogue_in_force
        """The agent's catalogue (``catalogue`` setting): what its batches are built against."""
        self.state = StateDir(config.state_dir, lock_wait_s=lock_wait_s, catalogue=self.catalogue)
        self.scope = Scope(self.catalogue, frozenset(config.disabled_metrics), self.state, self._stamp)
        self.host = host if host is not None else default_host(self.clock.now)
        self.provider = provider_from_config(config, usage)
        self._reader = SnapshotReader(config, self.state, self.host, self.provider, self.clock)
        self.rng = rng if rng is not None else random.SystemRandom()
        self._sleep = sleep

    # -- identity and consent --------------------------------------------------------------------

    def install_id(self) -> str:
        """This install's public id (derived from the secret, created on first use)."""
        return install_id_from_secret(self.state.secret())

    def consent(self) -> tuple[ConsentMode, ConsentSource]:
        """The mode in force and where it comes from (forced off, the consent command, or the config)."""
        if self.config.consent_forced_off:
            return "off", "DO_NOT_TRACK / TELEMETRY_DISABLED"
        stored = self.state.consent()
        if stored is not None:
            return stored.mode, "consent command"
        mode = self.config.consent
        assert is_consent_mode(mode)  # the config checked it
        return mode, "config"

    def set_consent(self, mode: str) -> None:
        """Persist the admin's choice; it wins over the config (but not over DO_NOT_TRACK)."""
        if not is_consent_mode(mode):
            raise ConfigError("consent", "must be off, review or auto")
        self.state.set_consent(ConsentRecord(mode=mode, set_at=self._stamp()))
        if mode != "off":
            self.scope.record_consent()  # consent is given for this catalogue version: later metrics wait

    def reset_consent(self) -> None:
        """Forget the admin's stored choice: the config's (or ``TELEMETRY_CONSENT``'s) mode applies again."""
        self.state.reset_consent()

    def _stamp(self) -> str:
        return format_instant(self.clock.now())

    # -- collecting ------------------------------------------------------------------------------

    def prime_cpu(self) -> None:
        """Record a CPU sample now, so the first snapshot can average over its interval."""
        self._reader.prime_cpu()

    def read_metrics(self) -> CollectResult:
        """Read every probe and the usage provider through the policy gate (stores only the CPU sample)."""
        return self._reader.read(self.scope.view().blocked)

    def metrics(self) -> MetricsView:
        """Every catalogue metric and its state: collected, disabled, awaiting approval, not accepted, retired."""
        return self.scope.view()

    def approve_metrics(self, keys: list[str], *, every: bool = False) -> list[str]:
        """Approve metrics added after the consented catalogue version (all waiting ones with ``every``)."""
        return self.scope.approve(keys, every=every)

    def _open(self) -> OpenBatch:
        opened = self.state.open_batch()
        return opened if opened is not None else OpenBatch(batch_id=str(uuid.uuid4()))

    def require_product(self, command: str) -> None:
        """Raise :class:`ConfigError` when ``[product]`` is incomplete: no batch could ever hold a snapshot then."""
        product = (("product.name", self.config.product_name), ("product.version", self.config.product_version))
        for key, value in product:
            if value is None:
                raise ConfigError(key, f"not set; {command} needs the product's name and version ([product] table)")

    def collect(self) -> CollectResult:
        """Take a snapshot now into the open batch.

        One snapshot per hour is kept: a second one in the same hour replaces the first, but keeps the
        earlier values of metrics this reading lacks (a provider that failed this time, say), unless they
        are disabled now. ``result.replaced`` and ``result.kept`` say so.
        """
        self.require_product("collect")
        if self.consent()[0] != "off":
            self.scope.ensure_recorded()  # consent from the config: bound to the version in force now
        blocked = self.scope.view().blocked
        result = self._reader.read(blocked)
        self.state.count_drops(result.dropped)
        opened = self._open()
        snaps = list(opened.snapshots)
        if snaps and snaps[-1].taken_at > result.taken_at:
            # The clock went back: a snapshot here would break the strictly increasing order.
            self.state.count("snapshots_skipped_clock")
            result.stored = False
            result.problems.append("clock is behind the last snapshot; snapshot skipped")
            return result
        if snaps and snaps[-1].taken_at == result.taken_at:
            earlier = snaps[-1].metrics
            # An earlier value of the same hour is still true of that hour; a failing provider must not
            # overwrite good counts with nothing (unless the metric is not collected any more).
            result.kept = sorted(
                k for k in earlier if k not in result.metrics and k not in blocked and k in self.catalogue.metrics
            )
            result.metrics.update({k: earlier[k] for k in result.kept})
            result.replaced = True
            snaps[-1] = Snapshot(taken_at=result.taken_at, metrics=dict(result.metrics))
        else:
            if len(snaps) >= MAX_SNAPSHOTS:
                self.seal()
                opened = self._open()
                snaps = list(opened.snapshots)
            snaps.append(Snapshot(taken_at=result.taken_at, metrics=dict(result.metrics)))
        self.state.set_open_batch(OpenBatch(batch_id=opened.batch_id, snapshots=tuple(snaps)))
        return result

    # -- sealing and preview -------------------------------------------------------------------

    def _batch(self, opened: OpenBatch) -> tuple[bytes, list[tuple[str, str]]]:
        """The batch the open one seals into now, and the readings left out of it by reason.

        Snapshots taken before a change (the agent upgraded to a catalogue that retired a metric, the admin
        disabled one, the collector's policy turned out narrower) lose what is not collected now.
        """
        if self.config.product_name is None or self.config.product_version is None:
            missing = "product.name" if self.config.product_name is None else "product.version"
            raise ConfigError(missing, "not set; needed to build a batch ([product] table)")
        blocked = self.scope.view().blocked
        dropped: list[tuple[str, str]] = []
        snaps_list = []
        for s in opened.snapshots:
            metrics = {}
            for key, value in s.metrics.items():
                reason = blocked.get(key) or (None if key in self.catalogue.metrics else "not_in_catalogue")
                if reason is None:
                    metrics[key] = value
                else:
                    dropped.append((reason, key))
            snaps_list.append(Snapshot(taken_at=s.taken_at, metrics=metrics))
        snaps = tuple(snaps_list)
        created_at = max(format_hour(self.clock.now()), snaps[-1].taken_at)
        batch = Batch(
            batch_id=opened.batch_id,
            install_id=self.install_id(),
            product=Product(name=self.config.product_name, version=self.config.product_version),
            agent_version=__version__,
            created_at=created_at,
            snapshots=snaps,
            catalogue_version=self.catalogue.version,
        )
        data = encode_batch(batch)
        parse_batch(data, catalogue=self.catalogue)  # the collector's own check, before anything is stored or shown
        return data, dropped

    def seal(self) -> str | None:
        """Seal the open batch into the outbox; its bytes never change afterwards. None if it is empty."""
        opened = self.state.open_batch()
        if opened is None or not opened.snapshots:
            return None
        self._learn_policy_before_seal()
        data, left_out = self._batch(opened)
        self.state.count_drops(left_out)
        dropped = self.state.add_to_outbox(opened.batch_id, data, max_batches=self.config.max_outbox_batches)
        for batch_id in dropped:
            log.warning("outbox full: dropped the oldest batch %s", batch_id)
        self.state.clear_open_batch()
        return opened.batch_id

    def _learn_policy_before_seal(self) -> None:
        # The first batch ever (no policy known yet) would be built by the agent's catalogue alone: learn
        # what the collector accepts first, so the batch sealed now is one it takes. Later seals use the
        # policy refreshed by the last send.
        if self.consent()[0] == "off" or not self.config.endpoints or self.scope.policy() is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            problem = asyncio.run(self.refresh_policy())
        else:  # inside an event loop (an async host): the check at send time covers this batch instead
            problem = "collector policy not fetched before sealing (called inside an event loop)"
        if problem:
            # Not a warning: the collector may well be down at this moment, and the check at send time holds
            # back a batch it would refuse, so nothing is lost either way.
            log.debug("%s; sealing by the agent's own catalogue", problem)

    def preview(self) -> Preview:
        """Every sealed batch waiting (exact bytes), then the open batch as it would be sealed now."""
        approved = self.state.approvals()
        items = [
            PreviewItem(
                kind="sealed",
                batch_id=e.batch_id,
                data=e.data,
                status="approved" if e.batch_id in approved else "waiting",
            )
            for e in self.state.outbox()
        ]
        opened = self.state.open_batch()
        if opened is not None and opened.snapshots:
            items.append(PreviewItem(kind="open", batch_id=opened.batch_id, data=self._batch(opened)[0], status="open"))
        return Preview(consent=self.consent()[0], items=tuple(items), metrics=self.metrics())

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

    # -- admin views -----------------------------------------------------------------------------

    def status(self) -> Status:
        """Mode, identity, outbox, last attempt, what happens next and when, and counters (no metric values)."""
        return read_status(self)
