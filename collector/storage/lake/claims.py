"""The lake's dedup claims: one PostgreSQL row per batch_id, *pending* or *stored*, changed only under WRITE.

Why this is correct (docs/scale-out.md repeats it for operators). Every group commit, on any collector:

1. looks up the claims of its batch_ids: a *stored* claim answers ``duplicate`` (same sha256) or 409
   (other bytes) at once; the other batches are the candidates;
2. BEGINs a lake transaction and writes the candidates' rows (the Parquet files go to the object
   store now, in parallel with other collectors), holding INGEST shared until step 4 is over, so that
   maintenance can tell these files from the orphans of a commit that died (:mod:`.locks`);
3. takes the WRITE advisory lock (:mod:`.locks`) and looks the claims up again: if any candidate's
   claim changed since step 1, a rival committed it meanwhile: roll back and start over (step 1 then
   answers it as a duplicate);
4. writes a *pending* claim per candidate, checks it still holds the lock, COMMITs, releases the
   lock, marks the claims *stored*, and only then answers.

Every claim is created, and every commit of ingest rows happens, under WRITE, so at most one commit of
a batch can pass step 3 (a claim is only ever marked stored after its rows are committed). A crash can stop this between any two steps. Before the COMMIT, nothing was
acknowledged: the lake holds nothing and at most a pending claim is left. After the COMMIT, the rows are
in the lake but the claim may still say pending. So a commit that sees a *pending* claim under the lock
knows that no live commit owns it (the owner would hold the lock) and asks the lake itself, through a
fresh transaction, after waiting until every PostgreSQL statement of a transaction older than its lock
has finished (a dying collector's COMMIT may still be running there): found means duplicate (the claim
is marked stored and the attempt starts over), absent means new. If the session holding the lock dies
while its collector runs on (a network cut), the lock check before COMMIT fails and the commit is
rolled back. Batches created before the dedup window, whose claims may be pruned, are looked up in the
lake too. The same batch arriving twice at one collector is serialised in the process.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .locks import LockLostError

__all__ = [
    "SETUP_SQL",
    "Claim",
    "claim_absent",
    "delete",
    "lookup",
    "mark_stored",
    "prune",
    "put_pending",
    "wait_for_older",
]

SETUP_SQL: Final = (
    "CREATE SCHEMA IF NOT EXISTS telemetry_collector",
    """CREATE TABLE IF NOT EXISTS telemetry_collector.claims (
        batch_id   uuid        PRIMARY KEY,
        sha256     text        NOT NULL,
        created_at timestamp   NOT NULL,   -- the batch's sealed-at hour (UTC)
        stored     boolean     NOT NULL,   -- false: a commit claimed it and may have died
        claimed_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS claims_claimed_at ON telemetry_collector.claims (claimed_at)",
    # Erasure requests waiting for their physical pass; deliberately no install id (that is what was erased).
    "CREATE TABLE IF NOT EXISTS telemetry_collector.erasures (requested_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS telemetry_collector.maintenance (name text PRIMARY KEY, last_run timestamptz NOT NULL)",
)
_WAIT_STEP_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class Claim:
    """What the claims table says about one batch_id."""

    sha256: str
    stored: bool


def lookup(conn: Any, batch_ids: Sequence[str]) -> dict[str, Claim]:
    """The claims held for ``batch_ids``."""
    rows = conn.execute(
        "SELECT batch_id::text, sha256, stored FROM telemetry_collector.claims WHERE batch_id = ANY(%s::uuid[])",
        (list(batch_ids),),
    ).fetchall()
    return {row[0]: Claim(row[1], row[2]) for row in rows}


def claim_absent(conn: Any, claims: Sequence[tuple[str, str, dt.datetime]], *, lock_check: str) -> set[str]:
    """Insert pending claims ``(batch_id, sha256, created_at)`` where none exists; returns the batch_ids inserted.

    ``lock_check`` is a query counting the advisory locks this session must hold: in the same statement (one
    round trip less inside the lock), nothing is inserted and :class:`LockLostError` raised when it counts 0.
    """
    ids, shas, created = zip(*claims, strict=True) if claims else ((), (), ())
    row = conn.execute(
        f"""WITH held AS ({lock_check}), inserted AS (
            INSERT INTO telemetry_collector.claims (batch_id, sha256, created_at, stored)
            SELECT *, false FROM unnest(%s::uuid[], %s::text[], %s::timestamp[]) WHERE (SELECT n FROM held) > 0
            ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id::text
        ) SELECT (SELECT n FROM held), array(SELECT batch_id FROM inserted)""",
        (list(ids), list(shas), list(created)),
    ).fetchone()
    if not row or not row[0]:
        raise LockLostError("the write lock is no longer held")
    return set(row[1])


def put_pending(conn: Any, claims: Sequence[tuple[str, str, dt.datetime]]) -> None:
    """Write pending claims ``(batch_id, sha256, created_at)``, replacing pending ones left by a dead commit."""
    ids, shas, created = zip(*claims, strict=True) if claims else ((), (), ())
    conn.execute(
        """INSERT INTO telemetry_collector.claims (batch_id, sha256, created_at, stored)
        SELECT * , false FROM unnest(%s::uuid[], %s::text[], %s::timestamp[])
        ON CONFLICT (batch_id) DO UPDATE SET sha256 = EXCLUDED.sha256, claimed_at = now()
        WHERE NOT telemetry_collector.claims.stored""",
        (list(ids), list(shas), list(created)),
    )


def mark_stored(conn: Any, claims: Sequence[tuple[str, str, dt.datetime]]) -> None:
    """Record ``(batch_id, sha256, created_at)`` as stored in the lake (inserting the claim if it was pruned)."""
    if not claims:
        return
    ids, shas, created = zip(*claims, strict=True)
    conn.execute(
        """INSERT INTO telemetry_collector.claims (batch_id, sha256, created_at, stored)
        SELECT *, true FROM unnest(%s::uuid[], %s::text[], %s::timestamp[])
        ON CONFLICT (batch_id) DO UPDATE SET stored = true""",
        (list(ids), list(shas), list(created)),
    )


def delete(conn: Any, batch_ids: Sequence[str], *, pending_only: bool = False) -> None:
    """Drop claims (after an erasure, so the install may send again; or the pending ones of a failed commit)."""
    if batch_ids:
        condition = " AND NOT stored" if pending_only else ""
        conn.execute(
            f"DELETE FROM telemetry_collector.claims WHERE batch_id = ANY(%s::uuid[]){condition}", (list(batch_ids),)
        )


def prune(conn: Any, *, created_before: dt.datetime) -> int:
    """Drop claims of batches created before the window that have also been held a day; returns how many."""
    # A day at least: a late batch just accepted is found here, not only in the lake, while it is young.
    cursor = conn.execute(
        "DELETE FROM telemetry_collector.claims WHERE created_at < %s AND claimed_at < now() - interval '1 day'",
        (created_before,),
    )
    return int(cursor.rowcount or 0)


def wait_for_older(conn: Any, since: dt.datetime, *, timeout_s: float) -> bool:
    """Wait until no other session of this database is running a statement of a transaction begun before ``since``.

    A collector killed right after sending its COMMIT (DuckLake sends a commit as one batch of statements)
    loses its lock at once, while PostgreSQL may still be executing that batch: this waits it out. A session
    idle in a transaction is not waited for (when its client is gone it can only roll back), nor one waiting
    for a lock (ours, most likely: it has not begun to write). False on timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state = 'active' AND xact_start < %s AND wait_event_type IS DISTINCT FROM 'Lock'",
            (since,),
        ).fetchone()
        if not row or not row[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_WAIT_STEP_S)
