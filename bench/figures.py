"""The figures of one bench/scaleout.py run: its rows, the targets, the printed tables and the docs section."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import dedup
from docsection import write_section
from loadgen import Load

__all__ = ["Report", "Row"]

P99_LIMIT_MS: Final = 250.0
SCALE_LIMIT: Final = 1.5
CPU_PARTS: Final = ("server", "postgres", "s3", "generator", "bench", "rest", "steal")


@dataclass
class Row:
    """One measured run."""

    name: str
    load: Load
    cpu: dict[str, float]
    """Percent of one core by part (see :class:`probes.CpuMeter`)."""
    rate: float = 0.0
    """The offered rate of a paced run (0: saturated)."""
    commits: list[float] = field(default_factory=list)
    """Group commits of each lake collector during the run (telemetry_lake_commits)."""
    accepted: list[float] = field(default_factory=list)
    """Batches each lake collector stored during the run (telemetry_batches_accepted_total)."""
    lock_held: float = 0.0
    """Fraction of the run in which a collector held the WRITE lock."""
    lock_waiting: float = 0.0
    """Sessions waiting for the WRITE lock, on average."""
    rollup_held: float = 0.0
    """Fraction of the run in which a collector held the ROLLUP lock."""
    span_s: float = 0.0
    """How long the locks were sampled (the run, with its drain)."""

    @property
    def per_commit(self) -> list[float]:
        """Batches stored per group commit, by collector."""
        return [a / max(c, 1.0) for a, c in zip(self.accepted, self.commits, strict=True)]

    @property
    def batches_per_commit(self) -> float:
        """Batches stored per group commit, over all collectors."""
        return sum(self.accepted) / max(sum(self.commits), 1.0)

    @property
    def commit_rate(self) -> float:
        """Group commits per second, over all collectors."""
        return sum(self.commits) / self.span_s if self.span_s else 0.0

    @property
    def lock_ms(self) -> float:
        """WRITE lock time per group commit."""
        return 1000 * self.lock_held * self.span_s / max(sum(self.commits), 1.0)

    @property
    def notes(self) -> str:
        """Commits, lock and odd statuses, for the progress line."""
        out = []
        if self.commits:
            out.append(f"commits {_each(self.commits, '.0f')}, batches/commit {_each(self.per_commit, '.1f')}, "
                       f"WRITE lock held {100 * self.lock_held:.0f}% ({self.lock_ms:.0f} ms a commit)")  # fmt: skip
        other = {s: n for s, n in self.load.statuses.items() if s not in (200, 204)}
        if other:
            out.append(f"other statuses {other}")
        if self.load.short:
            out.append("THE BODIES RAN OUT")
        return "; ".join(out)


@dataclass
class Report:
    """Every figure of one run."""

    command: str
    seconds: float
    connections: int
    dedup_entries: int
    code: str
    """Which collector code ran (commit, and whether collector/ had uncommitted changes)."""
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bare: Row | None = None
    embedded: Row | None = None
    lake: dict[int, list[Row]] = field(default_factory=dict)
    """Collectors -> [saturated, paced (1 and 2 collectors only)]."""
    dedup_held: float = 0.0
    dedup_rss: float = 0.0

    def rows(self) -> list[Row]:
        """Every run, in the order they ran."""
        assert self.bare is not None
        assert self.embedded is not None
        return [self.bare, self.embedded, *(r for n in sorted(self.lake) for r in self.lake[n])]

    def targets(self) -> list[tuple[str, str, str, float, bool]]:
        """(target, measured, limit, measured / limit, met)."""
        scale = self.lake[2][0].load.rate / self.lake[1][0].load.rate
        out = [("2 lake collectors / 1, saturated acknowledged batches/s", f"{scale:.2f}x", f">= {SCALE_LIMIT}x",
                scale / SCALE_LIMIT, scale >= SCALE_LIMIT)]  # fmt: skip
        for n in (1, 2):
            paced = self.lake[n][1]
            out.append((f"lake ack p99 at half the saturated rate, {n} collector{'s' if n > 1 else ''} "
                        f"({paced.rate:,.0f}/s)", f"{paced.load.p99_ms:.0f} ms", f"<= {P99_LIMIT_MS:.0f} ms",
                        paced.load.p99_ms / P99_LIMIT_MS, paced.load.p99_ms <= P99_LIMIT_MS))  # fmt: skip
        out.append(("dedup index bytes per remembered batch, embedded (tracemalloc, held)", f"{self.dedup_held:.1f} B",
                    f"<= {dedup.LIMIT_B} B", self.dedup_held / dedup.LIMIT_B, self.dedup_held <= dedup.LIMIT_B))  # fmt: skip
        return out

    def tables(self) -> str:
        """The runs and the targets as markdown tables, and the run's facts (printed, and in the docs)."""
        assert self.bare is not None
        bare, one = self.bare.load.rate, self.lake[1][0].load.rate
        head = ("run", "offered/s", "acked batches/s", "p50 ms", "p99 ms", "/ bare", "/ 1 lake", "group commits",
                "batches/commit", "WRITE lock held (ms a commit, waiting)", "ROLLUP held",
                "CPU % of a core: " + " / ".join(CPU_PARTS))  # fmt: skip
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
        for row in self.rows():
            lake = bool(row.commits)
            lines.append("| " + " | ".join((
                row.name, f"{row.rate:,.0f}" if row.rate else "max", f"{row.load.rate:,.0f}", f"{row.load.p50_ms:.1f}",
                f"{row.load.p99_ms:.1f}", "" if row.rate else f"{row.load.rate / bare:.2f}x",
                f"{row.load.rate / one:.2f}x" if lake and not row.rate else "",
                _each(row.commits, ",.0f"), _each(row.per_commit, ".1f"),
                f"{100 * row.lock_held:.0f}% ({row.lock_ms:.0f} ms, {row.lock_waiting:.1f})" if lake else "",
                f"{100 * row.rollup_held:.0f}%" if lake else "",
                " / ".join(f"{row.cpu.get(k, 0.0):.0f}" for k in CPU_PARTS))) + " |")  # fmt: skip
        lines += ["", "| target | measured | limit | measured / limit | verdict |", "|---|---:|---:|---:|---|"]
        for name, measured, limit, ratio, met in self.targets():
            lines.append(f"| {name} | {measured} | {limit} | {ratio:.2f} | {'PASS' if met else '**FAIL**'} |")
        lines.append(f"| (not a target) RSS growth per remembered batch, same fill | {self.dedup_rss:.1f} B | | "
                     f"{self.dedup_rss / dedup.LIMIT_B:.2f} | info |")  # fmt: skip
        statuses = "; ".join(f"{r.name}{' paced' if r.rate else ''} {r.load.statuses}" for r in self.rows())
        lines += ["", f"Measured by `{self.command}` ({self.seconds:g} s per run, {self.connections} connections, "
                  f"{self.dedup_entries:,} dedup entries) on {os.cpu_count()} cores, collector code {self.code}; load average "
                  f"{_loads(self.load_start)} at the start, {_loads(self.load_end)} at the end (1/5/15 min). "
                  f"HTTP statuses: {statuses}."]  # fmt: skip
        return "\n".join(lines)

    def write(self, path: Path, tables: str) -> None:
        """Replace (or add) the ``## Scale-out`` section of docs/performance.md."""
        section = "## Scale-out\n\n" + _wrap(_INTRO) + "\n" + tables + "\n\n" + self.analysis()
        write_section("Scale-out", section, path)

    def analysis(self) -> str:
        """What each figure is and what limits it, with this run's figures."""
        assert self.bare is not None
        assert self.embedded is not None
        b, e, (s1, p1), (s2, p2), s3 = self.bare, self.embedded, self.lake[1], self.lake[2], self.lake[3][0]
        cpu = {row.name + str(row.rate): row.cpu for row in self.rows()}
        rest = sorted(c["rest"] + c["steal"] for c in cpu.values())
        setup = [
            f"Each row is one run of {self.seconds:g} s after a 1 s warm-up, {self.connections} keep-alive connections "
            "dealt round-robin over the configuration's collectors by one load-generator process (bench/loadgen.py: "
            "bench/ingest.py's gzip'd 24-snapshot batches with their own batch and install ids and fleet-like "
            "values, and its lean HTTP/1.1 client). *saturated*: back to back; *paced*: an open-loop schedule at half "
            "that configuration's saturated rate, latency counted from each request's slot. *acked batches/s* "
            "counts 200 (204 from the bare handler) over the run and its drain.",
            "Lake rows: real `python -m collector serve` processes set up by TELEMETRY_COLLECTOR_* variables on a "
            "fresh PostgreSQL database and bucket prefix per configuration, with `maintenance_interval_s` = 3600: "
            "the maintenance pass ran at start-up on an empty lake and never during a run. PostgreSQL and SeaweedFS "
            "(tests/servers.py) run on the same 2 cores; the test PostgreSQL has fsync off, so a catalog commit "
            "costs less here than on a durable server. Every acknowledged batch was found in its store afterwards.",
            "*group commits*, *batches/commit*: each collector's /metrics (`telemetry_lake_commits[_total]`, "
            "`telemetry_batches_accepted_total`). *WRITE lock held*: the share of 20 ms samples of `pg_locks` in "
            "which a collector held the lake's WRITE advisory lock, its time per commit and the sessions waiting "
            "for it on average; *ROLLUP held*: the same for the report rollup's lock. *CPU*: percent of one core: "
            "the server processes with their threads, PostgreSQL, SeaweedFS, the generator, this script, *rest* "
            "(every other process: the machine is shared with other work) and *steal* (the hypervisor's other guests).",
        ]
        limits = [
            f"*bare handler* ({b.load.rate:,.0f}/s): one aiohttp event loop ({b.cpu['server']:.0f}% of a core) and "
            f"the generator ({b.cpu['generator']:.0f}%) on 2 cores, beside other work ({b.cpu['rest']:.0f}%).",
            f"*embedded* ({e.load.rate:,.0f}/s, {e.load.rate / b.load.rate:.2f}x bare): its one event loop "
            f"({e.cpu['server']:.0f}% of a core{', CPU-bound' if e.cpu['server'] >= 85 else ''}: gunzip, the batch "
            "check, dedup, the spool's group fsync; see Ingest above).",
            f"*lake, 1 collector* ({s1.load.rate:,.0f}/s): {s1.commit_rate:.1f} group commits/s of "
            f"{s1.batches_per_commit:.1f} batches, one at a time. A commit writes its rows (two Parquet files to S3) "
            "before it takes the WRITE lock, and holds the lock only for its claims and DuckLake's catalog commit "
            f"({s1.lock_ms:.0f} ms each; held {100 * s1.lock_held:.0f}% of the run): "
            + ("the lock is the limit" if s1.lock_held >= 0.8 else "the limit is the commit's latency and the CPU")
            + f" (the collector used {s1.cpu['server']:.0f}% of a core, PostgreSQL {s1.cpu['postgres']:.0f}%, "
            f"SeaweedFS {s1.cpu['s3']:.0f}%). The report rollup's background fold (every `rollup_interval_s`, 30 s "
            f"on a lake, one collector at a time) held its lock {100 * s1.rollup_held:.0f}% of the run, on the same "
            "CPU: on a lake it finds the new batches by reading the day's small `batches` files (one per group "
            "commit until maintenance merges them).",
            "*A fold no longer holds up ingest.* In the previous run of this bench a fold stalled the group commits "
            "of its own collector while it ran (paced p99 8.9 s with 1 collector, 3.4 s with 2). The cause: DuckDB's "
            "Python binding converts a list parameter element by element holding the GIL, about 0.1 ms each on "
            "DuckDB 1.5.5 (it looks for numpy and pandas, which are not installed, for every element), and a fold "
            "of 1,000 installs passed some 30 such lists: seconds in which the event loop and the commit thread "
            "could not run. The rollup now passes each list as one JSON text parsed in SQL "
            "(collector/reports/sql.py), and finds its pending batches once rather than three times.",
            f"*lake, 2 and 3 collectors* ({s2.load.rate / s1.load.rate:.2f}x and {s3.load.rate / s1.load.rate:.2f}x "
            "one): every catalog commit of the cluster passes through the one WRITE lock (held "
            f"{100 * s2.lock_held:.0f}% / {100 * s3.lock_held:.0f}% of the run, {s2.lock_waiting:.1f} / "
            f"{s3.lock_waiting:.1f} sessions waiting on average), and beside a rival each hold takes longer "
            f"({s2.lock_ms:.0f} / {s3.lock_ms:.0f} ms against {s1.lock_ms:.0f}): the commit is stale (see below). "
            f"So the cluster made {s2.commit_rate:.1f} / {s3.commit_rate:.1f} commits/s against one collector's "
            f"{s1.commit_rate:.1f}, with groups of {s2.batches_per_commit:.1f} / {s3.batches_per_commit:.1f} "
            "batches (each collector sees its share of the connections, so its groups are smaller). The CPU was "
            f"not the limit ({_cpu_total(s2.cpu):.0f}% / {_cpu_total(s3.cpu):.0f}% of the 200% used, against "
            f"{_cpu_total(s1.cpu):.0f}% for one collector): the serialised stale commit is. On one 2-core machine "
            "extra collectors add contention, not capacity; on hosts of their own the same holds for the catalog "
            "commit, so a cluster's rate is about groups per commit times commits per second of the lock.",
            f"*paced* (p99 {p1.load.p99_ms:.0f} ms at {p1.rate:,.0f}/s offered on 1 collector, {p2.load.p99_ms:.0f} "
            f"ms at {p2.rate:,.0f}/s on 2; {p1.load.rate:,.0f} and {p2.load.rate:,.0f}/s acknowledged over the run "
            "and its drain): at half the saturated rate the lock is still held "
            f"{100 * p1.lock_held:.0f}% / {100 * p2.lock_held:.0f}% of the time: a commit starts as soon as one "
            f"batch waits, and takes {p1.lock_ms:.0f} ms for {p1.batches_per_commit:.0f} batches against "
            f"{s1.lock_ms:.0f} ms for {s1.batches_per_commit:.0f} saturated. A batch waits for the commit in "
            f"progress, then its own (p50 {p1.load.p50_ms:.0f} ms, {p1.load.p50_ms / max(p1.lock_ms, 1):.1f} "
            "commits), with 2 collectors for the other collector's commit too; the tail adds the rollup refreshes "
            f"and other work on the 2 cores (rest and steal: {rest[0]:.0f}-{rest[-1]:.0f}% of a core across the "
            "runs). Each paced run lasts past one fold of the rollup, which reads every file committed since the "
            "last: without a fold in the window the p99 was 71 / 111 ms in one run. The fold's thread runs niced "
            "(+10) so that ingest gets the CPU first: in three runs with it, 158-164 ms with 2 collectors, against "
            "189-267 ms in five without.",
            f"*dedup*: bench/dedup.py's tracemalloc measurement of the embedded index, {self.dedup_held:.1f} B per "
            f"remembered batch at {self.dedup_entries:,} entries; the RSS growth of the same fill "
            f"({self.dedup_rss:.1f} B) includes fixed costs that dominate at this size (see Dedup index above).",
        ]
        moves = (
            "Why a hold takes longer with 2 collectors: a DuckLake commit whose transaction began before another "
            "collector's commit (nearly every one, since the Parquet files are written before the lock is taken) "
            "makes a first attempt at the snapshot id after its own, which the rival took, rolls back, rereads the "
            "catalog's snapshots, changes and statistics and commits again. bench/lakecommits.py measures this "
            "without HTTP or JSON (Lake commits, below): two writers commit about 0.75x as often as one, and "
            "writing the files outside any transaction and registering them under the lock "
            "(`ducklake_add_data_files`), which is never stale, holds the lock longer still because it reads the "
            "files' footers there. The retry no longer waits (`ducklake_retry_wait_ms` 0, was 5: 2.5-5 ms a retry, "
            "under the lock), which took the hold with 2 collectors from 21 to 17 ms and the cluster from 721 to "
            "813 batches/s in one comparison; a shorter GIL switch interval in the collector (0.5 ms against 5) "
            "changed nothing, so the hold does not wait for the collector's own event loop. What moves the lake's "
            "figures is larger groups, since a commit's cost barely grows with its size: collectors on hosts of "
            "their own, each with enough connections to fill its groups, add throughput until the cluster's "
            "commits/s (about 95 here beside a rival) times batches per commit is reached. A fleet of a million "
            "installs sends about 12 batches/s."
        )
        return (
            "".join(_wrap(p, bullet=True) for p in setup)
            + "\n**What limits each figure.**\n\n"
            + "".join(_wrap(p, bullet=True) for p in limits)
            + "\n"
            + _wrap(moves)
        )


_INTRO: Final = (
    "One run of bench/scaleout.py on this machine: the embedded default, 1, 2 and 3 lake collectors (DuckLake, "
    "catalog in PostgreSQL, Parquet on SeaweedFS S3) and a bare aiohttp handler, each under the same generator; "
    "the dedup index's bytes per remembered batch; and the targets. Absolute figures move with the other work on "
    "these 2 shared cores (see *rest*); compare the rows of one run."
)


def _wrap(text: str, *, bullet: bool = False) -> str:
    if bullet:
        return textwrap.fill(text, 116, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False) + "\n"
    return textwrap.fill(text, 118, break_on_hyphens=False) + "\n"


def _cpu_total(cpu: dict[str, float]) -> float:
    """Percent of one core used by the run's own processes (server, PostgreSQL, S3, generator, bench)."""
    return sum(cpu[name] for name in ("server", "postgres", "s3", "generator", "bench"))


def _each(values: list[float], spec: str) -> str:
    return " + ".join(format(v, spec) for v in values)


def _loads(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.1f}" for x in values)
