"""The report rollup ``report_days``: one row per install, product and UTC day, derived from ``snapshots``.

Reports read only this table (see :mod:`collector.reports`), which holds about 1/24 of the raw rows when
agents snapshot hourly. :func:`refresh` folds in every batch not yet listed in ``report_batches``: for each
install concerned, it recomputes the days from the earliest snapshot of its new batches onwards, carrying
the deployments counter's last earlier reading as the baseline. Late or out-of-order batches and counter
resets therefore come out exactly as a full recomputation would. Every function here takes a DuckDB
connection and runs inside the caller's transaction (``Store.write`` runs them in the writer thread).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

__all__ = ["expire", "forget_install", "refresh"]

# The batches not yet folded that arrived since $since (a day before the newest folded arrival on the
# cheap path, or the beginning of time when counts disagree). Every statement of one refresh runs in the
# caller's transaction, so each re-reads the same snapshot: no work table is needed (on a lake, a work
# table's column statistics would keep the ids that passed through it, erasure or not).
_PENDING: Final = """pending AS (
    SELECT batch_id FROM (SELECT batch_id FROM batches WHERE received_at >= $since)
    ANTI JOIN (SELECT batch_id FROM report_batches WHERE received_at >= $since) USING (batch_id)
)"""
# Per install and product with new snapshots: the day to rebuild from (the earliest new snapshot's day).
# Snapshots come no later than their batch's created_at and are appended in roughly time order, so the
# lower bound $bound on taken_at lets DuckDB skip old row groups (see _bound).
_REBUILD: Final = f"""{_PENDING}, rebuild AS (
    SELECT install_id, product_name, CAST(min(taken_at) AS DATE) AS from_day, count(*) AS new_snapshots
    FROM snapshots WHERE taken_at >= $bound AND batch_id IN (SELECT batch_id FROM pending)
    GROUP BY install_id, product_name
)"""

_INSERT_DAYS: Final = f"""
INSERT INTO report_days (
    install_id, product_name, day, snapshots, product_version, os_family, os_version, cpu_cores, memory_gib,
    disk_total_gib, disk_free_gib, projects, cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings,
    deployments_last
)
WITH {_REBUILD}, baseline AS (
    -- The last counter reading before from_day: kept in report_days (deployments_last), older days are not redone.
    SELECT d.install_id, d.product_name, arg_max(d.deployments_last, d.day) AS baseline
    FROM report_days d JOIN rebuild r
        ON d.install_id = r.install_id AND d.product_name = r.product_name AND d.day < r.from_day
    GROUP BY d.install_id, d.product_name
), readings AS (
    SELECT
        s.install_id, s.product_name, s.taken_at, s.product_version, s.os_family, s.os_version,
        s.host_cpu_logical_cores, s.host_memory_total_gib, s.host_disk_total_gib, s.host_disk_free_gib,
        s.host_cpu_usage_pct, s.usage_projects, s.usage_deployments,
        -- The previous reading of the counter, however many snapshots (or days) lie between.
        coalesce(last_value(s.usage_deployments IGNORE NULLS) OVER (
            PARTITION BY s.install_id, s.product_name ORDER BY s.taken_at, s.batch_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ), b.baseline) AS previous_deployments
    FROM snapshots s
    JOIN rebuild r ON s.install_id = r.install_id AND s.product_name = r.product_name AND s.taken_at >= r.from_day
    LEFT JOIN baseline b ON s.install_id = b.install_id AND s.product_name = b.product_name
    WHERE s.taken_at >= $earliest  -- the earliest from_day, as a constant so DuckDB can skip old row groups
)
SELECT
    install_id, product_name, CAST(taken_at AS DATE) AS day, count(*),
    arg_max(product_version, taken_at), arg_max(os_family, taken_at), arg_max(os_version, taken_at),
    arg_max(host_cpu_logical_cores, taken_at), arg_max(host_memory_total_gib, taken_at),
    arg_max(host_disk_total_gib, taken_at), arg_max(host_disk_free_gib, taken_at), arg_max(usage_projects, taken_at),
    coalesce(sum(host_cpu_usage_pct), 0), count(host_cpu_usage_pct),
    coalesce(sum(CASE
        WHEN usage_deployments IS NULL OR previous_deployments IS NULL THEN 0
        WHEN usage_deployments >= previous_deployments THEN usage_deployments - previous_deployments
        ELSE usage_deployments  -- a drop is a reset: the counter restarted from zero
    END), 0),
    count(usage_deployments), arg_max(usage_deployments, taken_at)
FROM readings
GROUP BY install_id, product_name, CAST(taken_at AS DATE)
"""


def _scalar(con: Any, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return row[0] if row else None


def _numbered(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    # DuckDB takes $1, $2, ...; the SQL above names its parameters for the reader.
    names = [name for name in values if f"${name}" in sql]
    for n, name in enumerate(names, 1):
        sql = sql.replace(f"${name}", f"${n}")
    return sql, [values[name] for name in names]


def _run(con: Any, sql: str, **values: Any) -> Any:
    text, params = _numbered(sql, values)
    return con.execute(text, params)


def refresh(con: Any) -> int:
    """Fold every loaded batch not yet in ``report_days`` into it; returns how many batches were folded in."""
    # Cheap test first (counts come from metadata): every report request calls this.
    expected = _scalar(con, "SELECT (SELECT count(*) FROM batches) - (SELECT count(*) FROM report_batches)")
    if expected == 0:
        return 0
    since = _scalar(con, "SELECT max(received_at) - INTERVAL 1 DAY FROM report_batches") or dt.datetime.min
    pending = _count_pending(con, since)
    if pending != expected:
        # Rare: a batch loaded long after later ones were folded, or report_batches lists batches deleted
        # elsewhere. Compare everything, and drop the stale rows so the cheap test works again.
        con.execute("DELETE FROM report_batches WHERE batch_id NOT IN (SELECT batch_id FROM batches)")
        since = dt.datetime.min
        pending = _count_pending(con, since)
    if pending:
        bound = _bound(con, since)
        _run(con, f"""DELETE FROM report_days d USING (WITH {_REBUILD} SELECT * FROM rebuild) r
            WHERE d.install_id = r.install_id AND d.product_name = r.product_name AND d.day >= r.from_day""",
             since=since, bound=bound)  # fmt: skip
        earliest = _run(con, f"WITH {_REBUILD} SELECT min(from_day) FROM rebuild", since=since, bound=bound).fetchone()
        if earliest and earliest[0] is not None:  # None: the new batches' snapshots were already deleted
            start = dt.datetime.combine(earliest[0], dt.time())
            _run(con, _INSERT_DAYS, since=since, bound=bound, earliest=start)
        _run(con, f"""INSERT INTO report_batches WITH {_PENDING}
            SELECT batch_id, received_at FROM batches WHERE batch_id IN (SELECT batch_id FROM pending)""",
             since=since)  # fmt: skip
    return int(pending)


def _count_pending(con: Any, since: dt.datetime) -> int:
    return int(_run(con, f"WITH {_PENDING} SELECT count(*) FROM pending", since=since).fetchone()[0])


def _bound(con: Any, since: dt.datetime) -> dt.datetime:
    """The lowest taken_at to scan: 32 days before the new batches' earliest creation, if that finds them all.

    31 days covers a batch of 744 hourly snapshots; with sparse snapshots the bound may miss some, which the
    comparison with their snapshot_count catches, and then every snapshot is scanned.
    """
    since_bound, expected = _run(con, f"""WITH {_PENDING} SELECT min(created_at) - INTERVAL 32 DAY,
        coalesce(sum(snapshot_count), 0) FROM batches WHERE batch_id IN (SELECT batch_id FROM pending)""",
                                 since=since).fetchone()  # fmt: skip
    bound = since_bound or dt.datetime.min
    found = _run(con, f"WITH {_REBUILD} SELECT coalesce(sum(new_snapshots), 0) FROM rebuild",
                 since=since, bound=bound).fetchone()[0]  # fmt: skip
    return bound if found == expected else dt.datetime.min


def forget_install(con: Any, install_id: str) -> None:
    """Remove the install's rollup rows; call before its ``batches`` rows are deleted."""
    con.execute(
        "DELETE FROM report_batches WHERE batch_id IN (SELECT batch_id FROM batches WHERE install_id = ?)",
        [install_id],
    )
    con.execute("DELETE FROM report_days WHERE install_id = ?", [install_id])


def expire(con: Any, cutoff: dt.date) -> None:
    """Remove rollup rows for days before ``cutoff``; call before ``batches`` created before it are deleted."""
    con.execute(
        "DELETE FROM report_batches WHERE batch_id IN (SELECT batch_id FROM batches WHERE created_at < ?)",
        [dt.datetime.combine(cutoff, dt.time())],
    )
    con.execute("DELETE FROM report_days WHERE day < ?", [cutoff])
