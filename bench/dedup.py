"""Dedup index memory and speed: bytes per remembered batch against the 32-byte budget and the old dict design.

    python bench/dedup.py                          # 2,000,000 entries (about 3 minutes)
    python bench/dedup.py --entries 200000 --no-write

Both designs get the same entries: random UUID4 batch ids and sha256-like hex, created at random over the 35-day
window. *pages* is ``collector.storage.embedded.dedup.DedupIndex``; *dict* is ``DictDedupIndex`` below, a copy of the
``batch_id -> sha256`` dict with hour buckets of ids that it replaced. Each measurement runs in a fresh process:

- under ``tracemalloc``: fill N entries; bytes held per entry afterwards (every allocation the index keeps, not its
  inputs, which are made one at a time and dropped) and the peak during the fill;
- without ``tracemalloc``: RSS growth over the same fill and the time spent in its adds, then get (a known id, an
  unknown one) and add (a new id) in microseconds, the best of 5 rounds of 20,000 calls on the full index; every
  answer is checked.

The figures go to the ``## Dedup index`` section of docs/performance.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import psutil
from docsection import write_section

from collector.storage.embedded.dedup import DedupIndex

ROOT = Path(__file__).resolve().parent.parent
LIMIT_B = 32
"""The budget: bytes of RAM per remembered batch."""
WINDOW_S = 35 * 86400
NOW_S = 1_800_000_000.0
ROUND = 20_000
ROUNDS = 5
FLEET_ENTRIES = 35_000_000
"""1M installs, one batch a day each, over the 35-day window."""


class DictDedupIndex:
    """The index before sorted pages (the baseline): batch_id -> sha256 hex in a dict, hour buckets of ids to prune."""

    def __init__(self, *, window_s: int) -> None:
        self.window_s = window_s
        self._sha: dict[str, str] = {}
        self._buckets: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._sha)

    def get(self, batch_id: str) -> str | None:
        return self._sha.get(batch_id)

    def add(self, batch_id: str, sha256: str, *, created_s: float, now_s: float) -> None:
        self._sha[batch_id] = sha256
        expires_s = max(created_s, now_s - self.window_s + 86400)
        self._buckets.setdefault(int(expires_s) // 3600, []).append(batch_id)


class Index(Protocol):
    """What the bench uses of either design."""

    def __len__(self) -> int: ...
    def add(self, batch_id: str, sha256: str, *, created_s: float, now_s: float) -> None: ...
    def get(self, batch_id: str) -> Any: ...


DESIGNS = {"pages": "sorted pages (collector.storage.embedded.dedup)", "dict": "dict of str (old, DictDedupIndex)"}


def make(design: str) -> Index:
    """An empty index of ``design``."""
    return DedupIndex(window_s=WINDOW_S) if design == "pages" else DictDedupIndex(window_s=WINDOW_S)


_V4_CLEAR: Final = ~(0xF << 76 | 0x3 << 62)
_V4_SET: Final = 0x4 << 76 | 0x2 << 62


def entries(seed: int, count: int) -> Iterator[tuple[str, str, float]]:
    """``count`` (batch_id, sha256 hex, created_s) with random UUID4 ids, the same for a seed, made one at a time."""
    rng = random.Random(seed)
    bits = rng.getrandbits
    for _ in range(count):
        h = f"{bits(128) & _V4_CLEAR | _V4_SET:032x}"
        yield f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", f"{bits(256):064x}", NOW_S - rng.random() * WINDOW_S


def fill(index: Index, rows: Iterable[tuple[str, str, float]]) -> None:
    """Add every row as the store's start-up fill does."""
    for batch_id, sha256, created_s in rows:
        index.add(batch_id, sha256, created_s=created_s, now_s=NOW_S)


def timed_fill(index: Index, count: int) -> float:
    """Fill ``count`` entries; seconds spent in ``add`` alone (rows are made 1,000 at a time, outside the clock)."""
    spent = 0.0
    rows = entries(1, count)
    while chunk := list(itertools.islice(rows, 1000)):
        start = time.perf_counter()
        fill(index, chunk)
        spent += time.perf_counter() - start
    return spent


def child_memory(design: str, count: int) -> dict[str, float]:
    """Bytes held per entry after the fill, and at the peak during it (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    index = make(design)
    fill(index, entries(1, count))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(index) == count
    pages = len(index._pages) if isinstance(index, DedupIndex) else 0
    return {"held_b": (current - before) / count, "peak_b": (peak - before) / count, "per_page": count / max(pages, 1)}


def _best_us(fn: Any, rounds: list[list[str]]) -> float:
    best = float("inf")
    for ids in rounds:
        start = time.perf_counter()
        fn(ids)
        best = min(best, time.perf_counter() - start)
    return best / len(rounds[0]) * 1e6


def child_speed(design: str, count: int) -> dict[str, float]:
    """RSS growth per entry over the fill, its wall time, and get/add microseconds on the full index."""
    process = psutil.Process()
    rss_before = process.memory_info().rss
    index = make(design)
    fill_s = timed_fill(index, count)
    rss_b = (process.memory_info().rss - rss_before) / count
    # Queries are made after the RSS reading: known ids are the fill's first ones again (same seed).
    known = [(b, sha) for b, sha, _ in entries(1, min(count, ROUND * ROUNDS))]
    unknown = [b for b, _, _ in entries(2, ROUND * ROUNDS)]
    new = [b for b, _, _ in entries(3, ROUND * ROUNDS)]
    expected = {b: (sha if design == "dict" else int(sha[:16], 16)) for b, sha in known}
    assert all(index.get(b) == want for b, want in expected.items()), "a known id was not answered right"
    assert all(index.get(b) is None for b in unknown), "an unknown id was answered"

    def gets(ids: list[str]) -> None:
        get = index.get
        for batch_id in ids:
            get(batch_id)

    def adds(ids: list[str]) -> None:
        add = index.add
        for batch_id in ids:
            add(batch_id, "ab" * 32, created_s=NOW_S, now_s=NOW_S)

    def split(ids: list[str]) -> list[list[str]]:
        return [ids[i : i + ROUND] for i in range(0, len(ids), ROUND)]

    hit_us = _best_us(gets, split([b for b, _ in known]))
    miss_us = _best_us(gets, split(unknown))
    add_us = _best_us(adds, split(new))
    assert len(index) == count + len(new)
    return {"rss_b": rss_b, "fill_s": fill_s, "hit_us": hit_us, "miss_us": miss_us, "add_us": add_us}


def run_child(mode: str, design: str, count: int) -> dict[str, float]:
    """One measurement in a fresh interpreter (so neither design nor tracemalloc colours the other)."""
    argv = [sys.executable, __file__, "--child", mode, "--design", design, "--entries", str(count)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{mode} run of {design} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def write_doc(command: str, table: str, count: int, per_page: float) -> None:
    """Replace (or add) the ``## Dedup index`` section of docs/performance.md with this run's figures."""
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    section = (
        "## Dedup index\n\n"
        f"Measured by `{command}` ({count:,} entries) on the 2-core development machine, shared with other work\n"
        f"(load average {load} at the end). *pages* is `collector.storage.embedded.dedup.DedupIndex` (sorted pages of `array`\n"
        "columns: batch_id high and low 64 bits, a 64-bit sha256 fingerprint, the expiry hour; see its module\n"
        "docstring); *dict* is a copy of the `batch_id -> sha256` dict with hour buckets it replaced\n"
        "(`DictDedupIndex` in the script), measured in the same run on the same entries.\n\n"
        f"{table}\n\n"
        "- *held*: `tracemalloc` bytes the index keeps after the fill, per entry (its inputs are made one at a\n"
        "  time and dropped, so they are not counted); *peak*: the most traced during the fill (a page split\n"
        "  copies one page at most, so it stays at the held figure).\n"
        "- *RSS*: process resident memory growth over the same fill, in a process without `tracemalloc`\n"
        "  (includes the allocators' slack, and fixed costs that dominate at a small `--entries`). *fill*:\n"
        "  seconds spent in that fill's adds (one per entry, as the store's start-up fill does; making the\n"
        "  entries is not counted).\n"
        "- *get* and *add*: microseconds per call, best of 5 rounds of 20,000 on the full index; every answer\n"
        "  is checked against the inputs. The store's hot path calls `matches` (a get plus the fingerprint of\n"
        "  the request's sha256) and, for a new batch, `add`. Timings on this shared machine vary by 2x between\n"
        "  runs; compare the rows of one run.\n"
        "- *pages* keeps 26 bytes of columns per entry; the rest of *held* is array over-allocation (an array\n"
        f"  grows by 1/16) and page headers (~400 bytes a page, {per_page:,.0f} entries a page here). Expired\n"
        "  entries stay in memory until a sweep, started once they pass 1/64 of the entries, reclaims them (at\n"
        "  most 65,536 per prune call).\n"
    )
    write_section("Dedup index", section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2_000_000, help="entries to fill (default 2,000,000)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--child", choices=["memory", "speed"], help=argparse.SUPPRESS)
    parser.add_argument("--design", choices=sorted(DESIGNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child = child_memory if args.child == "memory" else child_speed
        print(json.dumps(child(args.design, args.entries)))
        return 0
    # The two tracemalloc fills (slow, and not timed) run side by side; the timed runs one after the other.
    print(f"filling {args.entries:,} entries under tracemalloc ...", flush=True)
    with concurrent.futures.ThreadPoolExecutor(len(DESIGNS)) as pool:
        memory = dict(zip(DESIGNS, pool.map(lambda d: run_child("memory", d, args.entries), DESIGNS), strict=True))
    results: dict[str, dict[str, float]] = {}
    for design in DESIGNS:
        print(f"{design}: timed fill, get and add ...", flush=True)
        results[design] = memory[design] | run_child("speed", design, args.entries)
    header = ("design", "held B/batch", "peak B/batch", "RSS B/batch", "fill s", "get hit us", "get miss us", "add us")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for design, title in DESIGNS.items():
        r = results[design]
        lines.append(
            f"| {title} | {r['held_b']:.1f} | {r['peak_b']:.1f} | {r['rss_b']:.1f} | {r['fill_s']:.1f}"
            f" | {r['hit_us']:.2f} | {r['miss_us']:.2f} | {r['add_us']:.2f} |"
        )
    pages, old = results["pages"], results["dict"]
    verdict = "met" if pages["held_b"] <= LIMIT_B and pages["rss_b"] <= LIMIT_B else "**not met**"
    lines += [
        "",
        f"- pages / {LIMIT_B} B budget: held **{pages['held_b'] / LIMIT_B:.2f}x**, peak {pages['peak_b'] / LIMIT_B:.2f}x,"
        f" RSS {pages['rss_b'] / LIMIT_B:.2f}x ({verdict})",
        f"- pages / dict: held **{pages['held_b'] / old['held_b']:.2f}x**, get {pages['hit_us'] / old['hit_us']:.0f}x"
        f" slower on a hit, add {pages['add_us'] / old['add_us']:.0f}x slower",
        f"- at {FLEET_ENTRIES / 1e6:.0f}M entries (1M installs, 35 days): {pages['held_b'] * FLEET_ENTRIES / 1e9:.2f} GB"
        f" against {old['held_b'] * FLEET_ENTRIES / 1e9:.1f} GB; a start-up fill of that many adds takes about"
        f" {pages['fill_s'] / args.entries * FLEET_ENTRIES:.0f} s (dict {old['fill_s'] / args.entries * FLEET_ENTRIES:.0f} s)",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        command = "python bench/dedup.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--no-write")
        write_doc(command, table, args.entries, results["pages"]["per_page"])
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
