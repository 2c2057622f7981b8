"""One group commit: many accepted batches become rows of the lake in ONE transaction, deduplicated by claims.

Runs in one of the lake store's commit threads (or its writer thread, for command-line use) on a
:class:`Session`. The protocol and why it holds under
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

import duckdb
import psycopg

from collector.errors import CollectorError, ConflictError, UnavailableError
from collector.storage.base import Receipt
from collector.storage.rows import insert_lines

from . import claims, locks
from .connect import CATALOG_NAME, LakeSettings, pg_connect

__all__ = ["Item", "Session", "commit_group", "in_transaction", "transaction"]

T = TypeVar("T")

_OLDER_WAIT_S: Final = 5.0
"""How long a commit waits for a dead collector's last PostgreSQL transaction before answering 503 instead."""
_ATTEMPTS: Final = 5
"""Attempts of one group commit that a rival claim or a concurrent delete may send back to the start."""


class Session:
    """What one lake thread owns: a DuckDB cursor on the lake and a PostgreSQL session, reconnected after a failure."""

    def __init__(self, db: Any, settings: LakeSettings, *, lock_timeout_s: float) -> None:
        self._db = db
        self.duck = self.fresh_cursor()
        self._settings = settings
        self._lock_timeout_s = lock_timeout_s
        self._pg: psycopg.Connection[Any] | None = None

    def fresh_cursor(self) -> Any:
        """A new DuckDB cursor on the lake, outside any open transaction of :attr:`duck` (sees the latest commit)."""
        cursor = self._db.cursor()
        cursor.execute(f"USE {CATALOG_NAME}")
        cursor.execute("SET enable_progress_bar = false")  # no progress bar in the service's log
        return cursor

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


@dataclass(frozen=True, slots=True)
class Item:
    """One validated batch waiting for a group commit."""

    batch_id: str
    sha256: str
    snapshots: int
    created: dt.datetime
    """``created_at`` as a naive UTC datetime."""
    line: bytes
    """Its NDJSON line (see :func:`collector.storage.base.spool_line`)."""


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
    object store fails. The rows are written (Parquet to the object store) before the write lock is
    taken, so the lock covers only the claims and the catalog commit: a rival that claimed one of the
    batches meanwhile, or a delete that committed meanwhile, makes the attempt start over.
    """
    for _ in range(_ATTEMPTS):
        outcomes = _attempt(session, items, tmp_dir=tmp_dir, window_start=window_start)
        if outcomes is not None:
            return outcomes
    raise UnavailableError("the lake is too busy with rival commits of these batches")


def _attempt(
    session: Session, items: Sequence[Item], *, tmp_dir: Path, window_start: dt.datetime
) -> list[Outcome] | None:
    pg = session.pg()
    outcomes: dict[int, Outcome] = {}
    known = claims.lookup(pg, [item.batch_id for item in items])  # unlocked: answers what is stored
    candidates: list[tuple[int, Item]] = []
    for n, item in enumerate(items):
        claim = known.get(item.batch_id)
        if claim is not None and claim.stored:
            outcomes[n] = _answer(item, claim.sha256 == item.sha256)
        else:
            candidates.append((n, item))
    if candidates:
        written = [item for _, item in candidates]
        new = [(item.batch_id, item.sha256, item.created) for item in written]
        duck = session.duck
        # INGEST (shared) from before the first file is written until COMMIT or ROLLBACK: files written
        # outside it, and not in the catalog, are orphans of a dead commit that maintenance may delete.
        with locks.advisory(pg, locks.INGEST, shared=True):
            duck.execute("BEGIN")
            try:
                _insert(duck, written, tmp_dir)  # the slow part (Parquet to the object store), outside WRITE
                with locks.advisory(pg, locks.WRITE):
                    if not _claim(session, written, known, window_start):
                        duck.execute("ROLLBACK")
                        return None
                    try:
                        duck.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(Exception):
                            claims.delete(pg, [batch_id for batch_id, _, _ in new], pending_only=True)
                        raise
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    duck.execute("ROLLBACK")  # DuckLake deletes the files it wrote (a killed process cannot)
                if _deleted_meanwhile(exc):
                    return None  # an erasure or retention committed a delete since BEGIN: write again
                raise
        # After the lock: a rival that sees these claims still pending meanwhile finds the rows in the lake.
        claims.mark_stored(pg, new)
        for n, item in candidates:
            outcomes[n] = Receipt(batch_id=item.batch_id, sha256=item.sha256, snapshots=item.snapshots, duplicate=False)
    return [outcomes[n] for n in range(len(items))]


def _claim(
    session: Session, written: Sequence[Item], before: dict[str, claims.Claim], window_start: dt.datetime
) -> bool:
    """Under the write lock: claim ``written`` (pending), or return False (start over) if a rival got there first.

    The common case is one statement: every batch had no claim, and inserting the claims finds none either.
    A claim that is pending while we hold the lock is an earlier commit that died (see :mod:`.claims`):
    once its last PostgreSQL transaction has settled, the lake itself says whether it is stored; if so the
    claim is marked stored and the attempt starts over (answering it as a duplicate). Batches created before
    the dedup window, whose claims may have been pruned, are looked up in the lake as well.
    """
    pg = session.pg()
    absent = [item for item in written if item.batch_id not in before]
    reused = [item for item in written if item.batch_id in before]  # pending before step 1
    # One statement in the common case: the lock check and the claims (its check runs just before the COMMIT).
    inserted = claims.claim_absent(
        pg, [(i.batch_id, i.sha256, i.created) for i in absent], lock_check=locks.held_query(locks.WRITE)
    )
    mine = [item.batch_id for item in absent if item.batch_id in inserted]
    if len(inserted) != len(absent):  # a rival claimed one of them since step 1
        claims.delete(pg, mine, pending_only=True)
        return False
    now = claims.lookup(pg, [item.batch_id for item in reused]) if reused else {}
    if any(now.get(item.batch_id) != before[item.batch_id] for item in reused):
        claims.delete(pg, mine, pending_only=True)
        return False
    suspects = reused + [item for item in absent if item.created < window_start]
    if suspects:
        if reused:
            row = pg.execute("SELECT clock_timestamp()").fetchone()
            lock_at = row[0] if row else dt.datetime.now(dt.UTC)
            if not claims.wait_for_older(pg, lock_at, timeout_s=_OLDER_WAIT_S):
                claims.delete(pg, mine, pending_only=True)
                raise UnavailableError("an earlier copy of a batch in this group is still being settled")
        cursor = session.fresh_cursor()
        try:
            found = _in_lake(cursor, suspects)
        finally:
            cursor.close()
        if found:
            by_id = {item.batch_id: item for item in suspects}
            claims.mark_stored(pg, [(batch_id, sha, by_id[batch_id].created) for batch_id, sha in found.items()])
            claims.delete(pg, [batch_id for batch_id in mine if batch_id not in found], pending_only=True)
            return False
        claims.put_pending(pg, [(i.batch_id, i.sha256, i.created) for i in reused])
        locks.holds(pg, locks.WRITE)  # time passed since the check above
    return True


def _deleted_meanwhile(exc: BaseException) -> bool:
    # DuckLake refuses an insert into a table that another transaction deleted from after this one began.
    return isinstance(exc, duckdb.TransactionException) and "has deleted from it" in str(exc)


def _answer(item: Item, same: bool) -> Outcome:
    if not same:
        return ConflictError("this batch_id was already stored with different content", path="batch_id")
    return Receipt(batch_id=item.batch_id, sha256=item.sha256, snapshots=item.snapshots, duplicate=True)


def _in_lake(duck: Any, items: Sequence[Item]) -> dict[str, str]:
    """batch_id -> sha256 of the given batches already in the lake (``created_at`` first: it prunes files)."""
    rows = duck.execute(
        "SELECT CAST(batch_id AS VARCHAR), sha256 FROM batches WHERE list_contains(?, created_at)"
        " AND list_contains(?, CAST(batch_id AS VARCHAR))",
        [sorted({item.created for item in items}), [item.batch_id for item in items]],
    ).fetchall()
    return {batch_id: sha for batch_id, sha in rows}


def _insert(duck: Any, items: Sequence[Item], tmp_dir: Path) -> None:
    # The lines go through a private temporary file only so that DuckDB's bulk JSON reader can load them;
    # it is deleted once read, and no acknowledged batch ever depends on it.
    path = tmp_dir / f"group-{uuid.uuid4().hex}.ndjson"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"".join(item.line for item in items))
        insert_lines(duck, path)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
