"""The report pre-aggregates: folded incrementally, in any order, with late batches, erasures and retention,
they equal the definitions computed from the raw snapshots, and every report answers as after a fresh build."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import random
from typing import Any, Final

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from collector.errors import NotFoundError
from collector.reports import INTERVALS, REPORTS, ReportParams, run_report
from collector.reports import groups as group_counts
from collector.reports import rollup as reports_rollup
from collector.storage.migrations import migrate
from collector.storage.retention import purge
from collector.storage.subjects import erase_install
from tests.analytics.fleet import Install, batches, make_fleet
from tests.analytics.test_rollup import _insert

_FLEET = make_fleet()


def _two_products(install: Install) -> list[Install]:
    """The install as two products on alternate days (a product renamed back and forth): periods that hold
    both, so the all-products rows are aggregated over them (no day has both: a day-level rollup cannot tell
    which of two same-day readings is the later, and the raw definitions can)."""
    on = {d: [s for s in install.snapshots if s[0].day % 2 == d] for d in (0, 1)}
    return [
        dataclasses.replace(install, snapshots=on[0]),
        dataclasses.replace(install, product="buildfarm", snapshots=on[1]),
    ]


_SENDS = [body for install in (*_FLEET[2:9], *_two_products(_FLEET[9])) for body in batches(install)]
_TODAY = dt.date(2026, 7, 1)

# The definitions, from the raw snapshots (written apart from collector/reports/*.py): per install and
# week or month, each value's last reading, the sums, and the counter's increases between consecutive
# readings of one install and product (a drop is a reset; the first reading ever counts nothing).
_RAW_PERIODS = """
WITH s AS (
    SELECT *, CAST(taken_at AS DATE) AS day, last_value(usage_deployments IGNORE NULLS) OVER (
        PARTITION BY install_id, product_name ORDER BY taken_at, batch_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev
    FROM snapshots
), d AS (
    SELECT *, CASE WHEN usage_deployments IS NULL OR prev IS NULL THEN 0 WHEN usage_deployments >= prev
        THEN usage_deployments - prev ELSE usage_deployments END AS delta
    FROM s
), k AS (SELECT *, CAST(date_trunc(kind, day) AS DATE) AS period FROM d, (VALUES ('week'), ('month')) v(kind))
SELECT kind, period, CAST(install_id AS VARCHAR), product_name, max(day),
    CASE WHEN grouping(product_name) = 0 THEN arg_max(product_version, taken_at)
        ELSE arg_max(product_name || ' ' || product_version, taken_at) END,
    arg_max(os_family, taken_at), arg_max(os_version, taken_at), arg_max(host_cpu_logical_cores, taken_at),
    arg_max(host_memory_total_gib, taken_at), arg_max(host_disk_total_gib, taken_at),
    arg_max(host_disk_free_gib, taken_at), arg_max(usage_projects, taken_at), coalesce(sum(host_cpu_usage_pct), 0),
    count(host_cpu_usage_pct), sum(delta), count(usage_deployments)
FROM k GROUP BY GROUPING SETS ((kind, period, install_id, product_name), (kind, period, install_id))
"""
_RAW_INSTALLS = """SELECT CAST(install_id AS VARCHAR), product_name, min(CAST(taken_at AS DATE)),
    max(CAST(taken_at AS DATE)) FROM snapshots GROUP BY GROUPING SETS ((install_id, product_name), (install_id))"""


def _held_periods(con: Any) -> list[tuple[Any, ...]]:
    rows = con.execute("""SELECT period_kind, period, CAST(install_id AS VARCHAR), product_name, last_day,
        version_label, os_family, os_version, cpu_cores, memory_gib, disk_total_gib, disk_free_gib, projects,
        cpu_pct_sum, cpu_pct_count, deployments_delta, deployment_readings FROM report_periods""").fetchall()
    return sorted(rows, key=str)


def _tables(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    # The groups as the reports see them: counted (closed periods) and tallied as read (open ones).
    groups = con.execute(
        f"""SELECT period_kind, period, product_name, report, dimension, label, sum(installs)
        FROM (SELECT * EXCLUDE (generation) FROM report_groups UNION ALL SELECT * FROM ({group_counts.OPEN_GROUPS}))
        GROUP BY ALL HAVING sum(installs) <> 0""".replace("$open_floor", "DATE '0001-01-01'")
    ).fetchall()
    installs = con.execute(
        "SELECT CAST(install_id AS VARCHAR), product_name, first_day, last_day FROM report_installs"
    ).fetchall()
    return {
        "periods": _held_periods(con),
        "installs": sorted(installs, key=str),
        "groups": sorted(groups, key=str),
    }


def _answers(con: Any) -> dict[str, Any]:
    async def fetch(sql: str, values: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = con.execute(sql, values).fetchall()
        return rows

    out: dict[str, Any] = {}
    for name in REPORTS:
        for interval in INTERVALS:
            for product in (None, "deployserver", "buildfarm"):
                params = ReportParams(
                    date_from=dt.date(2026, 5, 1), date_to=dt.date(2026, 6, 30), interval=interval, product=product
                )
                try:
                    result = asyncio.run(
                        run_report(name, params, fetch=fetch, min_group_size=1, lost_after_days=30, today=_TODAY)
                    )
                except NotFoundError as exc:  # a product whose installs were all erased or expired
                    out[f"{name} {interval} {product}"] = exc.message
                else:
                    out[f"{name} {interval} {product}"] = result.rows
    return out


def _rebuilt(con: Any, *, from_days: bool) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    """The tables and every report after a build from scratch (rolled back after): of the same raw rows, or
    ``from_days``, of the pre-aggregates alone from the same ``report_days``."""
    con.execute("BEGIN")
    kept = ("report_periods", "report_installs", "report_groups")
    for table in kept if from_days else ("report_days", "report_batches", *kept):
        con.execute(f"DELETE FROM {table}")
    if not from_days:  # every period open at first, as in a new database: the fold closes them
        con.execute("UPDATE report_open SET since = DATE '0001-01-01'")
    if from_days:
        con.execute("INSERT INTO report_builds SELECT 'periods', NULL, 0, count(DISTINCT install_id) FROM report_days")
        while reports_rollup.build_step(con) is not None:
            pass
    else:
        reports_rollup.refresh(con)
    group_counts.compact(con, force=True)
    found = _tables(con), _answers(con)
    con.execute("ROLLBACK")
    return found


# Each example folds ~300 batches and asks 90 reports twice (about 2 s): no shrinking, which would take minutes.
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    seed=st.integers(0, 10_000),
    refresh_every=st.integers(1, 12),
    late_every=st.integers(0, 6),
    erase=st.booleans(),
    retention=st.booleans(),
)
def test_incremental_pre_aggregates_equal_the_definitions(
    seed: int, refresh_every: int, late_every: int, erase: bool, retention: bool
) -> None:
    """Any order of arrival and refresh, late batches, an erasure and a retention pass leave the same tables."""
    con = duckdb.connect()
    migrate(con, checkpoint=False)
    sends = list(_SENDS)
    random.Random(seed).shuffle(sends)
    arrival = dt.datetime(2026, 6, 20)
    for n, body in enumerate(sends):
        late = late_every and n % (late_every + 1) == late_every
        _insert(con, body, arrival - dt.timedelta(days=10) if late else arrival + dt.timedelta(hours=n))
        if n % refresh_every == 0:
            con.execute("BEGIN")
            reports_rollup.refresh(con)
            con.execute("COMMIT")
    if erase:
        con.execute("BEGIN")
        erase_install(con, _FLEET[3].install_id)
        con.execute("COMMIT")
    if retention:
        con.execute("BEGIN")
        reports_rollup.refresh(con)
        purge(con, dt.date(2026, 5, 20))  # a Wednesday, mid-month: weeks and a month straddle it
        con.execute("COMMIT")
    con.execute("BEGIN")
    reports_rollup.refresh(con)
    con.execute("COMMIT")
    held, answers = _tables(con), _answers(con)
    # Retention keeps the counter's baseline from before the cutoff (report_days holds it), which the raw rows
    # no longer hold: after it, the pre-aggregates are compared with a build from those report_days.
    if not retention:
        assert held["periods"] == sorted(con.execute(_RAW_PERIODS).fetchall(), key=str)
    assert held["installs"] == sorted(con.execute(_RAW_INSTALLS).fetchall(), key=str)
    assert (held, answers) == _rebuilt(con, from_days=retention)
    con.close()


# Install ids as agents make them (random), or all crowded at the top of the id range: a build step looks
# for its slice in the range where evenly spread ids would lie, and past it when that range is empty.
_CROWDED: Final = "CAST('ffffffff-ffff-ffff-' || right(CAST(install_id AS VARCHAR), 17) AS UUID)"


@pytest.mark.parametrize("ids", ["random", "crowded"])
def test_a_build_in_slices_equals_folding_as_batches_arrive(tmp_path: Any, ids: str) -> None:
    """A database that held report_days before the pre-aggregates existed builds them in slices, with progress."""
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    migrate(con, checkpoint=False)
    for n, body in enumerate(_SENDS):
        _insert(con, body, dt.datetime(2026, 6, 20) + dt.timedelta(hours=n))
    if ids == "crowded":
        for table in ("snapshots", "batches"):
            con.execute(f"UPDATE {table} SET install_id = {_CROWDED}")
    con.execute("BEGIN")
    reports_rollup.refresh(con)
    con.execute("COMMIT")
    expected = _tables(con)
    # As migration 006 finds an older database: report_days held, nothing else built yet.
    for table in ("report_periods", "report_installs", "report_groups"):
        con.execute(f"DELETE FROM {table}")
    con.execute("INSERT INTO report_builds SELECT 'periods', NULL, 0, count(DISTINCT install_id) FROM report_days")
    steps = []
    while (progress := reports_rollup.build_step(con, installs=3)) is not None:
        steps.append((progress.done, progress.installs))
    total = len({i.install_id for i in _FLEET[2:10]})  # the two products of _FLEET[9] are one install
    assert steps[-1] == (total, total)
    done = [0, *(d for d, _ in steps)]
    assert all(1 <= b - a <= 3 for a, b in itertools.pairwise(done[:-1]))  # slices of 1 to 3, in order
    assert done[-2:] == [total, total]  # the last step only ends the build
    assert reports_rollup.build_progress(con) is None
    assert _tables(con) == expected
    con.close()


def _fold(con: Any) -> None:
    con.execute("BEGIN")
    reports_rollup.refresh(con)
    con.execute("COMMIT")


def _folded() -> Any:
    con = duckdb.connect()
    migrate(con, checkpoint=False)
    for n, body in enumerate(_SENDS):
        _insert(con, body, dt.datetime(2026, 6, 20) + dt.timedelta(hours=n))
    _fold(con)
    return con


def _send_on_the_newest_day(con: Any) -> None:
    # Two more snapshots of one install on the newest day held (after its snapshots of that day), just sent.
    newest = con.execute("SELECT max(taken_at) FROM snapshots").fetchone()[0]
    _, version, metrics = _FLEET[2].snapshots[-1]
    later = [(newest + dt.timedelta(hours=h), version, metrics) for h in (1, 2)]
    assert later[-1][0].date() == newest.date()
    for body in batches(dataclasses.replace(_FLEET[2], snapshots=later)):
        _insert(con, body, dt.datetime(2026, 6, 30))


def test_batches_of_the_newest_days_fold_in_without_counting_groups() -> None:
    """The newest days' periods stay open: their batches add no report_groups row, and reports still equal
    a fold from scratch (which counts the periods that close as it goes)."""
    con = _folded()
    newest = con.execute("SELECT max(day) FROM report_days").fetchone()[0]
    since = group_counts.open_since(con)
    assert since == newest - dt.timedelta(days=group_counts.OPEN_DAYS - 1)
    _send_on_the_newest_day(con)
    counted = con.execute("SELECT count(*) FROM report_groups").fetchone()
    _fold(con)
    assert con.execute("SELECT count(*) FROM report_groups").fetchone() == counted
    assert (_tables(con), _answers(con)) == _rebuilt(con, from_days=False)
    con.close()


def test_an_older_database_keeps_its_counts_through_migration_007() -> None:
    """A database whose report_groups counts every period (before 007) starts with all of them closed."""
    con = _folded()
    expected = _answers(con)
    # As 007 finds it: every period counted in report_groups, no report_open.
    con.execute("UPDATE report_open SET since = DATE '9999-01-01'")
    for table in ("report_periods", "report_installs", "report_groups"):
        con.execute(f"DELETE FROM {table}")
    con.execute("INSERT INTO report_builds SELECT 'periods', NULL, 0, count(DISTINCT install_id) FROM report_days")
    while reports_rollup.build_step(con) is not None:
        pass
    con.execute("DROP TABLE report_open")
    con.execute("DELETE FROM schema_migrations WHERE version = 7")
    assert migrate(con, checkpoint=False) == ["007_report_open.sql"]
    newest = con.execute("SELECT max(day) FROM report_days").fetchone()[0]
    after_week = newest - dt.timedelta(days=newest.weekday()) + dt.timedelta(days=7)
    after_month = (newest.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    assert group_counts.open_since(con) == max(after_week, after_month)
    assert _answers(con) == expected
    # Later batches fold in as before, counted, until the data passes report_open.since.
    counted = con.execute("SELECT count(*) FROM report_groups").fetchone()[0]
    _send_on_the_newest_day(con)
    _fold(con)
    assert con.execute("SELECT count(*) FROM report_groups").fetchone()[0] > counted
    assert group_counts.open_since(con) == max(after_week, after_month)
    assert (_tables(con), _answers(con)) == _rebuilt(con, from_days=False)
    con.close()
