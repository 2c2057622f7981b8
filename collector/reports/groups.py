"""The group reports' counts: ``report_groups`` for closed periods, the open ones tallied as they are read.

``report_groups`` holds how many installs each group holds per period (day, week, month), as signed
deltas that :func:`compact` sums up from time to time; a report that counts installs per group sums a few
thousand rows. It counts only the periods that end on or before ``report_open.since`` (migration 007):
the later, open ones (the newest days, and the weeks and months that hold them) are tallied from
``report_periods`` and ``report_days`` as a group report reads them (:data:`OPEN_GROUPS`). So folding in
the batches that just arrived counts nothing; a late batch counts what it changes in closed periods
(:func:`count`, called by :mod:`~collector.reports.aggregates`), and the fold that brings a newer day
counts every install's rows of the periods that close with it (:func:`close`). Every function runs in
the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from collector.reports.sql import run, scalar
from collector.reports.touched import GAUGES, TOUCHED, Touched, parameters

__all__ = ["COMPACT_ROWS", "OPEN_DAYS", "OPEN_FLOOR_SQL", "OPEN_GROUPS", "close", "compact", "count", "open_since"]

COMPACT_ROWS: Final = 20_000
"""Delta rows of ``report_groups`` past which a refresh sums them up (a few ms per 10,000 rows)."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scope:
    """The rows one kind of tally reads: SQL fragments of :func:`_tallied`."""

    ctes: str  # CTEs it needs first (with their trailing comma)
    periods: str  # report_periods p: join and WHERE
    days_join: str  # report_days d: join
    days: str  # report_days d: the condition
    several: str  # report_periods' 'day' rows (install-days with several products): the condition


# touched: the touched installs' rows of closed periods ($closed: report_open.since) from each one's
# from_day on. closing: every install's rows of the periods that end in ($open, $closed] ($low: the lowest
# start of such a period). open: every install's rows of open periods; $open_floor is report_open.since
# as read just before (never later than now: it only moves forward), a constant that lets the scans skip
# the row groups of closed periods, while the statement reads the current one in its own snapshot.
_SCOPES: Final = {
    "touched": _Scope(
        ctes=f"{TOUCHED}, ",
        periods="JOIN touched t USING (install_id) WHERE p.period >= $earliest"
        f" AND p.period >= CAST(date_trunc(p.period_kind, t.from_day) AS DATE) AND {_END} <= $closed",
        days_join="JOIN touched t USING (install_id)",
        days="d.day >= $earliest_day AND d.day >= t.from_day AND d.day < $closed",
        several="period >= $earliest_day AND period < $closed",
    ),
    "closing": _Scope(
        ctes="",
        periods=f"WHERE p.period >= $low AND {_END} > $open AND {_END} <= $closed",
        days_join="",
        days="d.day >= $open AND d.day < $closed",
        several="period >= $open AND period < $closed",
    ),
    "open": _Scope(
        ctes="",
        periods="WHERE p.period >= least(CAST(date_trunc('week', $open_floor) AS DATE),"
        f" CAST(date_trunc('month', $open_floor) AS DATE)) AND {_END} > {_OPEN_SINCE}",
        days_join="",
        days=f"d.day >= $open_floor AND d.day >= {_OPEN_SINCE}",
        several=f"period >= $open_floor AND period >= {_OPEN_SINCE}",
    ),
}


def _tallied(scope: str) -> str:
    # What each install in ``scope`` contributes to each period's reports, tallied by everything a group is
    # made of (many installs share one tuple on a day): once per product and once for all products
    # (product_name NULL). Weeks and months come from report_periods. Days come from report_days (one row
    # per product and day), each counted under its product and, with its version named, under all
    # products; but an install-day with several products has its all-products row in report_periods ('day').
    scope_ = _SCOPES[scope]
    return f"""{scope_.ctes}period_tallies AS (
    SELECT p.period_kind, p.period, p.product_name, p.version_label, {_group_parts("p")}, count(*) AS n
    FROM report_periods p {scope_.periods}
    GROUP BY ALL
), day_tallies AS (  -- one scan of report_days, each day tallied once for both of its rows
    SELECT d.day, d.product_name, d.product_version, {_group_parts("d")}, m.install_id IS NULL AS alone,
        count(*) AS n
    FROM report_days d {scope_.days_join}
    LEFT JOIN (SELECT install_id, period FROM report_periods WHERE period_kind = 'day' AND {scope_.several}) m
        ON m.install_id = d.install_id AND m.period = d.day
    WHERE {scope_.days}
    GROUP BY ALL
), tallied AS (
    SELECT * FROM period_tallies
    UNION ALL
    SELECT 'day', day, product_name, product_version, {GAUGES}, n FROM day_tallies
    UNION ALL
    SELECT 'day', day, NULL, product_name || ' ' || product_version, {GAUGES}, n FROM day_tallies WHERE alone
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


def count(con: Any, touched: Touched, sign: int, closed: dt.date | None) -> None:
    """Add what ``touched`` installs contribute to the closed periods, times ``sign`` (-1 takes it back).

    Nothing to count when each one's from_day is on or after ``closed`` (:func:`open_since`, read when
    None): the batches that just arrived.
    """
    values = parameters(touched, sign)
    closed = open_since(con) if closed is None else closed
    if values["earliest_day"] < closed:
        run(con, _COUNT_GROUPS, closed=closed, **values)


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
