"""The pre-aggregates over ``report_days``: per install and period, per install, and per group.

``report_days`` holds one row per install, product and day; a weekly report over six months of a
500,000-install fleet would still group 17M of them. So three tables are kept beside it (created by
``006_report_periods.sql``):

- ``report_periods``: per install and week or month, each value as the install's last reading in the
  period and the sums of its days, exactly as the reports' definitions take them from ``report_days``;
  once per product and once for the install's products together (``product_name`` NULL).
- ``report_installs``: each install's first and last day (new and lost installs).
- ``report_groups``: how many installs each group holds per period (day, week, month), kept as signed
  deltas; a report that counts installs per group sums a few thousand rows.

All three follow ``report_days`` by install: :func:`retract` takes back what a set of installs
contributes from some day on (their rows go, their counts are subtracted), the caller changes their
``report_days`` rows, and :func:`extend` puts back what they contribute now. Each install's rows are
therefore always a function of its ``report_days`` rows, whatever the order batches arrived in. Every
function runs in the caller's transaction (the writer's, or the lake's under the rollup lock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from collector.reports.sql import run, scalar

__all__ = [
    "COMPACT_ROWS",
    "OPEN_DAYS",
    "OPEN_FLOOR_SQL",
    "OPEN_GROUPS",
    "Touched",
    "close",
    "compact",
    "extend",
    "open_since",
    "retract",
]

Touched = Sequence[tuple[str, dt.date]]
"""``(install_id, from_day)`` pairs: the installs whose ``report_days`` change from ``from_day`` on."""

COMPACT_ROWS: Final = 20_000
"""Delta rows of ``report_groups`` past which a refresh sums them up (a few ms per 10,000 rows)."""

# The touched installs, from list parameters (no work table: on a lake its statistics would keep ids).
# $earliest is the lowest period start any of them needs, as a constant so that scans skip old row groups.
# MATERIALIZED: otherwise the optimizer copies the 1,000-element list constants into every reference and
# works through each copy (a refresh's optimizer time went from about 50 ms to 37 ms with this).
_TOUCHED: Final = """touched AS MATERIALIZED (
    SELECT unnest($installs::UUID[]) AS install_id, unnest($froms::DATE[]) AS from_day
)"""
_GAUGES: Final = "os_family, os_version, cpu_cores, memory_gib, disk_total_gib, disk_free_gib"

_HARDWARE: Final = ("cpu_cores", "memory_gib", "disk_total_gib", "disk_free_gib")


def _bucket(amount: str) -> str:
    # The hardware report's power-of-two bucket (NULL stays NULL: such a group is not counted). A shift,
    # not pow(): half the time over the millions of rows a build tallies (log2 of a power of two is exact).
    return f"CASE WHEN {amount} <= 1 THEN 1 ELSE 1::BIGINT << CAST(ceil(log2({amount})) AS INTEGER) END"


def _group_parts(table: str) -> str:
    # What a group is made of, from rows of ``table`` (an alias): labels as they are, hardware in buckets.
    hardware = ", ".join(f"{_bucket(f'{table}.{h}')} AS {h}" for h in _HARDWARE)
    return f"{table}.os_family, {table}.os_version, {hardware}"


# report_groups counts the periods that end on or before report_open.since ("closed"); the later ones
# ("open": the newest days, and the weeks and months that hold them) are tallied from report_periods and
# report_days when a report reads them (OPEN_GROUPS). So the refresh of the batches that just arrived,
# which only touch open periods, counts nothing; a late batch counts what it changes in closed periods.
OPEN_DAYS: Final = 3
"""The newest days of data (the newest day in the batches folded in, and the two before it) whose periods
stay open: batches of those days fold in without recounting groups."""

_END: Final = (
    "CAST(p.period + CASE p.period_kind WHEN 'week' THEN INTERVAL 7 DAY WHEN 'month' THEN INTERVAL 1 MONTH"
    " ELSE INTERVAL 1 DAY END AS DATE)"
)
"""The first day after a report_periods row's period."""
_OPEN_SINCE: Final = "(SELECT since FROM report_open)"
# The rows each tally reads, by scope: (CTEs before, report_periods join and filter, report_days join,
# report_days filter, the filter of report_periods' 'day' rows). touched: the touched installs' rows of closed periods from each one's
# from_day on ($closed: report_open.since). closing: every install's rows of the periods that end in
# ($open, $closed] ($low: the lowest start of such a period). open: every install's rows of open periods.
_SCOPES: Final = {
    "touched": (
        f"{_TOUCHED}, ",
        "JOIN touched t USING (install_id) WHERE p.period >= $earliest"
        f" AND p.period >= CAST(date_trunc(p.period_kind, t.from_day) AS DATE) AND {_END} <= $closed",
        "JOIN touched t USING (install_id)",
        "d.day >= $earliest_day AND d.day >= t.from_day AND d.day < $closed",
        "period >= $earliest_day AND period < $closed",
    ),
    "closing": (
        "",
        f"WHERE p.period >= $low AND {_END} > $open AND {_END} <= $closed",
        "",
        "d.day >= $open AND d.day < $closed",
        "period >= $open AND period < $closed",
    ),
    # $open_floor: report_open.since as read just before (never later than now: it only moves forward),
    # a constant that lets the scans skip the row groups of closed periods.
    "open": (
        "",
        "WHERE p.period >= least(CAST(date_trunc('week', $open_floor) AS DATE),"
        f" CAST(date_trunc('month', $open_floor) AS DATE)) AND {_END} > {_OPEN_SINCE}",
        "",
        f"d.day >= $open_floor AND d.day >= {_OPEN_SINCE}",
        f"period >= $open_floor AND period >= {_OPEN_SINCE}",
    ),
}


def _tallied(scope: str) -> str:
    # What each install in ``scope`` contributes to each period's reports, tallied by everything a group is
    # made of (many installs share one tuple on a day): once per product and once for all products
    # (product_name NULL). Weeks and months come from report_periods. Days come from report_days (one row
    # per product and day), each counted under its product and, with its version named, under all
    # products; but an install-day with several products has its all-products row in report_periods ('day').
    before, periods, days_join, days, multi = _SCOPES[scope]
    return f"""{before}period_tallies AS (
    SELECT p.period_kind, p.period, p.product_name, p.version_label, {_group_parts("p")}, count(*) AS n
    FROM report_periods p {periods}
    GROUP BY ALL
), day_tallies AS (  -- one scan of report_days, each day tallied once for both of its rows
    SELECT d.day, d.product_name, d.product_version, {_group_parts("d")}, m.install_id IS NULL AS alone,
        count(*) AS n
    FROM report_days d {days_join}
    LEFT JOIN (SELECT install_id, period FROM report_periods WHERE period_kind = 'day' AND {multi}) m
        ON m.install_id = d.install_id AND m.period = d.day
    WHERE {days}
    GROUP BY ALL
), tallied AS (
    SELECT * FROM period_tallies
    UNION ALL
    SELECT 'day', day, product_name, product_version, {_GAUGES}, n FROM day_tallies
    UNION ALL
    SELECT 'day', day, NULL, product_name || ' ' || product_version, {_GAUGES}, n FROM day_tallies WHERE alone
)"""


# The groups each tally counts in, per report (the catalogue's group reports read them): each tally becomes
# its row in every report at once (one unnest; a group with a NULL label is not counted), which measured
# 5-8 ms less a refresh than one UNION branch per report.
_HARDWARE_GROUPS: Final = ", ".join(f"{{'r': 'hardware', 'd': '{h}', 'l': CAST({h} AS VARCHAR)}}" for h in _HARDWARE)


def _groups(scope: str) -> str:
    # The CTEs up to ``grouped``, and the columns of report_groups (the sign is $sign), for ``scope``.
    return f"""WITH {_tallied(scope)}, grouped AS (
    SELECT period_kind, period, product_name, n, unnest([
        {{'r': 'active-installs', 'd': '', 'l': ''}}, {{'r': 'versions', 'd': '', 'l': version_label}},
        {{'r': 'os-families', 'd': '', 'l': os_family}}, {{'r': 'os-versions', 'd': '', 'l': os_version}},
        {_HARDWARE_GROUPS}
    ]) AS g
    FROM tallied
)
SELECT period_kind, period, product_name, g.r AS report, g.d AS dimension, g.l AS label, {{sign}}sum(n) AS installs
FROM grouped WHERE g.l IS NOT NULL GROUP BY period_kind, period, product_name, g.r, g.d, g.l"""


_COUNT_GROUPS: Final = (
    f"INSERT INTO report_groups SELECT 0, * FROM ({_groups('touched').replace('{sign}', '$sign * ')})"
)
_CLOSE_GROUPS: Final = f"INSERT INTO report_groups SELECT 0, * FROM ({_groups('closing').replace('{sign}', '')})"
OPEN_GROUPS: Final = _groups("open").replace("{sign}", "")
"""The rows report_groups would hold for the open periods (same columns but ``generation``): the group
reports read them beside report_groups. ``$open_floor``: ``report_open.since`` read before (see
:data:`OPEN_FLOOR_SQL`); the statement itself reads the current one, in its own snapshot."""
OPEN_FLOOR_SQL: Final = f"SELECT {_OPEN_SINCE}"
"""The value of ``$open_floor`` for :data:`OPEN_GROUPS`."""

_SUMMED_COLUMNS: Final = ("cpu_pct_sum", "cpu_pct_count", "deployments_delta", "deployment_readings")


def _readings(table: str, by: str) -> str:
    # A period's columns from the rows of ``table`` (an alias) grouped into it, in report_periods' order:
    # each gauge's and the projects' last reading (latest ``by``), and the sums of its days.
    last = ", ".join(f"arg_max({table}.{c}, {table}.{by}) AS {c}" for c in (*_GAUGES.split(", "), "projects"))
    return f"{last}, " + ", ".join(f"sum({table}.{c}) AS {c}" for c in _SUMMED_COLUMNS)


# Weeks and months from their first day on (whole periods), per product and for all products together;
# and the all-products row of each install-day that has several products. Each product's days are first
# grouped by week and month together (a week across a month's end is two fragments); its weeks and its
# months are then grouped from those: half the rows of grouping every day once per kind (the one heavy
# step of a build). A period's last reading is its latest fragment's: one product's fragments share no
# day, and arg_max skips NULLs at both steps. An install with one product in a period (nearly all) has
# the same all-products row but for the version label, so it is copied from the per-product row; the
# rare installs with several products have theirs grouped from their days.
_PERIOD_OF: Final = "CASE k.period_kind WHEN 'week' THEN f.week ELSE f.month END"
_INSERT_PERIODS: Final = f"""INSERT INTO report_periods
WITH {_TOUCHED}, touched_days AS MATERIALIZED (  -- one scan of report_days
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
), shared_days AS (  -- the days of the installs with several products in some period
    SELECT k.period_kind, CAST(date_trunc(k.period_kind, d.day) AS DATE) AS period, d.*
    FROM touched_days d CROSS JOIN (VALUES ('week'), ('month')) k(period_kind)
    WHERE d.install_id IN (SELECT install_id FROM shared) AND d.day >= CAST(date_trunc(k.period_kind, d.from_day) AS DATE)
)
SELECT * FROM (
SELECT period_kind, period, install_id, product_name, last_day, version_label, {_GAUGES}, projects,
    cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings
FROM per_product
UNION ALL
SELECT period_kind, period, install_id, NULL, last_day, product_name || ' ' || version_label, {_GAUGES}, projects,
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
FROM touched_days d SEMI JOIN (  -- the rare install-days with several products (their week has several)
    SELECT day, install_id FROM touched_days
    WHERE install_id IN (SELECT install_id FROM shared WHERE period_kind = 'week')
        AND day >= $earliest_day AND day >= from_day
    GROUP BY day, install_id HAVING count(*) > 1
) USING (day, install_id)
GROUP BY d.day, d.install_id
) ORDER BY period  -- in period order, for the same reason as report_days"""
# Each touched install's first and last day, from its days since $earliest_day (the earliest from_day: days
# before it are unchanged by the caller) and the row held: a first day before it stands; the last day is the
# latest day since it, else the one held if older. Rows that cannot be told this way (every day since
# $earliest_day gone while the held last day is later) are recomputed from all of the install's days.
_INSTALL_DAYS: Final = f"""WITH {_TOUCHED}, recent AS (
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
_GROW_INSTALLS: Final = f"""MERGE INTO report_installs i USING (
    WITH {_TOUCHED}
    SELECT d.install_id, d.product_name, min(d.day) AS first_day, max(d.day) AS last_day
    FROM report_days d JOIN touched t ON d.install_id = t.install_id AND d.day >= t.from_day
    WHERE d.day >= $earliest_day
    GROUP BY GROUPING SETS ((d.install_id, d.product_name), (d.install_id))
) n ON i.install_id = n.install_id AND i.product_name IS NOT DISTINCT FROM n.product_name
WHEN MATCHED THEN UPDATE SET first_day = least(i.first_day, n.first_day), last_day = greatest(i.last_day, n.last_day)
WHEN NOT MATCHED THEN INSERT (install_id, product_name, first_day, last_day)
    VALUES (n.install_id, n.product_name, n.first_day, n.last_day)"""


def _refresh_installs(con: Any, touched: Touched, *, grown: bool) -> None:
    values = _values(touched)
    if grown:
        run(con, _GROW_INSTALLS, **values)
        return
    delete = f"DELETE FROM report_installs WHERE install_id IN (WITH {_TOUCHED} SELECT install_id FROM touched)"
    if values["earliest_day"] <= dt.date(1, 1, 8):  # whole histories (a build): straight from report_days
        run(con, delete, **values)
        run(con, f"INSERT INTO report_installs WITH {_TOUCHED} {_ALL_DAYS}", **values)
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


def _values(touched: Touched, sign: int | None = None) -> dict[str, Any]:
    froms = [day for _, day in touched]
    # The lowest start of a week or a month holding a from_day (a week can begin in the previous month).
    first = min(froms)
    earliest = (
        first if first < dt.date(1, 1, 8) else min(first - dt.timedelta(days=first.weekday()), first.replace(day=1))
    )
    values: dict[str, Any] = {
        "installs": [i for i, _ in touched],
        "froms": froms,
        "earliest": earliest,
        "earliest_day": first,
    }
    if sign is not None:
        values["sign"] = sign
    return values


def open_since(con: Any) -> dt.date:
    """``report_open.since``: report_groups counts the periods that end by it; later ones are open."""
    since = scalar(con, OPEN_FLOOR_SQL)
    return since if isinstance(since, dt.date) else dt.date.fromisoformat(str(since))


def close(con: Any, *, since: dt.date, newest_day: dt.date) -> dt.date:
    """Count the periods that end by the first of the :data:`OPEN_DAYS` up to ``newest_day``, when that is
    after ``since`` (``report_open.since``); returns ``report_open.since`` as it is now.

    Runs when a fold brings a newer day than any before: about once a day, it counts every install's
    rows of the day, week or month that closes (a few hundred ms for a month of 500,000 installs).
    """
    closed = newest_day - dt.timedelta(days=OPEN_DAYS - 1)
    if closed <= since:
        return since
    low = min(since - dt.timedelta(days=since.weekday()), since.replace(day=1))
    run(con, _CLOSE_GROUPS, low=low, open=since, closed=closed)
    con.execute("UPDATE report_open SET since = ?", [closed])
    return closed


def _count(con: Any, touched: Touched, sign: int, closed: dt.date | None) -> None:
    # What ``touched`` installs contribute to the closed periods, times ``sign``: nothing to count when
    # each one's from_day is on or after ``closed`` (the batches that just arrived).
    values = _values(touched, sign)
    closed = open_since(con) if closed is None else closed
    if values["earliest_day"] < closed:
        run(con, _COUNT_GROUPS, closed=closed, **values)


def retract(con: Any, touched: Touched, *, closed: dt.date | None = None) -> None:
    """Take back what ``touched`` installs contribute from each one's ``from_day`` on (whole periods).

    Their ``report_installs`` rows stay until :func:`extend`, which reads them. ``closed``: the
    :func:`open_since` of this transaction, when the caller has it (else it is read).
    """
    if not touched:
        return
    _count(con, touched, -1, closed)
    run(
        con,
        f"""DELETE FROM report_periods p USING (WITH {_TOUCHED} SELECT * FROM touched) t
        WHERE p.install_id = t.install_id AND p.period >= $earliest
            AND p.period >= CAST(date_trunc(p.period_kind, t.from_day) AS DATE)""",
        **_values(touched),
    )


def extend(con: Any, touched: Touched, *, grown: bool = False, closed: dt.date | None = None) -> None:
    """Add what ``touched`` installs contribute now (after their ``report_days`` rows changed), from ``from_day``.

    ``grown``: their ``report_days`` rows from ``from_day`` on were only added to or rewritten, never
    removed (as in a refresh), which lets their first and last days be updated in place. ``closed``: as
    for :func:`retract`.
    """
    if not touched:
        return
    run(con, _INSERT_PERIODS, **_values(touched))
    _refresh_installs(con, touched, grown=grown)
    _count(con, touched, 1, closed)


def compact(con: Any, *, force: bool = False) -> bool:
    """Sum ``report_groups`` up when its deltas pass :data:`COMPACT_ROWS` (or ``force``); True when it did."""
    deltas = scalar(con, "SELECT count(*) FROM report_groups WHERE generation = 0")
    if not deltas or (deltas < COMPACT_ROWS and not force):
        return False
    generation = scalar(con, "SELECT coalesce(max(generation), 0) FROM report_groups")
    con.execute(
        """INSERT INTO report_groups
        SELECT ? + 1, period_kind, period, product_name, report, dimension, label, sum(installs)
        FROM report_groups WHERE generation <= ?
        GROUP BY period_kind, period, product_name, report, dimension, label HAVING sum(installs) <> 0""",
        [generation, generation],
    )
    con.execute("DELETE FROM report_groups WHERE generation <= ?", [generation])
    return True
