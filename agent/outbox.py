"""The outbox part of the state directory: sealed batches waiting, refused ones, and the bytes of sent ones.

Split from :mod:`agent.state`: :class:`Outbox` is a base of :class:`~agent.state.StateDir` and works on its root,
its catalogue and its atomic writes. File names (``outbox/NNNNNNNNNN-ID.json``, ``rejected/ID.json`` and
``ID.error.json``, ``sent/ID.json``, ``quarantine/``) are known here and nowhere else.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from schema import Catalogue, SchemaError, parse_batch

from .errors import StateIOError
from .files import NotRegularFileError, fsync_dir, read_regular, state_errors
from .records import Rejection

__all__ = ["Outbox", "OutboxEntry"]

_OUTBOX_NAME: Final = re.compile(r"(?P<seq>[0-9]{10})-(?P<id>[0-9a-f-]{36})\.json")
_BATCH_ID: Final = re.compile(r"[0-9a-f-]{36}")
log = logging.getLogger("agent")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One sealed batch waiting in the outbox."""

    batch_id: str
    path: Path
    data: bytes


class Outbox(abc.ABC):
    """Sealed batches, oldest first, and where they go once they leave the outbox."""

    root: Path
    _catalogue: Catalogue

    @abc.abstractmethod
    def _read(self, path: Path, default: Any) -> Any: ...

    @abc.abstractmethod
    def _write_json(self, path: Path, value: Any) -> None: ...

    @abc.abstractmethod
    def _write(self, path: Path, data: bytes) -> None: ...

    @abc.abstractmethod
    def _remove(self, path: Path) -> None: ...

    @abc.abstractmethod
    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a plain counter."""

    @abc.abstractmethod
    def forget_approvals(self, batch_ids: list[str]) -> None:
        """Drop approvals of batches that left the outbox."""

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
            self._remove(entry.path)
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

    def mark_rejected(self, entry: OutboxEntry, rejection: Rejection) -> None:
        """Move a refused batch to ``rejected/`` with the collector's error, for the admin to see."""
        self._write_json(self.root / "rejected" / f"{entry.batch_id}.error.json", rejection.to_json())
        self._move(entry, "rejected")
        self.forget_approvals([entry.batch_id])

    def rejected(self) -> list[Rejection]:
        """Refused batches and their errors."""
        return [
            Rejection.from_json(path.name.removesuffix(".error.json"), self._read(path, {}))
            for path in sorted((self.root / "rejected").glob("*.error.json"))
        ]

    def stored_bytes(self, batch_id: str) -> bytes | None:
        """The bytes of a batch wherever it is kept (outbox, sent or rejected)."""
        if not _BATCH_ID.fullmatch(batch_id):
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

    def _prune_sent(self, referenced: set[str]) -> None:
        """Delete the kept bytes of sent batches no history entry refers to any more."""
        for path in (self.root / "sent").glob("*.json"):
            if path.stem not in referenced:
                self._remove(path)

    def _clear_batches(self) -> None:
        """Delete every batch the state dir holds: waiting, refused and sent (for `forget`)."""
        for sub in ("outbox", "rejected", "sent"):
            for path in (self.root / sub).iterdir():
                self._remove(path)
