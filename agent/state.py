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
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from schema import CATALOGUE, Catalogue, SchemaError, new_secret, parse_batch

from .errors import StateError, StateIOError
from .files import (
    FileLock,
    NotRegularFileError,
    atomic_write,
    fsync_dir,
    lock_file,
    make_private_dir,
    open_lock,
    read_regular,
    state_errors,
)

__all__ = ["EndpointChoice", "OutboxEntry", "StateDir"]

_OUTBOX_NAME: Final = re.compile(r"(?P<seq>[0-9]{10})-(?P<id>[0-9a-f-]{36})\.json")
_SECRET: Final = re.compile(r"[0-9a-f]{64}")
_MAX_KEYS_PER_REASON: Final = 32  # bounds counters.json however many odd keys a provider invents
_SUBDIRS: Final = ("outbox", "rejected", "sent", "quarantine")
# A second daemon waits this long for the daemon lock before it gives up: long enough that a `status`
# probing the lock at that very moment (it holds it for microseconds) does not stop a starting daemon.
_DAEMON_LOCK_WAIT_S: Final = 2.0
log = logging.getLogger("agent")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One sealed batch waiting in the outbox."""

    batch_id: str
    path: Path
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointChoice:
    """The collector endpoint that answered last (when ``endpoint`` lists several): requests start there."""

    key: str
    """The endpoint's key (scheme, host, port, path; never user info), see :class:`agent.config.Endpoint`."""
    since: str
    """When it became the current endpoint (UTC, ``YYYY-MM-DDTHH:MM:SSZ``)."""


class StateDir:
    """Typed access to the state directory; callers hold :meth:`lock` around each operation."""

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

    def read(self, name: str, default: Any) -> Any:
        """The JSON content of ``name``, or ``default`` when absent; :class:`StateError` when corrupt."""
        path = self.root / name
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

    def write(self, name: str, value: Any) -> None:
        """Atomically replace ``name`` with ``value`` as JSON."""
        self._write(self.root / name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))

    def _write(self, path: Path, data: bytes) -> None:
        with state_errors(path, "write", root=self.root):
            atomic_write(path, data)

    def remove(self, name: str) -> None:
        """Delete ``name`` (a path relative to the state dir) if it exists; never follows a link."""
        path = self.root / name
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

    # -- endpoint choice ---------------------------------------------------------------------------

    def endpoint_choice(self) -> EndpointChoice | None:
        """The stored endpoint choice; None when there is none or it is unreadable.

        Unlike other state, an unreadable choice is not an error: it is only a hint that saves one
        failover, and the next answer from a collector rewrites it.
        """
        try:
            saved = self.read("endpoint.json", {})
            return EndpointChoice(key=str(saved["key"]), since=str(saved["since"])) if saved else None
        except (StateError, KeyError):
            return None

    def choose_endpoint(self, choice: EndpointChoice) -> None:
        """Store the endpoint requests start at (atomically, like all state)."""
        self.write("endpoint.json", {"key": choice.key, "since": choice.since})

    # -- counters --------------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a plain counter."""
        counters = self.read("counters.json", {})
        counters[name] = int(counters.get(name, 0)) + n
        self.write("counters.json", counters)

    def count_drops(self, dropped: list[tuple[str, str]]) -> None:
        """Add dropped readings to the per-reason counters (with per-key counts, bounded)."""
        if not dropped:
            return
        counters = self.read("counters.json", {})
        by_reason = counters.setdefault("dropped_keys", {})
        for reason, key in dropped:
            slot = by_reason.setdefault(reason, {"total": 0, "keys": {}})
            slot["total"] += 1
            keys = slot["keys"]
            if key not in keys and len(keys) >= _MAX_KEYS_PER_REASON:
                key = "<other>"
            keys[key] = keys.get(key, 0) + 1
        self.write("counters.json", counters)

    # -- outbox ----------------------------------------------------------------------------------

    def outbox(self) -> list[OutboxEntry]:
        """Sealed batches, oldest first; a corrupt file is moved to ``quarantine/`` and counted.

        Corrupt means it was read and is no batch (or a link or special file): a batch this user merely
        cannot read stops with :class:`~agent.errors.StateAccessError` and stays where it is.
        """
        entries: list[OutboxEntry] = []
        outbox = self.root / "outbox"
        with state_errors(outbox, "list", root=self.root):
            paths = sorted(outbox.iterdir())
        for path in paths:
            if path.name.startswith("."):
                continue
            match = _OUTBOX_NAME.fullmatch(path.name)
            with state_errors(path, "read", root=self.root):
                try:
                    data: bytes | None = read_regular(path)
                except FileNotFoundError:
                    continue
                except NotRegularFileError:
                    data = None
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.EMLINK):
                        raise
                    data = None  # a link: never followed, so it is no batch
            try:
                if (
                    data is None
                    or match is None
                    or parse_batch(data, catalogue=self._catalogue).batch_id != match["id"]
                ):
                    raise SchemaError("batch_id", "bad_id", "file name and batch disagree")
            except SchemaError:
                try:
                    self.quarantine(path)
                except StateIOError as exc:  # e.g. a read-only state dir: skip it, so status still works
                    log.warning("corrupt outbox file skipped: %s", exc)
                continue
            assert match is not None
            entries.append(OutboxEntry(match["id"], path, data))
        return entries

    def quarantine(self, path: Path) -> None:
        """Move a corrupt file (or link: the link itself) out of the way, keep it for inspection, and count it."""
        with state_errors(path, "quarantine", root=self.root):
            os.replace(path, self.root / "quarantine" / f"{int(time.time())}-{path.name}")
        self.count("quarantined")

    def add_to_outbox(self, batch_id: str, data: bytes, *, max_batches: int) -> list[str]:
        """Store a sealed batch; drops the oldest beyond ``max_batches`` and returns their ids."""
        existing = self.outbox()
        seq = 1 + max((int(e.path.name[:10]) for e in existing), default=0)
        self._write(self.root / "outbox" / f"{seq:010d}-{batch_id}.json", data)
        dropped: list[str] = []
        for entry in existing[: max(0, len(existing) + 1 - max_batches)]:
            self.remove(f"outbox/{entry.path.name}")
            dropped.append(entry.batch_id)
        if dropped:
            self.count("dropped_batches", len(dropped))
            self.forget_approvals(dropped)
        return dropped

    def mark_sent(self, entry: OutboxEntry) -> None:
        """Move a delivered (or exported: carried over by hand) batch's bytes out of the outbox to ``sent/``,
        where they stay while the history refers to them."""
        self._move(entry, "sent")
        self.forget_approvals([entry.batch_id])

    def _move(self, entry: OutboxEntry, sub: str) -> None:
        with state_errors(entry.path, f"move it to {sub}/", root=self.root):
            os.replace(entry.path, self.root / sub / f"{entry.batch_id}.json")
            fsync_dir(self.root / "outbox")

    def mark_rejected(self, entry: OutboxEntry, error: dict[str, Any]) -> None:
        """Move a refused batch to ``rejected/`` with the collector's error, for the admin to see."""
        self.write(f"rejected/{entry.batch_id}.error.json", error)
        self._move(entry, "rejected")
        self.forget_approvals([entry.batch_id])

    def rejected(self) -> list[tuple[str, dict[str, Any]]]:
        """Refused batches and their errors."""
        out = []
        for path in sorted((self.root / "rejected").glob("*.error.json")):
            out.append((path.name.removesuffix(".error.json"), self.read(f"rejected/{path.name}", {})))
        return out

    def stored_bytes(self, batch_id: str) -> bytes | None:
        """The bytes of a batch wherever it is kept (outbox, sent or rejected)."""
        if not re.fullmatch(r"[0-9a-f-]{36}", batch_id):
            return None
        for entry in self.outbox():
            if entry.batch_id == batch_id:
                return entry.data
        for sub in ("sent", "rejected"):
            path = self.root / sub / f"{batch_id}.json"
            with state_errors(path, "read", root=self.root):
                try:
                    return read_regular(path)
                except FileNotFoundError:
                    continue
        return None

    # -- approvals and history ---------------------------------------------------------------------

    def approvals(self) -> set[str]:
        """Batch ids approved for sending in review mode."""
        return set(self.read("approvals.json", []))

    def approve(self, batch_ids: list[str]) -> None:
        """Approve batches for sending."""
        self.write("approvals.json", sorted(self.approvals() | set(batch_ids)))

    def forget_approvals(self, batch_ids: list[str]) -> None:
        """Drop approvals of batches that left the outbox."""
        current = self.approvals()
        if current & set(batch_ids):
            self.write("approvals.json", sorted(current - set(batch_ids)))

    def history(self) -> list[dict[str, Any]]:
        """Delivery attempts, oldest first."""
        return list(self.read("history.json", []))

    def record(self, attempt: dict[str, Any], *, max_entries: int) -> None:
        """Append one attempt; keep the last ``max_entries`` and the sent bytes they refer to."""
        history = [*self.history(), attempt][-max_entries:]
        self.write("history.json", history)
        referenced = {h.get("batch_id") for h in history}
        for path in (self.root / "sent").glob("*.json"):
            if path.stem not in referenced:
                self.remove(f"sent/{path.name}")

    def reset(self) -> None:
        """Forget everything but the lock files: used by `forget` before a new secret is made."""
        for sub in ("outbox", "rejected", "sent"):
            for path in (self.root / sub).iterdir():
                self.remove(f"{sub}/{path.name}")
        for name in ("open.json", "approvals.json", "history.json", "cpu.json", "counters.json", "provider.json"):
            self.remove(name)
