"""Lake maintenance, run by one collector at a time: compaction, cleanup, claim pruning and physical erasure.

Every collector calls :func:`maintain` every ``maintenance_interval_s``; the one that gets the
MAINTENANCE advisory lock, and finds the last pass older than the interval, does the work. Its
compaction holds ROLLUP, INGEST and WRITE too, so no insert or delete commits beside a rewrite.

Erasure is physical. A DELETE in DuckLake only adds a delete file: the rows stay in the original
Parquet file, in inlined catalog rows and in retained snapshots. So each erasure request is recorded
(its time only), and once the oldest is close enough to ``erasure_max_hours`` that the next pass could
be late, a pass flushes the inlined rows, rewrites every file that has deletions
(``delete_threshold => 0``), expires every older snapshot and deletes every file no snapshot needs, and
``VACUUM FULL``s the inlined-data tables. DuckLake then recomputes the table-level column statistics
(min/max) from the remaining files, so no statistic keeps an erased id either.

Every pass also deletes *orphaned* files: a collector killed after a group commit wrote its Parquet
files and before it committed leaves files no snapshot knows, holding rows of batches it never
acknowledged (the agent sends them again). The pass holds INGEST exclusively meanwhile
(:mod:`.locks`), so no commit is writing: every Parquet file under the data path that the catalog
does not list is such an orphan, and an erased install's rows cannot survive in one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql

from . import claims, locks
from .commit import Session
from .connect import CATALOG_NAME

__all__ = ["Pass", "maintain"]

log = logging.getLogger(__name__)

_NAME: Final = "compaction"
_SETTLE_S: Final = 30.0
"""How long a pass waits for commits begun before it got its locks; it is skipped after that."""
_MAX_MARGIN_S: Final = 600.0
"""Files and snapshots are kept this long after they stop being current (readers mid-query still use them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass:
    """What one maintenance pass did."""

    ran: bool
    erased: int = 0
    """Erasure requests made physical by this pass."""
    claims_pruned: int = 0
    seconds: float = 0.0


def maintain(
    session: Session, *, now: dt.datetime, interval_s: float, erasure_max_hours: float, dedup_window_days: int
) -> Pass:
    """Run one pass if this collector gets the lock and the last pass is at least ``interval_s`` old.

    ``now`` is the collector's clock, which dates the batches (claims of batches created before the dedup
    window are pruned); the schedule, erasure deadlines and snapshot expiry use PostgreSQL's and DuckDB's
    own clocks, which date the catalog.
    """
    pg = session.pg()
    with locks.try_advisory(pg, locks.MAINTENANCE) as mine:
        if not mine:
            return Pass(ran=False)
        row = pg.execute(
            "SELECT extract(epoch FROM now() - last_run) FROM telemetry_collector.maintenance WHERE name = %s",
            (_NAME,),
        ).fetchone()
        erasure_due = _erasure_due(pg, interval_s=interval_s, erasure_max_hours=erasure_max_hours)
        if row is not None and float(row[0]) < 0.9 * interval_s and erasure_due is None:
            return Pass(ran=False)
        started = time.perf_counter()
        # Compaction holds every write lock: measured with DuckLake 1.5, a flush beside a committing delete fails
        # ("Failed to delete flushed inlined data"), and a rewrite beside a commit aborts the whole DuckDB
        # instance ("row id limit is larger than the row count of the file"). Ingest waits meanwhile.
        with locks.advisory(pg, locks.ROLLUP), locks.advisory(pg, locks.INGEST), locks.advisory(pg, locks.WRITE):
            # A collector killed mid-commit lost its locks at once, but PostgreSQL may still be running that commit.
            row = pg.execute("SELECT clock_timestamp()").fetchone()
            if row is None or not claims.wait_for_older(pg, row[0], timeout_s=_SETTLE_S):
                log.info("lake maintenance: skipped, a commit of another collector is still running")
                return Pass(ran=False)
            _compact(session, interval_s=interval_s, physical=erasure_due is not None)
        erased = 0
        if erasure_due is not None:
            _vacuum_inlined(pg)
            cursor = pg.execute("DELETE FROM telemetry_collector.erasures WHERE requested_at <= %s", (erasure_due,))
            erased = int(cursor.rowcount or 0)
        window = dt.timedelta(days=dedup_window_days)
        pruned = claims.prune(pg, created_before=_naive(now - window))
        pg.execute(
            "INSERT INTO telemetry_collector.maintenance (name, last_run) VALUES (%s, now())"
            " ON CONFLICT (name) DO UPDATE SET last_run = EXCLUDED.last_run",
            (_NAME,),
        )
    result = Pass(ran=True, erased=erased, claims_pruned=pruned, seconds=time.perf_counter() - started)
    if erased:
        log.info("lake maintenance: %d erasure request(s) made physical in %.1f s", erased, result.seconds)
    return result


def _erasure_due(pg: Any, *, interval_s: float, erasure_max_hours: float) -> dt.datetime | None:
    """PostgreSQL's now if pending erasures must become physical in this pass, else None."""
    row = pg.execute("SELECT now(), extract(epoch FROM now() - min(requested_at)) FROM telemetry_collector.erasures")
    now, age_s = row.fetchone() or (None, None)
    if age_s is None:
        return None
    # The next pass may come two intervals from now (this one skipped, or a collector restarting): act before.
    slack_s = erasure_max_hours * 3600 - 2 * interval_s
    return now if float(age_s) >= max(0.0, slack_s) else None


def _compact(session: Session, *, interval_s: float, physical: bool) -> None:
    duck = session.duck
    lake = f"'{CATALOG_NAME}'"
    duck.execute(f"CALL ducklake_flush_inlined_data({lake})")
    if physical:
        duck.execute(f"CALL ducklake_rewrite_data_files({lake}, delete_threshold => 0.0)")
    else:
        duck.execute(f"CALL ducklake_rewrite_data_files({lake})")
    duck.execute(f"CALL ducklake_merge_adjacent_files({lake})")
    if physical:
        # Nothing may keep an erased row: no older snapshot, no file scheduled for later deletion.
        duck.execute(f"CALL ducklake_expire_snapshots({lake}, older_than => now())")
        duck.execute(f"CALL ducklake_cleanup_old_files({lake}, cleanup_all => true)")
    else:
        margin_s = min(_MAX_MARGIN_S, max(interval_s, 1.0))
        duck.execute(f"CALL ducklake_expire_snapshots({lake}, older_than => now() - to_seconds(?))", [margin_s])
        duck.execute(f"CALL ducklake_cleanup_old_files({lake}, older_than => now() - to_seconds(?))", [margin_s])
    # Under INGEST no commit is writing, so every unlisted file is a dead commit's (files scheduled for later
    # deletion are listed): all of them go, whatever their age.
    duck.execute(f"CALL ducklake_delete_orphaned_files({lake}, cleanup_all => true)")


def _vacuum_inlined(pg: Any) -> None:
    # Deleted tuples of inlined rows stay in PostgreSQL's heap pages until rewritten; VACUUM FULL rewrites them.
    names = pg.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_name LIKE 'ducklake\\_inlined\\_data\\_%' AND table_type = 'BASE TABLE'"
    ).fetchall()
    for schema_name, table in [*names, ("telemetry_collector", "claims")]:
        pg.execute(sql.SQL("VACUUM FULL {}.{}").format(sql.Identifier(schema_name), sql.Identifier(table)))


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
