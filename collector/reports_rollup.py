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

_REBUILD: Final = """
INSERT INTO report_days (
    install_id, product_name, day, snapshots, product_version, os_family, os_version, cpu_cores, memory_gib,
    disk_total_gib, disk_free_gib, projects, cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings,
    deployments_last
)
WITH readings AS (
    SELECT
        s.install_id, s.product_name, s.taken_at, s.product_version, s.os_family, s.os_version,
        s.host_cpu_logical_cores, s.host_memory_total_gib, s.host_disk_total_gib, s.host_disk_free_gib,
        s.host_cpu_usage_pct, s.usage_projects, s.usage_deployments,
        -- The previous reading of the counter, however many snapshots (or days) lie between.
        coalesce(last_value(s.usage_deployments IGNORE NULLS) OVER (
            PARTITION BY s.install_id, s.product_name ORDER BY s.taken_at, s.batch_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ), r.baseline) AS previous_deployments
    FROM snapshots s
    JOIN report_rebuild r
        ON s.install_id = r.install_id AND s.product_name = r.product_name AND s.taken_at >= r.from_day
    WHERE s.taken_at >= ?  -- the earliest from_day, as a constant so DuckDB can skip old row groups
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


def refresh(con: Any) -> int:
    """Fold every loaded batch not yet in ``report_days`` into it; returns how many batches were folded in."""
    # Cheap test first (counts come from metadata): every report request calls this.
    expected = _scalar(con, "SELECT (SELECT count(*) FROM batches) - (SELECT count(*) FROM report_batches)")
    if expected == 0:
        return 0
    if _find_pending(con) != expected:
        # Rare: a batch loaded long after later ones were folded, or report_batches lists batches deleted
        # elsewhere. Compare everything, and drop the stale rows so the cheap test works again.
        con.execute("DELETE FROM report_pending")
        con.execute("DELETE FROM report_batches WHERE batch_id NOT IN (SELECT batch_id FROM batches)")
        con.execute("INSERT INTO report_pending SELECT batch_id FROM batches ANTI JOIN report_batches USING (batch_id)")
    pending = int(_scalar(con, "SELECT count(*) FROM report_pending"))
    if pending:
        _rebuild(con)
        con.execute(
            "INSERT INTO report_batches SELECT batch_id, received_at FROM batches"
            " WHERE batch_id IN (SELECT batch_id FROM report_pending)"
        )
    con.execute("DELETE FROM report_pending")
    con.execute("DELETE FROM report_rebuild")
    return pending


def _find_pending(con: Any) -> int:
    """List in report_pending the unfolded batches that arrived since a day before the last folded one."""
    since = _scalar(con, "SELECT max(received_at) - INTERVAL 1 DAY FROM report_batches") or dt.datetime.min
    con.execute(
        """INSERT INTO report_pending SELECT batch_id FROM (SELECT batch_id FROM batches WHERE received_at >= $1)
        ANTI JOIN (SELECT batch_id FROM report_batches WHERE received_at >= $1) USING (batch_id)""",
        [since],
    )
    return int(_scalar(con, "SELECT count(*) FROM report_pending"))


def _rebuild(con: Any) -> None:
    """Recompute report_days for the installs of report_pending, from their new batches' first day on."""
    # Snapshots come no later than their batch's created_at; ingest appends them in roughly time order, so a
    # lower bound on taken_at lets DuckDB skip old row groups. 31 days covers a batch of 744 hourly snapshots;
    # if the bound misses some (sparse snapshots), the check against snapshot_count catches it.
    row = con.execute(
        "SELECT min(created_at) - INTERVAL 32 DAY, sum(snapshot_count) FROM batches"
        " WHERE batch_id IN (SELECT batch_id FROM report_pending)"
    ).fetchone()
    since, expected = row if row else (None, 0)
    for bound in (since, dt.datetime.min):
        con.execute("DELETE FROM report_rebuild")
        con.execute(
            """INSERT INTO report_rebuild (install_id, product_name, from_day, new_snapshots)
            SELECT install_id, product_name, CAST(min(taken_at) AS DATE), count(*) FROM snapshots
            WHERE taken_at >= ? AND batch_id IN (SELECT batch_id FROM report_pending)
            GROUP BY install_id, product_name""",
            [bound or dt.datetime.min],
        )
        if _scalar(con, "SELECT coalesce(sum(new_snapshots), 0) FROM report_rebuild") == expected:
            break
    con.execute(
        """UPDATE report_rebuild r SET baseline = b.baseline FROM (
            SELECT d.install_id, d.product_name, arg_max(d.deployments_last, d.day) AS baseline
            FROM report_days d JOIN report_rebuild r
                ON d.install_id = r.install_id AND d.product_name = r.product_name AND d.day < r.from_day
            GROUP BY d.install_id, d.product_name
        ) b WHERE r.install_id = b.install_id AND r.product_name = b.product_name"""
    )
    con.execute(
        """DELETE FROM report_days d USING report_rebuild r
        WHERE d.install_id = r.install_id AND d.product_name = r.product_name AND d.day >= r.from_day"""
    )
    earliest = _scalar(con, "SELECT min(from_day) FROM report_rebuild")
    if earliest is not None:  # None: the new batches' snapshots were already deleted
        con.execute(_REBUILD, [dt.datetime.combine(earliest, dt.time())])


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
