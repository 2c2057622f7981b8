"""The agent's state directory: identity, open batch, outbox, approvals, history, schedule and counters.

Every file access goes through :mod:`agent.files`: no link inside the state dir is followed, every file is
created with ``O_EXCL | O_NOFOLLOW``, and OS errors become StateErrors naming the path.

Layout (all JSON unless noted; every write is atomic: temp file, fsync, rename, fsync of the directory)::

    state_dir/                  mode 0700, the running user's (checked: see agent.files)
      agent.lock                flock held for the length of one operation (holds the pid)
      daemon.lock               flock held by `telemetry-agent run` for its whole life
      secret                    64 hex characters, mode 0600: the install secret (the id derives from it)
      consent.json              the mode set by `telemetry-agent consent`, if any
      metrics.json              the catalogue version consent was given for, and metrics approved since
      policy.json               the collector's policy (GET /v1/policy, or `policy import`): what it accepts
      open.json                 the open batch: its batch id and snapshots so far
      cpu.json                  the previous CPU times sample (for usage over the interval)
      outbox/NNNNNNNNNN-ID.json sealed batches, the exact bytes to send, oldest first
      rejected/ID.json          batches the collector refused for good, plus ID.error.json
      sent/ID.json              bytes of delivered or exported batches still referenced by the history
      quarantine/               outbox files that failed to parse
      approvals.json            batch ids approved in review mode
      history.json              the last `max_history_entries` delivery attempts
      schedule.json             next snapshot, seal and send times
      endpoint.json             the collector endpoint that last answered: where requests start
      counters.json             what was dropped, by reason
      provider.json             the usage provider's last success and last error (local only, never sent)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from schema import CATALOGUE, Catalogue, new_secret

from .errors import StateError
from .files import FileLock, atomic_write, lock_file, make_private_dir, open_lock, read_regular, state_errors
from .outbox import Outbox, OutboxEntry
from .records import (
    ConsentRecord,
    ConsentScope,
    CpuSample,
    EndpointChoice,
    HistoryEntry,
    OpenBatch,
    ProviderRecord,
    Schedule,
)
from .remote_policy import CollectorPolicy

__all__ = ["EndpointChoice", "OutboxEntry", "StateDir"]

_SECRET: Final = re.compile(r"[0-9a-f]{64}")
_MAX_KEYS_PER_REASON: Final = 32  # bounds counters.json however many odd keys a provider invents
_SUBDIRS: Final = ("outbox", "rejected", "sent", "quarantine")
# A second daemon waits this long for the daemon lock before it gives up: long enough that a `status`
# probing the lock at that very moment (it holds it for microseconds) does not stop a starting daemon.
_DAEMON_LOCK_WAIT_S: Final = 2.0
# What `forget` deletes besides every batch (consent, its scope, the policy, schedule and endpoint choice stay).
_RESET: Final = ("open.json", "approvals.json", "history.json", "cpu.json", "counters.json", "provider.json")


class StateDir(Outbox):
    """Typed access to the state directory, the one place that knows its file names; callers hold :meth:`lock`
    around each operation."""

    def __init__(self, root: Path, *, lock_wait_s: float = 10.0, catalogue: Catalogue = CATALOGUE) -> None:
        self.root = root
        self._catalogue = catalogue  # what sealed batches were built by: an outbox file it refuses is corrupt
        self._lock_wait_s = lock_wait_s
        # Refuses (StateAccessError) a dir of another user or one others may write, before anything is read.
        make_private_dir(root, label="state dir ", follow=True, parents=True)
        for sub in _SUBDIRS:
            make_private_dir(root / sub)
        self._lock = FileLock(root / "agent.lock", root)
        self._daemon = FileLock(root / "daemon.lock", root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the operation lock (waits up to ``lock_wait_s``, then :class:`StateLockedError`)."""
        self._lock.acquire(self._lock_wait_s)
        try:
            yield
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def daemon_lock(self) -> Iterator[None]:
        """Hold the daemon lock: only one `run` (or embedded agent) per state directory."""
        self._daemon.acquire(_DAEMON_LOCK_WAIT_S)
        try:
            yield
        finally:
            self._daemon.release()

    def daemon_pid(self) -> int | None:
        """The pid of the daemon (`run` or an embedded agent) holding this state dir, 0 when one holds it but
        its pid is unknown, None when none runs. Probes the lock without waiting."""
        path = self.root / "daemon.lock"
        with state_errors(path, "open the lock file", root=self.root):
            try:
                fd, _ = open_lock(path)
            except OSError as exc:
                if exc.errno == errno.EROFS:
                    return None  # a read-only state dir without the lock file: no daemon ever ran here
                raise
            try:
                if lock_file(fd):
                    return None  # closing the file below drops the lock again
                os.lseek(fd, 0, os.SEEK_SET)
                text = os.read(fd, 16).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
        return int(text) if text.isdigit() else 0

    # -- JSON files ------------------------------------------------------------------------------

    def _read(self, path: Path, default: Any) -> Any:
        """The JSON content of ``path``, or ``default`` when absent; :class:`StateError` when corrupt."""
        with state_errors(path, "read", root=self.root):
            try:
                data = read_regular(path)
            except FileNotFoundError:
                return default
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StateError(f"{path}: corrupt state file (not JSON); move it aside to reset it") from None
        if type(value) is not type(default):
            raise StateError(f"{path}: corrupt state file (unexpected content); move it aside to reset it")
        return value

    def _write_json(self, path: Path, value: Any) -> None:
        """Atomically replace ``path`` with ``value`` as JSON."""
        self._write(path, orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))

    def _write(self, path: Path, data: bytes) -> None:
        with state_errors(path, "write", root=self.root):
            atomic_write(path, data)

    def _remove(self, path: Path) -> None:
        """Delete ``path`` if it exists; never follows a link."""
        with state_errors(path, "delete", root=self.root):
            path.unlink(missing_ok=True)

    # -- identity --------------------------------------------------------------------------------

    def secret(self) -> str:
        """The install secret, created (mode 0600) on first use."""
        path = self.root / "secret"
        with state_errors(path, "read the install secret", root=self.root):
            try:
                text = read_regular(path, limit=4096).decode("ascii", "replace").strip()
            except FileNotFoundError:
                return self.new_secret()
        if _SECRET.fullmatch(text) is None:
            raise StateError(f"{path}: corrupt install secret (expected 64 hex characters)")
        return text

    def new_secret(self) -> str:
        """Replace the install secret with a fresh one (a new install id follows from it)."""
        secret = new_secret()
        self._write(self.root / "secret", secret.encode() + b"\n")
        return secret

    # -- consent, its catalogue version, the collector's policy -------------------------------------

    def consent(self) -> ConsentRecord | None:
        """The mode the admin set with `telemetry-agent consent MODE`, if any (``consent.json``)."""
        return ConsentRecord.from_json(self._read(self.root / "consent.json", {}))

    def set_consent(self, record: ConsentRecord) -> None:
        """Store the admin's consent choice."""
        self._write_json(self.root / "consent.json", record.to_json())

    def reset_consent(self) -> None:
        """Forget the admin's consent choice: the config's mode applies again."""
        self._remove(self.root / "consent.json")

    def consent_scope(self) -> ConsentScope:
        """The catalogue version consent was given for and the metrics approved since (``metrics.json``)."""
        path = self.root / "metrics.json"
        return ConsentScope.from_json(self._read(path, {}), str(path))

    def set_consent_scope(self, scope: ConsentScope) -> None:
        """Store the consented catalogue version and the approvals."""
        self._write_json(self.root / "metrics.json", scope.to_json())

    def collector_policy(self) -> CollectorPolicy | None:
        """The collector's policy last fetched or imported (``policy.json``); None when there is none or it is
        unreadable (a cache only: the next fetch or import rewrites it)."""
        try:
            saved = self._read(self.root / "policy.json", {})
        except StateError:
            return None
        return CollectorPolicy.from_state(saved)

    def set_collector_policy(self, policy: CollectorPolicy) -> None:
        """Keep the collector's policy."""
        self._write_json(self.root / "policy.json", policy.to_state())

    # -- the open batch and what snapshots need ----------------------------------------------------

    def open_batch(self) -> OpenBatch | None:
        """The batch snapshots go into until it is sealed, or None when there is none yet."""
        path = self.root / "open.json"
        return OpenBatch.from_json(self._read(path, {}), str(path))

    def set_open_batch(self, batch: OpenBatch) -> None:
        """Store the open batch."""
        self._write_json(self.root / "open.json", batch.to_json())

    def clear_open_batch(self) -> None:
        """Forget the open batch (it was sealed into the outbox)."""
        self._remove(self.root / "open.json")

    def cpu_sample(self) -> CpuSample | None:
        """The previous CPU times sample, if one is stored and readable."""
        return CpuSample.from_json(self._read(self.root / "cpu.json", {}))

    def set_cpu_sample(self, sample: CpuSample) -> None:
        """Store the CPU times sample the next snapshot averages against."""
        self._write_json(self.root / "cpu.json", sample.to_json())

    def provider_record(self) -> ProviderRecord:
        """The usage provider's last outcomes; empty when none is stored or it is unreadable (only a hint for
        `status`, which the next snapshot rewrites)."""
        try:
            return ProviderRecord.from_json(self._read(self.root / "provider.json", {}))
        except StateError:
            return ProviderRecord()

    def set_provider_record(self, record: ProviderRecord) -> None:
        """Store the usage provider's last outcomes."""
        self._write_json(self.root / "provider.json", record.to_json())

    def schedule(self) -> Schedule:
        """When the daemon next snapshots, seals and sends (nothing scheduled when none is stored)."""
        return Schedule.from_json(self._read(self.root / "schedule.json", {}))

    def set_schedule(self, schedule: Schedule) -> None:
        """Store the daemon's schedule (it survives restarts)."""
        self._write_json(self.root / "schedule.json", schedule.to_json())

    # -- endpoint choice ---------------------------------------------------------------------------

    def endpoint_choice(self) -> EndpointChoice | None:
        """The stored endpoint choice; None when there is none or it is unreadable.

        Unlike other state, an unreadable choice is not an error: it is only a hint that saves one
        failover, and the next answer from a collector rewrites it.
        """
        try:
            saved = self._read(self.root / "endpoint.json", {})
            return EndpointChoice(key=str(saved["key"]), since=str(saved["since"])) if saved else None
        except (StateError, KeyError):
            return None

    def choose_endpoint(self, choice: EndpointChoice) -> None:
        """Store the endpoint requests start at (atomically, like all state)."""
        self._write_json(self.root / "endpoint.json", {"key": choice.key, "since": choice.since})

    # -- counters --------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """What was dropped or skipped, by reason (``counters.json``, as ``status --json`` shows it)."""
        return dict(self._read(self.root / "counters.json", {}))

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a plain counter."""
        counters = self.counters()
        counters[name] = int(counters.get(name, 0)) + n
        self._write_json(self.root / "counters.json", counters)

    def count_drops(self, dropped: list[tuple[str, str]]) -> None:
        """Add dropped readings to the per-reason counters (with per-key counts, bounded)."""
        if not dropped:
            return
        counters = self.counters()
        by_reason = counters.setdefault("dropped_keys", {})
        for reason, key in dropped:
            slot = by_reason.setdefault(reason, {"total": 0, "keys": {}})
            slot["total"] += 1
            keys = slot["keys"]
            if key not in keys and len(keys) >= _MAX_KEYS_PER_REASON:
                key = "<other>"
            keys[key] = keys.get(key, 0) + 1
        self._write_json(self.root / "counters.json", counters)

    # -- approvals and history ---------------------------------------------------------------------

    def approvals(self) -> set[str]:
        """Batch ids approved for sending in review mode."""
        return set(self._read(self.root / "approvals.json", []))

    def approve(self, batch_ids: list[str]) -> None:
        """Approve batches for sending."""
        self._write_json(self.root / "approvals.json", sorted(self.approvals() | set(batch_ids)))

    def forget_approvals(self, batch_ids: list[str]) -> None:
        """Drop approvals of batches that left the outbox."""
        current = self.approvals()
        if current & set(batch_ids):
            self._write_json(self.root / "approvals.json", sorted(current - set(batch_ids)))

    def history(self) -> list[dict[str, Any]]:
        """The history as stored, oldest first: the JSON ``history --json`` prints (:meth:`history_entries`
        reads it typed)."""
        return list(self._read(self.root / "history.json", []))

    def history_entries(self) -> list[HistoryEntry]:
        """Delivery attempts and exports, oldest first."""
        path = str(self.root / "history.json")
        return [HistoryEntry.from_json(entry, path) for entry in self.history()]

    def record(self, entry: HistoryEntry, *, max_entries: int) -> None:
        """Append one entry; keep the last ``max_entries`` and the sent bytes they refer to."""
        history = [*self.history(), entry.to_json()][-max_entries:]
        self._write_json(self.root / "history.json", history)
        self._prune_sent({str(h.get("batch_id")) for h in history})

    def reset(self) -> None:
        """Forget everything but the lock files: used by `forget` before a new secret is made."""
        self._clear_batches()
        for name in _RESET:
            self._remove(self.root / name)
