"""The report rollup: folding batches in any order, late or after deletions, equals a rebuild from scratch."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from collector.reports import rollup as reports_rollup
from collector.storage.migrations import migrate
from schema import CATALOGUE, parse_batch, parse_hour
from tests.analytics.fleet import batches, make_fleet

_COLUMNS = [m.column for m in CATALOGUE.metrics.values()]


def _insert(con: Any, body: bytes, received_at: dt.datetime) -> str:
    """Insert one batch and its snapshots as the loader would, with the given arrival time."""
    batch = parse_batch(body)
    created = parse_hour(batch.created_at, "created_at").replace(tzinfo=None)
    con.execute(
        "INSERT INTO batches (batch_id, install_id, product_name, product_version, agent_version, created_at,"
        " received_at, sha256, body_bytes, snapshot_count) VALUES (?, ?, ?, ?, ?, ?, ?, 'x', ?, ?)",
        [batch.batch_id, batch.install_id, batch.product.name, batch.product.version, batch.agent_version, created,
         received_at, len(body), len(batch.snapshots)],
    )  # fmt: skip
    rows = [
        [batch.install_id, batch.batch_id, batch.product.name, batch.product.version,
         parse_hour(s.taken_at, "t").replace(tzinfo=None), *(s.metrics.get(m) for m in CATALOGUE.metrics)]
        for s in batch.snapshots
    ]  # fmt: skip
    marks = ", ".join("?" * (5 + len(_COLUMNS)))
    con.executemany(
        f"INSERT INTO snapshots (install_id, batch_id, product_name, product_version, taken_at, {', '.join(_COLUMNS)})"
        f" VALUES ({marks})",
        rows,
    )
    return batch.batch_id


def _refresh(con: Any) -> int:
    con.execute("BEGIN")
    folded = reports_rollup.refresh(con)
    con.execute("COMMIT")
    return folded


def _days(con: Any) -> list[tuple[Any, ...]]:
    return sorted(con.execute("SELECT * FROM report_days").fetchall(), key=str)


@pytest.mark.parametrize("listed_most", [100_000, 0], ids=["pending-listed", "pending-found-by-each"])
def test_incremental_refresh_equals_a_rebuild_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed_most: int
) -> None:
    """Batches folded in shuffled order, some arriving 'late' or after other batches vanished, match a full rebuild.

    Both ways a refresh passes its pending batches to its statements: as a list (found once), and past the
    list's limit (a fold from scratch) as a subquery each statement runs again.
    """
    monkeypatch.setattr(reports_rollup, "_LISTED_MOST", listed_most)
    con = duckdb.connect(str(tmp_path / "r.duckdb"))
    migrate(con)
    sends = [body for install in make_fleet()[4:9] for body in batches(install)]
    random.Random(5).shuffle(sends)
    arrival = dt.datetime(2026, 6, 20)
    for n, body in enumerate(sends):
        # Most arrive in order; every seventh is stamped ten days earlier (replayed from an old spool),
        # which is outside the refresh's recent-arrivals window and forces the full comparison.
        received = arrival - dt.timedelta(days=10) if n % 7 == 3 else arrival + dt.timedelta(hours=n)
        batch_id = _insert(con, body, received)
        if n % 5 == 4:
            assert _refresh(con) > 0
        if n == len(sends) // 2:  # a batch deleted behind the rollup's back leaves a stale report_batches row
            con.execute("DELETE FROM snapshots WHERE batch_id = ?", [batch_id])
            con.execute("DELETE FROM batches WHERE batch_id = ?", [batch_id])
    _refresh(con)
    assert _refresh(con) == 0
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert not tables & {"report_pending", "report_rebuild"}  # no work tables: nothing lingers anywhere
    assert (
        con.execute("SELECT count(*) FROM report_batches").fetchone()
        == con.execute("SELECT count(*) FROM batches").fetchone()
    )
    incremental = _days(con)

    con.execute("DELETE FROM report_days")
    con.execute("DELETE FROM report_batches")
    assert _refresh(con) == len(sends) - 1
    assert _days(con) == incremental
    assert (
        con.execute("SELECT sum(snapshots) FROM report_days").fetchone()
        == con.execute("SELECT count(*) FROM snapshots").fetchone()
    )
    con.close()
