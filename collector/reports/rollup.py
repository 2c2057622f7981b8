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
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

from collector.reports import aggregates, groups
from collector.reports.sql import run, scalar

__all__ = [
    "BUILD_SLICE_INSTALLS",
    "PROGRESS_SQL",
    "BuildProgress",
    "build_progress",
    "build_step",
    "expire",
    "forget_install",
    "progress_of",
    "refresh",
]

log = logging.getLogger(__name__)

BUILD_SLICE_INSTALLS: Final = 50_000
"""Installs whose pre-aggregates one :func:`build_step` builds (5-7 s of writer time with 2 DuckDB threads:
a tenth of the 100M-snapshot fleet in bench/reports.py)."""

# The batches not yet folded that arrived since $since (a day before the newest folded arrival on the
# cheap path, or the beginning of time when counts disagree). Every statement of one refresh runs in the
# caller's transaction, so each re-reads the same snapshot: no work table is needed (on a lake, a work
# table's column statistics would keep the ids that passed through it, erasure or not).
_PENDING: Final = """pending AS (
    SELECT batch_id FROM (SELECT batch_id FROM batches WHERE received_at >= $since)
    ANTI JOIN (SELECT batch_id FROM report_batches WHERE received_at >= $since) USING (batch_id)
)"""
# The same batches as found once (_FIND_PENDING) and passed back as a list: on a lake, each scan of the
# day's batches reads every small file committed since the last merge (about a second at 100 batches/s).
_PENDING_LISTED: Final = "pending AS MATERIALIZED (SELECT unnest($pending::UUID[]) AS batch_id)"
_FIND_PENDING: Final = f"""WITH {_PENDING}
SELECT count(*), min(coalesce(first_taken_at, created_at - INTERVAL 32 DAY)), coalesce(sum(snapshot_count), 0),
    CASE WHEN count(*) <= $most THEN list(CAST(batch_id AS VARCHAR)) END,
    CASE WHEN count(*) <= $most THEN list(received_at) END
FROM batches WHERE received_at >= $since AND batch_id IN (SELECT batch_id FROM pending)"""
# Per install and product with new snapshots: the day to rebuild from (the earliest new snapshot's day).
# Snapshots are appended in roughly time order, so the lower bound $bound on taken_at (the new batches'
# earliest snapshot) lets DuckDB skip old row groups.
_NEW_SNAPSHOTS: Final = """WITH {pending}
SELECT install_id, product_name, CAST(min(taken_at) AS DATE) AS from_day, count(*) AS new_snapshots,
    CAST(max(taken_at) AS DATE) AS to_day
FROM snapshots WHERE taken_at >= $bound AND batch_id IN (SELECT batch_id FROM pending)
GROUP BY install_id, product_name"""
# The result of _NEW_SNAPSHOTS, as list parameters (computed once per refresh, in Python); MATERIALIZED for
# the reason given at aggregates._TOUCHED.
_REBUILD: Final = """rebuild AS MATERIALIZED (
    SELECT unnest($r_installs::UUID[]) AS install_id, unnest($r_products::VARCHAR[]) AS product_name,
        unnest($r_froms::DATE[]) AS from_day
)"""

# The last counter reading before from_day: kept in report_days (deployments_last), older days are not
# redone. Looked for in the 3 days before the earliest from_day (installs that report daily; a scan that
# skips every older row group); only the installs that may need more have their whole history read (_OLDER).
_RECENT_BASELINE: Final = """recent_baseline AS (
    SELECT d.install_id, d.product_name, arg_max(d.deployments_last, d.day) AS baseline
    FROM report_days d JOIN rebuild r
        ON d.install_id = r.install_id AND d.product_name = r.product_name AND d.day < r.from_day
    WHERE d.day >= CAST($earliest AS DATE) - 3 AND d.deployments_last IS NOT NULL
    GROUP BY d.install_id, d.product_name
)"""
# Installs silent for longer: rebuilt installs without a recent baseline that may have an older one, i.e.
# held since before the 3 days (report_installs), or not known there yet while a build is in progress (new
# installs have none). Usually there is none, and a hash join with an empty side does not scan report_days.
_OLDER: Final = """
    UNION ALL
    SELECT d.install_id, d.product_name, arg_max(d.deployments_last, d.day)
    FROM report_days d JOIN (
        SELECT l.install_id, l.product_name, l.from_day
        FROM (SELECT * FROM rebuild ANTI JOIN recent_baseline USING (install_id, product_name)) l
        LEFT JOIN report_installs i ON i.install_id = l.install_id AND i.product_name = l.product_name
        WHERE i.first_day < l.from_day - 3 OR (i.first_day IS NULL AND $building)
    ) r ON d.install_id = r.install_id AND d.product_name = r.product_name AND d.day < r.from_day
    WHERE d.deployments_last IS NOT NULL
    GROUP BY d.install_id, d.product_name"""
_INSERT_DAYS: Final = f"""
INSERT INTO report_days (
    install_id, product_name, day, snapshots, product_version, os_family, os_version, cpu_cores, memory_gib,
    disk_total_gib, disk_free_gib, projects, cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings,
    deployments_last
)
WITH {_REBUILD}, {_RECENT_BASELINE}, baseline AS (
    SELECT * FROM recent_baseline{_OLDER}
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
ORDER BY day  -- rows in day order keep each row group's day range narrow: later scans skip old ones
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildProgress:
    """How far the background build of the pre-aggregates has come (``/readyz`` and the report 503 say it)."""

    done: int
    installs: int

    @property
    def percent(self) -> int:
        """Whole percent done (0-100)."""
        return 100 if not self.installs else min(100, self.done * 100 // self.installs)

    def describe(self) -> str:
        """One line for people: how many installs are done, of how many."""
        return f"building the report pre-aggregates: {self.done:,} of {self.installs:,} installs ({self.percent}%)"


PROGRESS_SQL: Final = "SELECT done, installs FROM report_builds WHERE name = 'periods'"
"""The query behind :func:`build_progress` (for a store's read pool: ``progress_of(await store.read(...))``)."""


def progress_of(rows: list[tuple[Any, ...]]) -> BuildProgress | None:
    """The :class:`BuildProgress` in the rows of :data:`PROGRESS_SQL`, or None when there is no build."""
    return BuildProgress(done=int(rows[0][0]), installs=int(rows[0][1])) if rows else None


def build_progress(con: Any) -> BuildProgress | None:
    """The build still to do, or None when the pre-aggregates are complete."""
    return progress_of(con.execute(PROGRESS_SQL).fetchall())


_BUILT_THROUGH: Final = (
    "(SELECT count(*) FROM report_builds WHERE name = 'periods') > 0,"
    " (SELECT done_through FROM report_builds WHERE name = 'periods')"
)


def _built_through(con: Any, row: tuple[Any, ...] | None = None) -> tuple[bool, uuid.UUID | None]:
    # (building, last install built): while building, only installs up to it have pre-aggregates.
    building, through = row or con.execute(f"SELECT {_BUILT_THROUGH}").fetchone()
    return bool(building), (through if through is None or isinstance(through, uuid.UUID) else uuid.UUID(str(through)))


def _with_aggregates(
    con: Any, touched: dict[str, dt.date], state: tuple[bool, uuid.UUID | None] | None = None
) -> aggregates.Touched:
    # During a build, installs past its cursor have no pre-aggregates yet: the build makes them whole later.
    building, through = state or _built_through(con)
    if building:
        return [(i, d) for i, d in touched.items() if through is not None and uuid.UUID(i) <= through]
    return list(touched.items())


def refresh(con: Any) -> int:
    """Fold every loaded batch not yet in ``report_days`` into it; returns how many batches were folded in."""
    # Cheap test first (counts come from metadata): every report request calls this.
    expected = scalar(con, "SELECT (SELECT count(*) FROM batches) - (SELECT count(*) FROM report_batches)")
    if expected == 0:
        return 0
    # One statement for what the rest reads once (each statement costs a few ms to plan).
    since, open_since, *build = con.execute(
        "SELECT (SELECT received_at - INTERVAL 1 DAY FROM report_batches ORDER BY received_at DESC LIMIT 1),"
        f" (SELECT since FROM report_open), {_BUILT_THROUGH}"
    ).fetchone()
    since = since or dt.datetime.min
    pending = _Pending.find(con, since)
    if pending.count != expected:
        # Rare: a batch loaded long after later ones were folded, or report_batches lists batches deleted
        # elsewhere. Compare everything, and drop the stale rows so the cheap test works again.
        con.execute("DELETE FROM report_batches WHERE batch_id NOT IN (SELECT batch_id FROM batches)")
        pending = _Pending.find(con, dt.datetime.min)
    if pending.count:
        rebuild, newest_day = _new_snapshots(con, pending)
        if rebuild:  # empty: the new batches' snapshots were already deleted
            touched: dict[str, dt.date] = {}
            for install_id, _, from_day in rebuild:
                touched[install_id] = min(from_day, touched.get(install_id, from_day))
            state = _built_through(con, tuple(build))  # the build's cursor does not move within a refresh
            aggregated = _with_aggregates(con, touched, state)
            aggregates.retract(con, aggregated, closed=open_since)
            _fold_days(con, rebuild, building=state[0])
            aggregates.extend(con, aggregated, grown=True, closed=open_since)  # snapshots only add days
            if not state[0]:  # during a build, installs past its cursor have no rows to count yet
                groups.close(con, since=open_since, newest_day=newest_day)
            groups.compact(con)
        pending.mark_folded(con)
    return pending.count


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pending:
    """The batches a refresh folds in: how many, and (up to :data:`_LISTED_MOST`) which, found in one scan."""

    since: dt.datetime
    count: int
    bound: dt.datetime | None
    """Their earliest snapshot (``first_taken_at``; 32 days before their creation for batches stored before
    that column existed: 31 days is a batch of 744 hourly snapshots)."""
    snapshots: int
    ids: list[str] | None
    """Their ids, None past :data:`_LISTED_MOST` (a fold from scratch: the statements then find them again)."""
    received: list[dt.datetime] | None

    @classmethod
    def find(cls, con: Any, since: dt.datetime) -> _Pending:
        count, bound, snapshots, ids, received = run(con, _FIND_PENDING, since=since, most=_LISTED_MOST).fetchone()
        return cls(since=since, count=int(count), bound=bound, snapshots=int(snapshots), ids=ids, received=received)

    def mark_folded(self, con: Any) -> None:
        """List these batches in ``report_batches`` (from the list when there is one: no second scan)."""
        if self.ids is None:
            run(
                con,
                f"""INSERT INTO report_batches WITH {_PENDING} SELECT batch_id, received_at FROM batches
                WHERE received_at >= $since AND batch_id IN (SELECT batch_id FROM pending)""",
                since=self.since,
            )
        else:
            run(
                con,
                "INSERT INTO report_batches SELECT unnest($ids::UUID[]), unnest($received::TIMESTAMP[])",
                ids=self.ids,
                received=self.received,
            )

    def statement(self, sql: str) -> tuple[str, dict[str, Any]]:
        """``sql`` with its ``{pending}`` CTE, and the values that CTE takes."""
        if self.ids is None:
            return sql.replace("{pending}", _PENDING), {"since": self.since}
        return sql.replace("{pending}", _PENDING_LISTED), {"pending": self.ids}


_LISTED_MOST: Final = 100_000
"""Pending batches passed back to the statements as a list (4 MB of JSON); more are found again by each."""


def _new_snapshots(con: Any, pending: _Pending) -> tuple[list[tuple[str, str, dt.date]], dt.date]:
    """``(install_id, product_name, from_day)`` of every install and product the pending batches touch,
    and the newest day of their snapshots (``date.min`` without any).

    Read from the batches' earliest snapshot on (:attr:`_Pending.bound`). When that misses snapshots
    (counted against ``snapshot_count``), every snapshot is scanned.
    """
    sql, values = pending.statement(_NEW_SNAPSHOTS)
    rows = run(con, sql, bound=pending.bound or dt.datetime.min, **values).fetchall()
    if sum(r[3] for r in rows) != pending.snapshots and pending.bound is not None:
        rows = run(con, sql, bound=dt.datetime.min, **values).fetchall()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows], max((r[4] for r in rows), default=dt.date.min)


def _fold_days(con: Any, rebuild: list[tuple[str, str, dt.date]], *, building: bool) -> None:
    values = {
        "r_installs": [r[0] for r in rebuild],
        "r_products": [r[1] for r in rebuild],
        "r_froms": [r[2] for r in rebuild],
    }
    run(
        con,
        f"""DELETE FROM report_days d USING (WITH {_REBUILD} SELECT * FROM rebuild) r
        WHERE d.install_id = r.install_id AND d.product_name = r.product_name AND d.day >= r.from_day""",
        **values,
    )
    earliest = dt.datetime.combine(min(r[2] for r in rebuild), dt.time())
    run(con, _INSERT_DAYS, earliest=earliest, building=building, **values)


def build_step(con: Any, *, installs: int = BUILD_SLICE_INSTALLS) -> BuildProgress | None:
    """Build the pre-aggregates of the next ``installs`` installs (by id) of a pending build.

    Returns the progress after the step (``done == installs`` when the build just finished), or None when
    there was nothing to build. Batches folded meanwhile are safe: :func:`refresh` leaves the installs
    past the cursor to the build, which reads their ``report_days`` as they are when it reaches them.
    """
    progress = build_progress(con)
    if progress is None:
        return None
    _, through = _built_through(con)
    upper = _slice_end(through, progress, installs)
    ids = _next_installs(con, through, upper, installs)
    if not ids and upper is not None:  # ids not spread evenly: nothing in the range, look past it
        ids = _next_installs(con, through, None, installs)
    if not ids:
        con.execute("DELETE FROM report_builds WHERE name = 'periods'")
        groups.compact(con, force=True)
        done = BuildProgress(done=progress.installs, installs=progress.installs)
        log.info("report pre-aggregates built: %s installs", f"{done.installs:,}")
        return done
    aggregates.extend(con, [(str(i), dt.date.min) for i in ids])
    con.execute(
        "UPDATE report_builds SET done_through = ?, done = done + ? WHERE name = 'periods'", [ids[-1], len(ids)]
    )
    now = BuildProgress(done=min(progress.installs, progress.done + len(ids)), installs=progress.installs)
    log.info("%s", now.describe())
    return now


def _slice_end(through: uuid.UUID | None, progress: BuildProgress, installs: int) -> uuid.UUID | None:
    # The id below which about 5/4 x ``installs`` of the installs left lie if their ids are spread evenly
    # (random UUIDs are), so that the step's query only groups their rows: ordering every remaining
    # install's rows took 0.6-0.9 s of each 50,000-install step over 17M install-days. None: to the end.
    left = progress.installs - progress.done
    if left <= installs:
        return None
    start = through.int if through is not None else 0
    end = start + ((1 << 128) - start) * installs * 5 // (left * 4)
    return uuid.UUID(int=end) if end < (1 << 128) - 1 else None


def _next_installs(con: Any, through: uuid.UUID | None, upper: uuid.UUID | None, installs: int) -> list[Any]:
    # The next ``installs`` install ids after ``through`` (at most ``upper``), in id order.
    bounds = [(c, v) for c, v in (("install_id > ?::UUID", through), ("install_id <= ?::UUID", upper)) if v]
    where = " AND ".join(["TRUE", *(c for c, _ in bounds)])
    sql = f"SELECT DISTINCT install_id FROM report_days WHERE {where} ORDER BY install_id LIMIT ?"
    return [row[0] for row in con.execute(sql, [*(v for _, v in bounds), installs]).fetchall()]


def forget_install(con: Any, install_id: str) -> None:
    """Remove the install's rollup rows; call before its ``batches`` rows are deleted."""
    aggregates.retract(con, _with_aggregates(con, {install_id: dt.date.min}))
    for table in ("report_periods", "report_installs"):  # rows a build had not counted yet, if any
        con.execute(f"DELETE FROM {table} WHERE install_id = ?", [install_id])  # table names are ours
    con.execute(
        "DELETE FROM report_batches WHERE batch_id IN (SELECT batch_id FROM batches WHERE install_id = ?)",
        [install_id],
    )
    con.execute("DELETE FROM report_days WHERE install_id = ?", [install_id])


def expire(con: Any, cutoff: dt.date) -> None:
    """Remove rollup rows for days before ``cutoff``; call before ``batches`` created before it are deleted.

    Whole periods before the cutoff go; a week or month that straddles it keeps what its days from the
    cutoff on say, as if the earlier days had never been sent (which is what the reports of the raw
    rows would say once they are deleted).
    """
    start = min(cutoff - dt.timedelta(days=cutoff.weekday()), cutoff.replace(day=1))
    straddling = {
        str(r[0]): start
        for r in con.execute(
            "SELECT DISTINCT install_id FROM report_days WHERE day >= ? AND day < ?", [start, cutoff]
        ).fetchall()
    }
    aggregated = _with_aggregates(con, straddling)
    aggregates.retract(con, aggregated)
    con.execute(
        "DELETE FROM report_batches WHERE batch_id IN (SELECT batch_id FROM batches WHERE created_at < ?)",
        [dt.datetime.combine(cutoff, dt.time())],
    )
    con.execute("DELETE FROM report_days WHERE day < ?", [cutoff])
    for table in ("report_periods", "report_groups"):
        con.execute(f"DELETE FROM {table} WHERE period < CAST(date_trunc(period_kind, ?::DATE) AS DATE)", [cutoff])
    aggregates.extend(con, aggregated)
    # First days before the cutoff move to the install's first day left (or the install goes).
    con.execute(
        """UPDATE report_installs i SET first_day = f.first_day FROM (
            SELECT install_id, product_name, min(day) AS first_day FROM report_days
            WHERE install_id IN (SELECT install_id FROM report_installs WHERE first_day < ?)
            GROUP BY GROUPING SETS ((install_id, product_name), (install_id))
        ) f WHERE i.install_id = f.install_id AND i.product_name IS NOT DISTINCT FROM f.product_name
            AND i.first_day < ?""",
        [cutoff, cutoff],
    )
    con.execute("DELETE FROM report_installs WHERE last_day < ?", [cutoff])
    groups.compact(con)
