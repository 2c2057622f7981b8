"""What a rollup refresh costs, and how much of it is the state of the process, on a database of bench/reports.py.

    .venv/bin/python bench/reports.py --installs 500000 --db /tmp/b500k.duckdb --no-write   # once, ~12 min
    .venv/bin/python bench/refresh.py /tmp/b500k.duckdb [--installs 1000] [--runs 5] [--statements]

Each run takes the rollup back from the latest ``--installs`` batches (their ``report_batches`` rows go) and
folds them in again, as bench/reports.py does, three ways: rolled back, committed, and committed right after
a build of the pre-aggregates in the same process (the state bench/reports.py measures in). ``--statements``
prints the time of each statement of the last rolled-back refresh. Prints medians; writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import reports as bench  # bench/reports.py (this script's folder is on sys.path): the same build

from collector.reports import rollup


class _Timed:
    """A connection that keeps the time and the text of every statement it runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.statements: list[tuple[float, str]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        start = time.perf_counter()
        cursor = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        self.statements.append((time.perf_counter() - start, " ".join(sql.split())[:100]))
        return cursor


def _unfold(con: duckdb.DuckDBPyConnection, installs: int) -> None:
    con.execute(
        "DELETE FROM report_batches WHERE batch_id IN"
        " (SELECT batch_id FROM batches ORDER BY received_at DESC, batch_id LIMIT ?)",
        [installs],
    )


def _runs(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, end: str) -> tuple[list[float], _Timed]:
    seconds, timed = [], _Timed(con)
    for _ in range(args.runs):
        _unfold(con, args.installs)
        timed.statements.clear()
        start = time.perf_counter()
        con.execute("BEGIN")
        rollup.refresh(timed)
        con.execute(end)
        seconds.append(time.perf_counter() - start)
    return seconds, timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", type=Path, help="a database generated and folded by bench/reports.py --db")
    parser.add_argument("--installs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--statements", action="store_true", help="print each statement of one refresh")
    args = parser.parse_args()
    if not args.db.exists():
        parser.error(f"db: {args.db} does not exist (make it with bench/reports.py --db)")

    def say(state: str, seconds: list[float]) -> None:
        runs = " ".join(f"{s:.3f}" for s in seconds)
        print(f"{state:<44} median {statistics.median(seconds):.3f} s  ({runs})", flush=True)

    con = duckdb.connect(str(args.db))
    rolled_back, timed = _runs(con, args, "ROLLBACK")
    say("fresh process, rolled back", rolled_back)
    say("fresh process, committed", _runs(con, args, "COMMIT")[0])
    print(f"building the pre-aggregates again: {bench._time_build(con):.1f} s", flush=True)
    say("just after the build, committed", _runs(con, args, "COMMIT")[0])
    if args.statements:
        for seconds, sql in timed.statements:
            print(f"  {seconds * 1000:7.1f} ms  {sql}")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
