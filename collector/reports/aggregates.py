"""The pre-aggregates over ``report_days``: per install and period, per install, and per group.

``report_days`` holds one row per install, product and day; a weekly report over six months of a
500,000-install fleet would still group 17M of them. So three tables are kept beside it (created by
``006_report_periods.sql``):

- ``report_periods``: per install and week or month, each value as the install's last reading in the
  period and the sums of its days, exactly as the reports' definitions take them from ``report_days``;
  once per product and once for the install's products together (``product_name`` NULL).
- ``report_installs``: each install's first and last day (new and lost installs).
- ``report_groups``: how many installs each group holds per closed period (day, week, month):
  :mod:`~collector.reports.groups`.

All three follow ``report_days`` by install: :func:`retract` takes back what a set of installs
contributes from some day on (their rows go, their counts are subtracted), the caller changes their
``report_days`` rows, and :func:`extend` puts back what they contribute now. Each install's rows are
therefore always a function of its ``report_days`` rows, whatever the order batches arrived in. Every
function runs in the caller's transaction (the writer's, or the lake's under the rollup lock).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from collector.reports import groups
from collector.reports.sql import run
from collector.reports.touched import GAUGES, TOUCHED, TOUCHED_ROWS, Touched, parameters

__all__ = ["Touched", "extend", "retract"]

_SUMMED_COLUMNS: Final = ("cpu_pct_sum", "cpu_pct_count", "deployments_delta", "deployment_readings")


def _readings(table: str, by: str) -> str:
    # A period's columns from the rows of ``table`` (an alias) grouped into it, in report_periods' order:
    # each gauge's and the projects' last reading (latest ``by``), and the sums of its days.
    last = ", ".join(f"arg_max({table}.{c}, {table}.{by}) AS {c}" for c in (*GAUGES.split(", "), "projects"))
    return f"{last}, " + ", ".join(f"sum({table}.{c}) AS {c}" for c in _SUMMED_COLUMNS)


# Weeks and months from their first day on (whole periods), per product and for all products together;
# and the all-products row of each install-day that has several products. Each product's days are first
# grouped by week and month together (a week across a month's end is two fragments); its weeks and its
# months are then grouped from those: half the rows of grouping every day once per kind (the one heavy
# step of a build). A period's last reading is its latest fragment's: one product's fragments share no
# day, and arg_max skips NULLs at both steps. An install with one product in a period (nearly all) has
# the same all-products row but for the version label, so it is copied from the per-product row; the
# rare installs with several products have theirs grouped from their days. touched_days is not materialized:
# buffering its 1.7M rows a build slice cost more CPU (1.2 s) than the second read, which joins the installs
# with several products first (usually none, and then report_days is not read again).
_PERIOD_OF: Final = "CASE k.period_kind WHEN 'week' THEN f.week ELSE f.month END"
_INSERT_PERIODS: Final = f"""INSERT INTO report_periods
WITH {TOUCHED}, touched_days AS NOT MATERIALIZED (  -- read once by fragments, once by shared_days
    SELECT d.*, t.from_day FROM report_days d JOIN touched t USING (install_id) WHERE d.day >= $earliest
), fragments AS (
    SELECT install_id, product_name, CAST(date_trunc('week', day) AS DATE) AS week,
        CAST(date_trunc('month', day) AS DATE) AS month, any_value(from_day) AS from_day, max(day) AS last_day,
        arg_max(product_version, day) AS product_version, {_readings("touched_days", "day")}
    FROM touched_days
    WHERE day >= least(CAST(date_trunc('week', from_day) AS DATE), CAST(date_trunc('month', from_day) AS DATE))
    GROUP BY install_id, product_name, week, month
), per_product AS MATERIALIZED (
    SELECT k.period_kind, {_PERIOD_OF} AS period, f.install_id, f.product_name, max(f.last_day) AS last_day,
        arg_max(f.product_version, f.last_day) AS version_label, {_readings("f", "last_day")}
    FROM fragments f CROSS JOIN (VALUES ('week'), ('month')) k(period_kind)
    WHERE {_PERIOD_OF} >= CAST(date_trunc(k.period_kind, f.from_day) AS DATE)
    GROUP BY k.period_kind, period, f.install_id, f.product_name
), shared AS (
    SELECT period_kind, period, install_id FROM per_product GROUP BY ALL HAVING count(*) > 1
), shared_days AS MATERIALIZED (  -- the days of the installs with several products in some period
    SELECT k.period_kind, CAST(date_trunc(k.period_kind, d.day) AS DATE) AS period, d.*
    FROM touched_days d JOIN (SELECT DISTINCT install_id FROM shared) USING (install_id)
        CROSS JOIN (VALUES ('week'), ('month')) k(period_kind)
    WHERE d.day >= CAST(date_trunc(k.period_kind, d.from_day) AS DATE)
)
SELECT * FROM (
SELECT period_kind, period, install_id, product_name, last_day, version_label, {GAUGES}, projects,
    cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings
FROM per_product
UNION ALL
SELECT period_kind, period, install_id, NULL, last_day, product_name || ' ' || version_label, {GAUGES}, projects,
    cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings
FROM per_product ANTI JOIN shared USING (period_kind, period, install_id)
UNION ALL
SELECT period_kind, period, install_id, NULL, max(day), arg_max(product_name || ' ' || product_version, day),
    {_readings("shared_days", "day")}
FROM shared_days SEMI JOIN shared USING (period_kind, period, install_id)
GROUP BY period_kind, period, install_id
UNION ALL
SELECT 'day', d.day, d.install_id, NULL, d.day, arg_max(d.product_name || ' ' || d.product_version, d.day),
    {_readings("d", "day")}
FROM shared_days d SEMI JOIN (  -- the rare install-days with several products (their week has several)
    SELECT day, install_id FROM shared_days
    WHERE period_kind = 'week' AND day >= $earliest_day AND day >= from_day
    GROUP BY day, install_id HAVING count(*) > 1
) USING (day, install_id)
WHERE d.period_kind = 'week'  -- each day once
GROUP BY d.day, d.install_id
) ORDER BY period  -- in period order, for the same reason as report_days"""
# Each touched install's first and last day, from its days since $earliest_day (the earliest from_day: days
# before it are unchanged by the caller) and the row held: a first day before it stands; the last day is the
# latest day since it, else the one held if older. Rows that cannot be told this way (every day since
# $earliest_day gone while the held last day is later) are recomputed from all of the install's days.
_INSTALL_DAYS: Final = f"""WITH {TOUCHED}, recent AS (
    SELECT d.install_id, d.product_name, min(d.day) AS first_day, max(d.day) AS last_day
    FROM report_days d WHERE d.day >= $earliest_day AND d.install_id IN (SELECT install_id FROM touched)
    GROUP BY GROUPING SETS ((d.install_id, d.product_name), (d.install_id))
), held AS (
    SELECT * FROM report_installs WHERE install_id IN (SELECT install_id FROM touched)
)
SELECT CAST(coalesce(r.install_id, h.install_id) AS VARCHAR), coalesce(r.product_name, h.product_name),
    CASE WHEN h.first_day < $earliest_day THEN h.first_day ELSE r.first_day END,
    CASE WHEN r.last_day IS NOT NULL THEN r.last_day WHEN h.last_day < $earliest_day THEN h.last_day END
FROM recent r FULL JOIN held h
    ON r.install_id = h.install_id AND r.product_name IS NOT DISTINCT FROM h.product_name"""
_ALL_DAYS: Final = """SELECT CAST(install_id AS VARCHAR), product_name, min(day), max(day) FROM report_days
WHERE install_id IN (SELECT unnest($installs::UUID[])) GROUP BY GROUPING SETS ((install_id, product_name), (install_id))"""
"""Every day of the installs: their rows from scratch."""
_PUT_INSTALLS: Final = """INSERT INTO report_installs SELECT unnest($i::UUID[]), unnest($p::VARCHAR[]),
    unnest($f::DATE[]), unnest($l::DATE[])"""
# When the touched installs' days since from_day were only added to (a refresh: days come from snapshots,
# which batches only add), first and last days can only move outwards: one statement, no read-back.
# The touched rows are a subquery, not the materialized CTE: with one in its source, DuckDB 1.5 scans the
# MERGE target with a column twice and refuses its Parquet files on S3 ("incorrectly set page offsets",
# duckdb/duckdb#24186; tests/lake/test_rollup_files.py).
_GROW_INSTALLS: Final = f"""MERGE INTO report_installs i USING (
    SELECT d.install_id, d.product_name, min(d.day) AS first_day, max(d.day) AS last_day
    FROM report_days d JOIN ({TOUCHED_ROWS}) t ON d.install_id = t.install_id AND d.day >= t.from_day
    WHERE d.day >= $earliest_day
    GROUP BY GROUPING SETS ((d.install_id, d.product_name), (d.install_id))
) n ON i.install_id = n.install_id AND i.product_name IS NOT DISTINCT FROM n.product_name
WHEN MATCHED THEN UPDATE SET first_day = least(i.first_day, n.first_day), last_day = greatest(i.last_day, n.last_day)
WHEN NOT MATCHED THEN INSERT (install_id, product_name, first_day, last_day)
    VALUES (n.install_id, n.product_name, n.first_day, n.last_day)"""


def _refresh_installs(con: Any, touched: Touched, *, grown: bool) -> None:
    values = parameters(touched)
    if grown:
        run(con, _GROW_INSTALLS, **values)
        return
    delete = f"DELETE FROM report_installs WHERE install_id IN (WITH {TOUCHED} SELECT install_id FROM touched)"
    if values["earliest_day"] <= dt.date(1, 1, 8):  # whole histories (a build): straight from report_days
        run(con, delete, **values)
        run(con, f"INSERT INTO report_installs WITH {TOUCHED} {_ALL_DAYS}", **values)
        return
    rows = run(con, _INSTALL_DAYS, **values).fetchall()
    # No first day: the install has no day left. A first day but no last: its days since $earliest went.
    unclear = sorted({r[0] for r in rows if r[2] is not None and r[3] is None})
    rows = [r for r in rows if r[0] not in unclear and r[2] is not None and r[3] is not None]
    if unclear:
        rows += run(con, _ALL_DAYS, installs=unclear).fetchall()
    run(con, delete, **values)
    if rows:
        run(
            con,
            _PUT_INSTALLS,
            i=[r[0] for r in rows],
            p=[r[1] for r in rows],
            f=[r[2] for r in rows],
            l=[r[3] for r in rows],
        )


def retract(con: Any, touched: Touched, *, closed: dt.date | None = None) -> None:
    """Take back what ``touched`` installs contribute from each one's ``from_day`` on (whole periods).

    Their ``report_installs`` rows stay until :func:`extend`, which reads them. ``closed``: the
    :func:`~collector.reports.groups.open_since` of this transaction, when the caller has it (else it is read).
    """
    if not touched:
        return
    groups.count(con, touched, -1, closed)
    run(
        con,
        f"""DELETE FROM report_periods p USING (WITH {TOUCHED} SELECT * FROM touched) t
        WHERE p.install_id = t.install_id AND p.period >= $earliest
            AND p.period >= CAST(date_trunc(p.period_kind, t.from_day) AS DATE)""",
        **parameters(touched),
    )


def extend(con: Any, touched: Touched, *, grown: bool = False, closed: dt.date | None = None) -> None:
    """Add what ``touched`` installs contribute now (after their ``report_days`` rows changed), from ``from_day``.

    ``grown``: their ``report_days`` rows from ``from_day`` on were only added to or rewritten, never
    removed (as in a refresh), which lets their first and last days be updated in place. ``closed``: as
    for :func:`retract`.
    """
    if not touched:
        return
    run(con, _INSERT_PERIODS, **parameters(touched))
    _refresh_installs(con, touched, grown=grown)
    groups.count(con, touched, 1, closed)
