"""One group commit: many accepted batches become rows of the lake in ONE transaction, deduplicated by claims.

Runs in the lake store's writer thread on a :class:`Session`. The protocol and why it holds under
races and crashes are in :mod:`.claims`; this module is its code.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import psycopg

from collector.errors import CollectorError, UnavailableError
from collector.storage.base import Receipt, answer
from collector.storage.rows import insert_lines
from schema import Batch

from . import claims, locks
from .connect import CATALOG_NAME, LakeSettings, pg_connect

__all__ = ["Item", "Session", "commit_group", "in_transaction", "transaction"]

T = TypeVar("T")

_OLDER_WAIT_S: Final = 5.0
"""How long a commit waits for a dead collector's last PostgreSQL transaction before answering 503 instead."""


class Session:
    """What one lake thread owns: a DuckDB cursor on the lake and a PostgreSQL session, reconnected after a failure."""

    def __init__(self, db: Any, settings: LakeSettings, *, lock_timeout_s: float) -> None:
        self.duck = db.cursor()
        self.duck.execute(f"USE {CATALOG_NAME}")
        self._settings = settings
        self._lock_timeout_s = lock_timeout_s
        self._pg: psycopg.Connection[Any] | None = None

    def pg(self) -> psycopg.Connection[Any]:
        """The PostgreSQL session, opened on first use and again after it broke."""
        if self._pg is None or self._pg.closed or self._pg.broken:
            self.drop_pg()
            self._pg = pg_connect(self._settings, lock_timeout_s=self._lock_timeout_s)
        return self._pg

    def drop_pg(self) -> None:
        """Forget the PostgreSQL session (after an error: its locks are released when it closes)."""
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None

    def close(self) -> None:
        """Close both connections."""
        self.drop_pg()
        with contextlib.suppress(Exception):
            self.duck.close()


@dataclass(slots=True)
class Item:
    """One validated batch waiting for a group commit."""

    batch: Batch
    sha256: str
    line: bytes
    """Its NDJSON line (see :func:`collector.storage.base.spool_line`)."""
    created: dt.datetime
    """``created_at`` as a naive UTC datetime."""


Outcome = Receipt | CollectorError


def transaction(session: Session, lock: int, job: Callable[[Any], T]) -> T:
    """Run ``job(duck)`` in one lake transaction; COMMIT only if this session still holds ``lock`` (taken by the caller)."""
    duck = session.duck
    duck.execute("BEGIN")
    try:
        result = job(duck)
        locks.holds(session.pg(), lock)
        duck.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            duck.execute("ROLLBACK")
        raise
    return result


def in_transaction(session: Session, lock: int, job: Callable[[Any], T]) -> T:
    """Take ``lock``, then run ``job(duck)`` as :func:`transaction` does."""
    with locks.advisory(session.pg(), lock):
        return transaction(session, lock, job)


def commit_group(session: Session, items: Sequence[Item], *, tmp_dir: Path, window_start: dt.datetime) -> list[Outcome]:
    """Store every new batch of ``items`` in one lake transaction; answer the others from claims or the lake.

    ``window_start`` (naive UTC): batches created before it may have lost their claim to pruning and
    are looked up in the lake. Raises (the whole group is then unanswered: 503) when PostgreSQL or the
    object store fails; a batch whose earlier commit died mid-way may get :class:`UnavailableError`.
    """
    pg = session.pg()
    outcomes: dict[int, Outcome] = {}
    fresh: list[tuple[int, Item]] = []
    stored: list[tuple[str, str, dt.datetime]] = []
    with locks.advisory(pg, locks.WRITE):
        row = pg.execute("SELECT clock_timestamp()").fetchone()
        lock_at = row[0] if row else dt.datetime.now(dt.UTC)
        known = claims.lookup(pg, [item.batch.batch_id for item in items])
        suspects: list[tuple[int, Item, bool]] = []
        for n, item in enumerate(items):
            claim = known.get(item.batch.batch_id)
            if claim is not None and claim.stored:
                outcomes[n] = _answer(item, claim.sha256 == item.sha256)
            elif claim is not None or item.created < window_start:
                suspects.append((n, item, claim is not None))
            else:
                fresh.append((n, item))
        if suspects:
            # A pending claim is an earlier commit that died: let its last PostgreSQL transaction finish first.
            settled = not any(pending for _, _, pending in suspects) or claims.wait_for_older(
                pg, lock_at, timeout_s=_OLDER_WAIT_S
            )
            found = _in_lake(session.duck, [item for _, item, _ in suspects]) if settled else {}
            for n, item, pending in suspects:
                sha = found.get(item.batch.batch_id)
                if not settled and pending:
                    outcomes[n] = UnavailableError("an earlier copy of this batch is still being settled")
                elif sha is None:
                    fresh.append((n, item))
                else:
                    outcomes[n] = _answer(item, sha == item.sha256)
                    stored.append((item.batch.batch_id, sha, item.created))
        if fresh:
            new = [(item.batch.batch_id, item.sha256, item.created) for _, item in fresh]
            claims.put_pending(pg, new)
            try:
                _store(session, [item for _, item in fresh], tmp_dir)
            except BaseException:
                with contextlib.suppress(Exception):
                    claims.delete(pg, [batch_id for batch_id, _, _ in new], pending_only=True)
                raise
            stored.extend(new)
            for n, item in fresh:
                outcomes[n] = Receipt(batch_id=item.batch.batch_id, sha256=item.sha256,
                                      snapshots=len(item.batch.snapshots), duplicate=False)  # fmt: skip
        claims.mark_stored(pg, stored)
    return [outcomes[n] for n in range(len(items))]


def _answer(item: Item, same: bool) -> Outcome:
    try:
        return answer(item.batch, item.sha256, same)
    except CollectorError as exc:
        return exc


def _in_lake(duck: Any, items: Sequence[Item]) -> dict[str, str]:
    """batch_id -> sha256 of the given batches already in the lake (``created_at`` first: it prunes files)."""
    rows = duck.execute(
        "SELECT CAST(batch_id AS VARCHAR), sha256 FROM batches WHERE list_contains(?, created_at)"
        " AND list_contains(?, CAST(batch_id AS VARCHAR))",
        [sorted({item.created for item in items}), [item.batch.batch_id for item in items]],
    ).fetchall()
    return {batch_id: sha for batch_id, sha in rows}


def _store(session: Session, items: Sequence[Item], tmp_dir: Path) -> None:
    # The lines go through a private temporary file only so that DuckDB's bulk JSON reader can load them;
    # it is deleted after the commit, and no acknowledged batch ever depends on it.
    path = tmp_dir / f"group-{uuid.uuid4().hex}.ndjson"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"".join(item.line for item in items))
        transaction(session, locks.WRITE, lambda duck: insert_lines(duck, path))
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
