"""DuckLake's commit rate with one and two writer processes: what bounds a cluster of lake collectors.

    .venv-lake/bin/python bench/lakecommits.py [--seconds 6] [--rows 384] [--no-write]

No HTTP and no JSON: each writer process loops over group commits of ``--rows`` rows (384: 16 batches of
24 snapshots, a group of one of two collectors under bench/scaleout.py's 64 connections) into one table
of a lake on this run's own PostgreSQL and SeaweedFS (tests/servers.py), serialised by one PostgreSQL
advisory lock as the collectors' WRITE lock serialises theirs. Two ways to commit:

- *insert, then lock* (what a collector does): BEGIN, INSERT (DuckLake writes the Parquet file to S3),
  take the lock, COMMIT, release. Beside another writer the transaction's snapshot is stale by then, so
  DuckLake's first attempt fails and it rereads the catalog and commits again, under the lock.
- *file, then lock and register*: COPY the rows to a Parquet file on S3 outside any lake transaction,
  take the lock, BEGIN, ``ducklake_add_data_files``, COMMIT, release: never stale, but the file's footer
  is read under the lock.

It prints commits/s of all writers, the lock's hold per commit and the ratio of two writers to one, checks
that every committed row is in the table once, and writes the ``## Lake commits`` section of
docs/performance.md (``--no-write`` skips that). About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docsection import write_section  # noqa: E402

from collector.storage.lake.connect import LakeSettings, open_duckdb, pg_connect  # noqa: E402
from tests.servers import S3_BUCKET, S3_KEY_ID, S3_SECRET, PostgresServer, SeaweedServer  # noqa: E402

MODES: Final = {"insert": "insert, then lock", "register": "file, then lock and register"}
LOCK: Final = (0x7E1E, 99)
"""An advisory lock of the collectors' namespace that no collector takes."""
START_DELAY_S: Final = 6.0
"""Writers start together this long after they are spawned (opening DuckDB and its extensions takes ~2 s)."""
_T0 = time.perf_counter()


def say(line: str) -> None:
    """One progress line on stderr."""
    print(f"[{time.perf_counter() - _T0:5.1f} s] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Result:
    """What the writers of one run did together."""

    mode: str
    writers: int
    commits: int
    lock_held_s: float
    seconds: float
    rows_found: int
    rows_expected: int

    @property
    def rate(self) -> float:
        """Commits per second of all writers."""
        return self.commits / self.seconds

    @property
    def hold_ms(self) -> float:
        """The lock's mean hold per commit."""
        return 1000 * self.lock_held_s / max(self.commits, 1)


def writer(settings: LakeSettings, mode: str, rows: int, start_at: float, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One writer process: group commits until ``start_at + seconds``; puts (commits, seconds the lock was held)."""
    con = open_duckdb(settings)
    pg = pg_connect(settings)
    commits, held_s = 0, 0.0
    select = f"SELECT uuid() AS id, range AS v, now()::TIMESTAMP AS ts FROM range({int(rows)})"
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < start_at + seconds:
        if mode == "insert":
            con.execute("BEGIN")
            con.execute(f"INSERT INTO snaps {select}")
        else:
            path = f"{settings.data_path}main/snaps/ducklake-{uuid.uuid4()}.parquet"
            con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
        pg.execute("SELECT pg_advisory_lock(%s, %s)", LOCK)
        locked = time.perf_counter()
        if mode == "register":
            con.execute("BEGIN")
            con.execute(f"CALL ducklake_add_data_files('lake', 'snaps', '{path}')")
        con.execute("COMMIT")
        held_s += time.perf_counter() - locked
        pg.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK)
        commits += 1
    out.put((commits, held_s))


def run(pg: PostgresServer, s3: SeaweedServer, mode: str, writers: int, args: argparse.Namespace) -> Result:
    """One configuration on a fresh database and bucket prefix."""
    name = f"lakecommits_{mode}_{writers}_{uuid.uuid4().hex[:6]}"
    pg.create_database(name)
    settings = LakeSettings(host="127.0.0.1", port=pg.port, dbname=name, user="postgres",
                            data_path=f"s3://{S3_BUCKET}/{name}/", s3_endpoint=s3.endpoint, s3_key_id=S3_KEY_ID,
                            s3_secret=S3_SECRET)  # fmt: skip
    con = open_duckdb(settings)
    con.execute("CREATE TABLE snaps (id UUID, v BIGINT, ts TIMESTAMP)")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + START_DELAY_S
    procs = [ctx.Process(target=writer, args=(settings, mode, args.rows, start_at, args.seconds, out))
             for _ in range(writers)]  # fmt: skip
    for proc in procs:
        proc.start()
    say(f"{MODES[mode]}, {writers} writer(s): {args.seconds:g} s ...")
    done = [out.get(timeout=START_DELAY_S + args.seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    commits = sum(n for n, _ in done)
    found = con.execute("SELECT count(*), count(DISTINCT id) FROM snaps").fetchone() or (0, 0)
    con.close()
    result = Result(mode=mode, writers=writers, commits=commits, lock_held_s=sum(h for _, h in done),
                    seconds=args.seconds, rows_found=min(found), rows_expected=commits * args.rows)  # fmt: skip
    say(f"  {result.rate:.1f} commits/s, lock held {result.hold_ms:.1f} ms a commit, rows {found[0]:,}")
    return result


def table(results: list[Result]) -> str:
    """The figures as a Markdown table."""
    one = {r.mode: r.rate for r in results if r.writers == 1}
    lines = [
        "| commit | writers | commits/s (all) | lock held, ms a commit | / 1 writer | rows found / committed |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{r.rate / one[r.mode]:.2f}x" if r.mode in one else ""
        lines.append(f"| {MODES[r.mode]} | {r.writers} | {r.rate:.1f} | {r.hold_ms:.1f} | {ratio} "
                     f"| {r.rows_found:,} / {r.rows_expected:,} |")  # fmt: skip
    return "\n".join(lines)


def section(results: list[Result], text: str, command: str) -> str:
    """The ``## Lake commits`` section of docs/performance.md."""
    by = {(r.mode, r.writers): r for r in results}
    ins1, ins2, reg1, reg2 = by["insert", 1], by["insert", 2], by["register", 1], by["register", 2]
    prose = (
        f"Measured by `{command}` on 2 cores ({results[0].seconds:g} s a run, group commits of "
        f"{ins1.rows_expected // max(ins1.commits, 1)} rows into one unpartitioned table, one PostgreSQL advisory "
        "lock around each catalog commit as the collectors' WRITE lock). No HTTP, no JSON: what DuckLake 1.5 and "
        f"its PostgreSQL catalog allow a cluster. Two writers that insert first commit {ins2.rate / ins1.rate:.2f}x "
        f"as often as one: alone, a commit holds the lock {ins1.hold_ms:.1f} ms; beside a rival it is stale "
        f"and holds it {ins2.hold_ms:.1f} ms (DuckLake's failed first attempt, its reread of the catalog and a "
        "second attempt). Writing the file outside any transaction and registering it under the lock is never "
        f"stale but reads the file's footer there: {reg1.hold_ms:.1f} ms alone, {reg2.hold_ms:.1f} ms beside a "
        f"rival, {reg2.rate:.1f} commits/s for two (against {ins2.rate:.1f}). So the collectors insert first; a "
        "cluster's batches/s is its commits/s times batches per commit, and more collectors add throughput only "
        "where each has cores of its own and groups stay large (docs/scale-out.md, Limits)."
    )
    return "## Lake commits\n\n" + textwrap.fill(prose, 118, break_on_hyphens=False) + "\n\n" + text + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each run (default 6)")
    parser.add_argument("--rows", type=int, default=384, help="rows per group commit (default 384)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    command = ".venv-lake/bin/python bench/lakecommits.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--no-write")
    say("starting PostgreSQL and SeaweedFS ...")
    pg, s3 = PostgresServer(), SeaweedServer()
    try:
        pg.start()
        s3.start()
        results = [run(pg, s3, mode, writers, args) for mode in MODES for writers in (1, 2)]
    finally:
        pg.destroy()
        s3.destroy()
    text = table(results)
    print(text)
    if any(r.rows_found != r.rows_expected for r in results):
        print("ERROR: a committed row is missing or doubled", file=sys.stderr)
        return 1
    if not args.no_write:
        write_section("Lake commits", section(results, text, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
