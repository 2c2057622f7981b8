"""The agent's state directory: identity, open batch, outbox, approvals, history, schedule and counters.

Layout (all JSON unless noted; every write is atomic: temp file, fsync, rename, fsync of the directory)::

    state_dir/                  mode 0700
      agent.lock                flock held for the length of one operation (holds the pid)
      daemon.lock               flock held by `telemetry-agent run` for its whole life
      secret                    64 hex characters, mode 0600: the install secret (the id derives from it)
      consent.json              the mode set by `telemetry-agent consent`, if any
      open.json                 the open batch: its batch id and snapshots so far
      cpu.json                  the previous CPU times sample (for usage over the interval)
      outbox/NNNNNNNNNN-ID.json sealed batches, the exact bytes to send, oldest first
      rejected/ID.json          batches the collector refused for good, plus ID.error.json
      sent/ID.json              bytes of delivered batches still referenced by the history
      quarantine/               outbox files that failed to parse
      approvals.json            batch ids approved in review mode
      history.json              the last `max_history_entries` delivery attempts
      schedule.json             next snapshot, seal and send times
      endpoint.json             the collector endpoint that last answered: where requests start
      counters.json             what was dropped, by reason
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from schema import SchemaError, new_secret, parse_batch

from .errors import StateError, StateLockedError

__all__ = ["EndpointChoice", "OutboxEntry", "StateDir"]

_OUTBOX_NAME: Final = re.compile(r"(?P<seq>[0-9]{10})-(?P<id>[0-9a-f-]{36})\.json")
_SECRET: Final = re.compile(r"[0-9a-f]{64}")
_MAX_KEYS_PER_REASON: Final = 32  # bounds counters.json however many odd keys a provider invents


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


def _lock_fd(f: IO[bytes]) -> bool:
    """Try to take an exclusive lock without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class _FileLock:
    """An inter-process lock on one file, re-entrant within this process."""

    def __init__(self, path: Path, root: Path) -> None:
        self._path = path
        self._root = root
        self._file: IO[bytes] | None = None
        self._depth = 0
        self._mutex = threading.RLock()

    def acquire(self, wait_s: float) -> None:
        self._mutex.acquire()
        if self._depth:
            self._depth += 1
            return
        try:
            f = self._path.open("a+b")
            deadline = time.monotonic() + wait_s
            while not _lock_fd(f):
                if time.monotonic() >= deadline:
                    f.seek(0)
                    pid = f.read(16).decode("ascii", "replace").strip() or "?"
                    f.close()
                    raise StateLockedError(f"state dir {self._root} is in use by pid {pid}")
                time.sleep(0.05)
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()).encode())
            f.flush()
        except BaseException:
            self._mutex.release()
            raise
        self._file = f
        self._depth = 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            # Closing the file drops the lock (flock and msvcrt alike).
            self._file.close()
            self._file = None
        self._mutex.release()


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new bytes, even after a crash."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class StateDir:
    """Typed access to the state directory; callers hold :meth:`lock` around each operation."""

    def __init__(self, root: Path, *, lock_wait_s: float = 10.0) -> None:
        self.root = root
        self._lock_wait_s = lock_wait_s
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("outbox", "rejected", "sent", "quarantine"):
                (root / sub).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state dir {root}: cannot create it ({exc.strerror})") from None
        self._lock = _FileLock(root / "agent.lock", root)
        self._daemon = _FileLock(root / "daemon.lock", root)

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
        self._daemon.acquire(0.0)
        try:
            yield
        finally:
            self._daemon.release()

    # -- JSON files ------------------------------------------------------------------------------

    def read(self, name: str, default: Any) -> Any:
        """The JSON content of ``name``, or ``default`` when absent; :class:`StateError` when corrupt."""
        path = self.root / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return default
        except OSError as exc:
            raise StateError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StateError(f"{path}: corrupt state file (not JSON); move it aside to reset it") from None
        if type(value) is not type(default):
            raise StateError(f"{path}: corrupt state file (unexpected content); move it aside to reset it")
        return value

    def write(self, name: str, value: Any) -> None:
        """Atomically replace ``name`` with ``value`` as JSON."""
        atomic_write(self.root / name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))

    # -- identity --------------------------------------------------------------------------------

    def secret(self) -> str:
        """The install secret, created (mode 0600) on first use."""
        path = self.root / "secret"
        try:
            text = path.read_text("ascii").strip()
        except FileNotFoundError:
            return self.new_secret()
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"{path}: cannot read the install secret ({exc})") from None
        if _SECRET.fullmatch(text) is None:
            raise StateError(f"{path}: corrupt install secret (expected 64 hex characters)")
        return text

    def new_secret(self) -> str:
        """Replace the install secret with a fresh one (a new install id follows from it)."""
        secret = new_secret()
        atomic_write(self.root / "secret", secret.encode() + b"\n", mode=0o600)
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
        """Sealed batches, oldest first; a corrupt file is moved to ``quarantine/`` and counted."""
        entries: list[OutboxEntry] = []
        for path in sorted((self.root / "outbox").iterdir()):
            if path.name.startswith("."):
                continue
            match = _OUTBOX_NAME.fullmatch(path.name)
            try:
                data = path.read_bytes()
                if match is None or parse_batch(data).batch_id != match["id"]:
                    raise SchemaError("batch_id", "bad_id", "file name and batch disagree")
            except (OSError, SchemaError):
                self.quarantine(path)
                continue
            entries.append(OutboxEntry(match["id"], path, data))
        return entries

    def quarantine(self, path: Path) -> None:
        """Move a corrupt file out of the way, keep it for inspection, and count it."""
        os.replace(path, self.root / "quarantine" / f"{int(time.time())}-{path.name}")
        self.count("quarantined")

    def add_to_outbox(self, batch_id: str, data: bytes, *, max_batches: int) -> list[str]:
        """Store a sealed batch; drops the oldest beyond ``max_batches`` and returns their ids."""
        existing = self.outbox()
        seq = 1 + max((int(e.path.name[:10]) for e in existing), default=0)
        atomic_write(self.root / "outbox" / f"{seq:010d}-{batch_id}.json", data)
        dropped: list[str] = []
        for entry in existing[: max(0, len(existing) + 1 - max_batches)]:
            entry.path.unlink()
            dropped.append(entry.batch_id)
        if dropped:
            self.count("dropped_batches", len(dropped))
            self.forget_approvals(dropped)
        return dropped

    def mark_sent(self, entry: OutboxEntry) -> None:
        """Move a delivered batch's bytes to ``sent/`` (kept while the history refers to it)."""
        os.replace(entry.path, self.root / "sent" / f"{entry.batch_id}.json")
        _fsync_dir(self.root / "outbox")
        self.forget_approvals([entry.batch_id])

    def mark_rejected(self, entry: OutboxEntry, error: dict[str, Any]) -> None:
        """Move a refused batch to ``rejected/`` with the collector's error, for the admin to see."""
        self.write(f"rejected/{entry.batch_id}.error.json", error)
        os.replace(entry.path, self.root / "rejected" / f"{entry.batch_id}.json")
        _fsync_dir(self.root / "outbox")
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
            if path.exists():
                return path.read_bytes()
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
                path.unlink()

    def reset(self) -> None:
        """Forget everything but the lock files: used by `forget` before a new secret is made."""
        for sub in ("outbox", "rejected", "sent"):
            for path in (self.root / sub).iterdir():
                path.unlink()
        for name in ("open.json", "approvals.json", "history.json", "cpu.json", "counters.json"):
            (self.root / name).unlink(missing_ok=True)
