"""Report speed: each report through collector.reports (rollup) vs the plain DuckDB SQL of the same question.

Generates a fleet straight into a DuckDB file with SQL generators (no HTTP), builds the rollup, then times
every report both ways on the same data in the same run and prints a table with the ratios.

    .venv/bin/python bench/reports.py                       # 50,000 installs x 200 snapshots = 10M
    .venv/bin/python bench/reports.py --installs 5000 --db /tmp/small.duckdb

Each install snapshots every --hours-between hours (default 4) for 200 snapshots, starting on a random
day of the first 90; one batch per install and day. Timings are the median of --repeat runs (default 3). The figures are
written to the ``## Reports`` section of docs/performance.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from docsection import write_section

from collector import reports
from collector.reports import rollup as reports_rollup

ROOT = Path(__file__).resolve().parent.parent
START = dt.date(2026, 1, 5)  # a Monday

FLEET_SQL = """
CREATE TEMP TABLE fleet AS
SELECT
    i,
    uuid() AS install_id,
    CASE WHEN i % 5 = 0 THEN 'buildfarm' ELSE 'deployserver' END AS product_name,
    (hash(i, 'start') % 90)::INTEGER AS start_day,
    ['linux', 'linux', 'linux', 'windows', 'linux', 'freebsd', 'linux', 'macos'][1 + (hash(i, 'os') % 8)::BIGINT] AS os_family,
    [2, 4, 4, 8, 8, 8, 16, 16, 32, 64, 3, 128][1 + (hash(i, 'cores') % 12)::BIGINT]::INTEGER AS cores,
    [100, 250, 500, 1000, 2000, 4000][1 + (hash(i, 'disk') % 6)::BIGINT]::INTEGER AS disk_total,
    (hash(i, 'projects') % 200)::BIGINT AS projects0,
    (hash(i, 'deploys') % 50)::BIGINT AS deploy_rate,
    hash(i, 'reset') % 100 = 0 AS resets
FROM range($installs) t(i);

INSERT INTO batches (batch_id, install_id, product_name, product_version, agent_version, created_at, received_at,
    sha256, body_bytes, snapshot_count)
SELECT uuid(), install_id, product_name, '4.2.' || (start_day + d) // 30, '0.1.0',
    TIMESTAMP '2026-01-05' + INTERVAL (start_day + d + 1) DAY, TIMESTAMP '2026-01-05' + INTERVAL (start_day + d + 1) DAY,
    'x', 1000, 0
FROM fleet, range(0, ($snapshots * $hours + 23) // 24 + 1) t(d);

INSERT INTO snapshots
SELECT f.install_id, b.batch_id, f.product_name, b.product_version, s.taken_at,
    f.os_family,
    CASE f.os_family WHEN 'linux' THEN ['Ubuntu 22.04', 'Ubuntu 24.04', 'Debian 12', 'RHEL 9'][1 + (hash(f.i) % 4)::BIGINT]
        WHEN 'windows' THEN 'Windows Server 2022' WHEN 'freebsd' THEN 'FreeBSD 14.1' ELSE 'macOS 15.1' END,
    f.cores, f.cores * 4, f.disk_total, f.disk_total // 2,
    (hash(f.i, s.n) % 101)::INTEGER,
    f.projects0 + s.n // 24,
    CASE WHEN f.resets AND s.n >= 100 THEN (s.n - 100) * f.deploy_rate ELSE s.n * f.deploy_rate END
FROM (
    SELECT i, n, TIMESTAMP '2026-01-05' + INTERVAL (start_day * 24 + n * $hours) HOUR AS taken_at
    FROM fleet, range($snapshots) t(n)
) s
JOIN fleet f USING (i)
JOIN batches b ON b.install_id = f.install_id
    AND b.created_at = date_trunc('day', s.taken_at) + INTERVAL 1 DAY
ORDER BY s.taken_at;  -- ingest appends in roughly time order

UPDATE batches SET snapshot_count = n FROM (SELECT batch_id, count(*) AS n FROM snapshots GROUP BY 1) c
WHERE batches.batch_id = c.batch_id;
DELETE FROM batches WHERE snapshot_count = 0;
"""

# The same questions asked of the raw snapshots, written independently of the rollup (the baseline).
_RAW_DAYS = "(SELECT *, CAST(date_trunc('{interval}', taken_at) AS DATE) AS period FROM snapshots WHERE taken_at >= '{start}' AND taken_at < '{stop}')"
RAW_SQL = {
    "active-installs": "SELECT period, count(DISTINCT install_id) FROM {days} GROUP BY 1",
    "new-installs": "SELECT date_trunc('{interval}', f), count(*) FROM (SELECT min(taken_at) f FROM snapshots GROUP BY install_id) WHERE f >= '{start}' AND f < '{stop}' GROUP BY 1",
    "lost-installs": "SELECT date_trunc('{interval}', l), count(*) FROM (SELECT CAST(max(taken_at) AS DATE) + 30 l FROM snapshots GROUP BY install_id) WHERE l >= '{start}' AND l < '{stop}' GROUP BY 1",
    "versions": "SELECT period, v, count(*) FROM (SELECT period, install_id, arg_max(product_name || ' ' || product_version, taken_at) v FROM {days} GROUP BY ALL) GROUP BY ALL",
    "os-families": "SELECT period, v, count(*) FROM (SELECT period, install_id, arg_max(os_family, taken_at) v FROM {days} GROUP BY ALL) GROUP BY ALL",
    "os-versions": "SELECT period, v, count(*) FROM (SELECT period, install_id, arg_max(os_version, taken_at) v FROM {days} GROUP BY ALL) GROUP BY ALL",
    "hardware": "SELECT period, dim, CASE WHEN v <= 1 THEN 1 ELSE pow(2, ceil(log2(v))) END, count(*) FROM (UNPIVOT (SELECT period, install_id, arg_max(host_cpu_logical_cores, taken_at) c, arg_max(host_memory_total_gib, taken_at) m, arg_max(host_disk_total_gib, taken_at) d, arg_max(host_disk_free_gib, taken_at) f FROM {days} GROUP BY ALL) ON c, m, d, f INTO NAME dim VALUE v) GROUP BY ALL",
    "cpu-usage": "SELECT period, count(*), quantile_cont(v, [0.5, 0.9, 0.99]) FROM (SELECT period, install_id, avg(host_cpu_usage_pct) v FROM {days} GROUP BY ALL) GROUP BY 1",
    "projects": "SELECT period, sum(v), quantile_cont(v, [0.5, 0.9, 0.99]) FROM (SELECT period, install_id, arg_max(usage_projects, taken_at) v FROM {days} GROUP BY ALL) GROUP BY 1",
    "deployments": "SELECT period, sum(v), quantile_cont(v, [0.5, 0.9, 0.99]) FROM (SELECT period, install_id, sum(d) v FROM (SELECT CAST(date_trunc('{interval}', taken_at) AS DATE) period, install_id, taken_at, CASE WHEN p IS NULL THEN 0 WHEN usage_deployments >= p THEN usage_deployments - p ELSE usage_deployments END d FROM (SELECT *, lag(usage_deployments) OVER (PARTITION BY install_id ORDER BY taken_at) p FROM snapshots)) WHERE taken_at >= '{start}' AND taken_at < '{stop}' GROUP BY ALL) GROUP BY 1",
}


LOG: list[str] = []


def say(line: str) -> None:
    """Print a line and keep it for the docs."""
    print(line, flush=True)
    LOG.append(line)


def write_doc(args: argparse.Namespace, table: list[str]) -> None:
    """Replace (or add) the ``## Reports`` section of docs/performance.md with this run's figures."""
    command = "python bench/reports.py" + (f" --interval {args.interval}" if args.interval != "week" else "")
    setup = "\n".join(f"    {line}" for line in LOG[:4])
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    section = (
        "## Reports\n\n"
        f"Measured by `{command}` ({args.installs:,} installs x {args.snapshots} snapshots, one every"
        f" {args.hours_between} h, generated straight into a DuckDB file by SQL; median of {args.repeat} runs) on the\n"
        f"2-core machine, shared with other work (load average {load} at the end). *ours* is the report through\n"
        "`collector.reports.run_report` (the same call the API, CLI and dashboard make), including the rollup\n"
        "freshness check each request makes; *plain SQL* is the same question asked of the raw `snapshots` table\n"
        "in DuckDB, written independently (`RAW_SQL` in the script), on the same data in the same run.\n\n"
        f"{chr(10).join(table)}\n\n"
        f"{setup}\n\n"
        "- Every report reads `report_days` (one row per install, product and day: 1.7M rows here against 10M\n"
        "  snapshots). Every report answered in well under a second. The ratios move from run to run with the\n"
        "  machine's load (0.3-0.6 for most reports in quieter runs); the stable gain is deployments (x10 or\n"
        "  more), whose counter deltas are computed once, when batches are folded in, not per query.\n"
        "- Folding new batches in costs about 0.1-0.2 s per refresh whether 1 or 1,000 installs sent them\n"
        "  (it runs in the writer thread, on each report request that finds new batches and every 5 s). Building\n"
        "  the rollup from scratch (first start on an existing database) takes 10-20 s, once.\n"
        "- Daily periods over six months (`--interval day`) are the heaviest case: the rollup gives no reduction\n"
        "  there beyond the per-day one; the slowest report (hardware, four dimensions) took 0.6-1.2 s depending\n"
        "  on the machine's load, still about half the plain SQL.\n"
    )
    write_section("Reports", section)


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def generate(con: duckdb.DuckDBPyConnection, installs: int, snapshots: int, hours: int) -> None:
    """Create the tables (every migration in collector/storage/sql) and fill them with the fleet."""
    for path in sorted((ROOT / "collector" / "storage" / "sql").glob("*.sql")):
        con.execute(path.read_text("utf-8"))
    sql = FLEET_SQL.replace("$installs", str(installs)).replace("$snapshots", str(snapshots))
    con.execute(sql.replace("$hours", str(hours)))
    con.execute("CHECKPOINT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installs", type=int, default=50_000)
    parser.add_argument("--snapshots", type=int, default=200, help="snapshots per install")
    parser.add_argument("--hours-between", type=int, default=4)
    parser.add_argument("--interval", choices=reports.INTERVALS, default="week")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=Path, help="DuckDB file to create (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.duckdb"
        path.unlink(missing_ok=True)
        con = duckdb.connect(str(path))
        start = time.perf_counter()
        generate(con, args.installs, args.snapshots, args.hours_between)
        rows = con.execute("SELECT count(*), count(DISTINCT install_id) FROM snapshots").fetchone()
        assert rows is not None
        say(f"generated {rows[0]:,} snapshots of {rows[1]:,} installs in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        con.execute("BEGIN")
        reports_rollup.refresh(con)
        con.execute("COMMIT")
        days = con.execute("SELECT count(*) FROM report_days").fetchone()
        assert days is not None
        say(f"rollup built from scratch in {time.perf_counter() - start:.2f} s: {days[0]:,} install-days")
        _time_incremental(con)

        today = dt.date(2026, 12, 31)
        params = reports.ReportParams.parse(
            date_from=str(START), date_to=str(START + dt.timedelta(days=179)), interval=args.interval,
            product=None, today=today,
        )  # fmt: skip
        stop = params.date_to + dt.timedelta(days=1)

        async def fetch(sql: str, values: Any) -> list[tuple[Any, ...]]:
            return con.execute(sql, values).fetchall()

        def ours(name: str) -> None:
            con.execute("BEGIN")
            reports_rollup.refresh(con)  # the no-op check every report request makes
            con.execute("COMMIT")
            asyncio.run(
                reports.run_report(name, params, fetch=fetch, min_group_size=5, lost_after_days=30, today=today)
            )

        # The two sides answer the same question: check one report's figures agree before timing.
        mine_rows = asyncio.run(
            reports.run_report(
                "active-installs", params, fetch=fetch, min_group_size=1, lost_after_days=30, today=today
            )
        ).rows
        raw_sql = RAW_SQL["active-installs"].format(
            days=_RAW_DAYS, interval=args.interval, start=params.date_from, stop=stop
        )
        plain_rows = dict(
            con.execute(raw_sql.format(interval=args.interval, start=params.date_from, stop=stop)).fetchall()
        )
        assert {r["period"]: r["installs"] for r in mine_rows if r["installs"]} == plain_rows, "answers differ"

        say(f"\n{args.interval} periods from {params.date_from} to {params.date_to}; median of {args.repeat} runs")
        say(f"{'report':<16} {'ours (s)':>9} {'plain SQL (s)':>14} {'ratio':>7}")
        table = ["| report | ours (s) | plain SQL (s) | ratio |", "|---|---:|---:|---:|"]
        for name in reports.REPORTS:
            mine = timed(lambda name=name: ours(name), args.repeat)  # type: ignore[misc]
            raw = RAW_SQL[name].format(days=_RAW_DAYS, interval=args.interval, start=params.date_from, stop=stop)
            raw = raw.format(interval=args.interval, start=params.date_from, stop=stop)
            plain = timed(lambda raw=raw: con.execute(raw).fetchall(), args.repeat)  # type: ignore[misc]
            say(f"{name:<16} {mine:>9.3f} {plain:>14.3f} {mine / plain:>7.2f}")
            table.append(f"| {name} | {mine:.3f} | {plain:.3f} | {mine / plain:.2f} |")
        con.close()
    if not args.no_write:
        write_doc(args, table)
    return 0


def _time_incremental(con: duckdb.DuckDBPyConnection) -> None:
    """Cost of folding in new batches: the latest one, then the latest 1,000 (as if they had just arrived)."""
    for installs in (1, 1000):
        con.execute(
            "DELETE FROM report_batches WHERE batch_id IN"
            " (SELECT batch_id FROM batches ORDER BY received_at DESC, batch_id LIMIT ?)",
            [installs],
        )
        start = time.perf_counter()
        con.execute("BEGIN")
        reports_rollup.refresh(con)
        con.execute("COMMIT")
        say(f"rollup refresh after new batches from {installs:,} install(s): {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
