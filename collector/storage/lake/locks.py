"""PostgreSQL advisory locks that coordinate the collectors sharing one lake.

DuckLake has no unique constraints, and a transaction that deletes from a table fails when another
committed an insert into it meanwhile ("attempting to delete from table ... but another transaction
has inserted into it"). So every lake write that touches the ingest tables holds :data:`WRITE` for its
whole transaction: group commits of all collectors and the deletes of erasure, retention and tokens
then never conflict, and the dedup claims (:mod:`.claims`) are checked and written under it. Measured
here, serialising whole commits cost nothing in total commit rate (two writers: 38 commits/s with the
lock, 28 without, 41 for one writer alone) because DuckLake serialises its catalog commit anyway.

Locks are session locks: PostgreSQL drops them when a collector's session ends (process killed, host
gone past the TCP keepalives of :mod:`.connect`). Order, to rule out deadlocks: ROLLUP, then INGEST,
then WRITE.

A group commit writes its Parquet files before it takes WRITE, so a collector killed in between leaves
files that no snapshot knows, holding rows of batches it never acknowledged. :data:`INGEST` tells such
orphans from the files of a commit still under way: each group commit holds it *shared* from before its
first write until it has committed or rolled back, and maintenance takes it *exclusively* to delete
every orphaned file (an erased install's rows must not survive in one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

__all__ = [
    "MAINTENANCE",
    "MIGRATE",
    "INGEST",
    "ROLLUP",
    "WRITE",
    "LockLostError",
    "advisory",
    "held_query",
    "holds",
    "try_advisory",
]

_NAMESPACE: Final = 0x7E1E
"""classid of every lock taken by telemetry collectors (``pg_locks.classid``)."""
WRITE: Final = 1
"""Held for each transaction that writes batches, snapshots, tokens or claims."""
ROLLUP: Final = 2
"""Held while the report rollup is refreshed, or rows are deleted from it."""
MAINTENANCE: Final = 3
"""Held (try-lock) by the one collector doing compaction, cleanup and physical erasure."""
MIGRATE: Final = 4
"""Held while a starting collector creates or migrates the lake's tables."""
INGEST: Final = 5
"""Held shared by each group commit while it writes and commits; exclusively while orphaned files are deleted."""


class LockLostError(Exception):
    """The session that held a lock is gone: a commit must not go ahead (another collector may hold it now)."""


@contextlib.contextmanager
def advisory(conn: Any, lock: int, *, shared: bool = False) -> Iterator[None]:
    """Hold ``lock`` (waiting at most the session's ``lock_timeout``); released on exit even after an error."""
    kind = "_shared" if shared else ""
    conn.execute(f"SELECT pg_advisory_lock{kind}(%s, %s)", (_NAMESPACE, lock))
    try:
        yield
    finally:
        if not conn.closed:
            with contextlib.suppress(Exception):  # a broken session released the lock already
                conn.execute(f"SELECT pg_advisory_unlock{kind}(%s, %s)", (_NAMESPACE, lock))


@contextlib.contextmanager
def try_advisory(conn: Any, lock: int) -> Iterator[bool]:
    """Take ``lock`` if free; yields whether it was taken (and releases it on exit if so)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_NAMESPACE, lock)).fetchone()
    taken = bool(row and row[0])
    try:
        yield taken
    finally:
        if taken and not conn.closed:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_NAMESPACE, lock))


def held_query(lock: int) -> str:
    """SQL that counts (as ``n``) this session's grants of ``lock``: 1 while it is held, 0 once lost."""
    return (
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        f" AND classid = {_NAMESPACE} AND objid = {int(lock)} AND granted"
    )


def holds(conn: Any, lock: int) -> None:
    """Raise :class:`LockLostError` unless this session still holds ``lock`` (checked just before a COMMIT)."""
    try:
        row = conn.execute(held_query(lock)).fetchone()
    except Exception as exc:
        raise LockLostError(f"the PostgreSQL session holding lock {lock} is gone") from exc
    if not row or not row[0]:
        raise LockLostError(f"lock {lock} is no longer held")
