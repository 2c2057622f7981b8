"""Ingest benchmark: acknowledged batches/s of the real collector against two ceilings measured in the same run.

    python bench/ingest.py [--seconds 8] [--connections 64] [--no-write]

1. the collector (``python -m collector serve``, a subprocess, temp DB), loaded by a generator in
   another process posting realistic gzip batches (24 snapshots, unique ids, keep-alive connections);
2. a bare aiohttp handler that reads the body and answers 204, under the same generator;
3. DuckDB's own bulk load of the same rows in one transaction (``INSERT ... FROM read_json``).

Prints a table with both ratios and writes it to the ``## Ingest`` section of docs/performance.md.
The machine is shared (2 cores): run it briefly and compare ratios from one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import gzip
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docsection import write_section  # noqa: E402

from collector.storage.embedded.segments import load_segment  # noqa: E402
from collector.storage.embedded.spool import segment_name  # noqa: E402
from collector.storage.migrations import migrate  # noqa: E402
from schema import encode_batch, parse_batch, round_sig2  # noqa: E402

TEMPLATE = (ROOT / "tests/data/v1/valid/full-day.json").read_bytes()
BATCH_ID = orjson.loads(TEMPLATE)["batch_id"]


def make_bodies(n: int, seed: int = 0) -> list[bytes]:
    """``n`` canonical full-day batches (24 snapshots), gzip'd as the agent sends them.

    Each has its own batch id and install id, and install-specific values (hardware from a realistic
    mix, project and deployment counts, CPU usage), so the collector's checks see fleet-like variety.
    """
    rng = random.Random(seed)
    template = orjson.loads(TEMPLATE)
    out = []
    for _ in range(n):
        obj = copy.deepcopy(template)
        obj["batch_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        obj["install_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        cores, memory = rng.choice([(2, 4), (4, 8), (4, 16), (8, 16), (8, 32), (16, 64), (32, 128)])
        disk = round_sig2(rng.choice([100, 250, 500, 1000, 2000]) * rng.uniform(0.9, 1.1))
        projects, deployments = rng.randint(1, 400), rng.randint(0, 200_000)
        for snap in obj["snapshots"]:
            deployments += rng.randint(0, 40)
            snap["metrics"].update({
                "host.cpu.logical_cores": cores, "host.memory.total_gib": memory, "host.disk.total_gib": disk,
                "host.disk.free_gib": round_sig2(disk * rng.uniform(0.1, 0.9)),
                "host.cpu.usage_pct": rng.randint(0, 100), "usage.projects": projects,
                "usage.deployments": deployments,
            })  # fmt: skip
        body = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)  # the canonical encoding
        out.append(gzip.compress(body, compresslevel=1))
    return out


# -- servers ------------------------------------------------------------------------------------------


def _bare_server(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/batches", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", str(db), "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"collector did not start: {line!r}")
    return proc, match.group(1)


# -- the load generator (its own process) ----------------------------------------------------------


async def _generate(url: str, bodies: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_body = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up the connections so the timed phase measures steady keep-alive traffic.
        await asyncio.gather(*(session.get(url + "/healthz") for _ in range(connections)))
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal next_body
            while time.perf_counter() < deadline:
                body = bodies[next_body % len(bodies)]
                next_body += 1
                t0 = time.perf_counter()
                async with session.post(url + "/v1/batches", data=body, headers=headers) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t0)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "latencies": latencies, "statuses": statuses}


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection posting bodies back to back (a lean client: aiohttp's own client
    tops out near 3k requests/s per core, below what the servers under test can take)."""

    def __init__(self, host: str, feed: Any, state: dict[str, Any], done: asyncio.Future[None]) -> None:
        self._head = (
            f"POST /v1/batches HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        ).encode()
        self._feed = feed
        self._state = state
        self._done = done
        self._buf = b""
        self._t0 = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def start(self) -> None:
        self._send()

    def _send(self) -> None:
        rate = self._state["rate"]
        if not rate:
            self._fire(time.perf_counter())
            return
        # Paced (open-loop) load: each request has a slot on a fixed schedule, and its latency counts from
        # that slot, so time spent waiting for a free connection is not hidden (no coordinated omission).
        slot = self._state["next_slot"]
        self._state["next_slot"] = slot + 1.0 / rate
        delay = slot - time.perf_counter()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._fire, slot)
        else:
            self._fire(slot)

    def _fire(self, t0: float) -> None:
        assert self._transport is not None
        if time.perf_counter() >= self._state["deadline"]:
            self._transport.close()
            return
        body = next(self._feed)
        self._t0 = t0
        self._transport.write(self._head % len(body) + body)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buf[:end].decode("latin-1")
        match = re.search(r"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self._buf) < end + 4 + length:
            return
        self._buf = self._buf[end + 4 + length :]
        status = int(head[9:12])
        self._state["latencies"].append(time.perf_counter() - self._t0)
        self._state["statuses"][status] = self._state["statuses"].get(status, 0) + 1
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def _generate_raw(
    url: str, bodies: list[bytes], connections: int, seconds: float, rate: float = 0.0
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    feed = iter(bodies)
    state: dict[str, Any] = {"latencies": [], "statuses": {}, "deadline": float("inf"), "rate": rate}
    dones: list[asyncio.Future[None]] = [loop.create_future() for _ in range(connections)]
    protocols: list[_RawConnection] = []
    for done in dones:
        protocol = _RawConnection(f"{host}:{port}", feed, state, done)
        await loop.create_connection(functools.partial(lambda p: p, protocol), host, int(port))
        protocols.append(protocol)
    start = time.perf_counter()
    state["deadline"] = start + seconds
    state["next_slot"] = start
    for protocol in protocols:
        protocol.start()
    await asyncio.gather(*dones)
    return {"elapsed_s": time.perf_counter() - start, "latencies": state["latencies"], "statuses": state["statuses"]}


def _generator_main(
    url: str, n_bodies: int, connections: int, seconds: float, client: str, rate: float, out: Any
) -> None:
    bodies = make_bodies(n_bodies, seed=os.getpid())
    if client == "raw":
        out.send(asyncio.run(_generate_raw(url, bodies, connections, seconds, rate)))
    else:
        out.send(asyncio.run(_generate(url, bodies, connections, seconds)))


def run_load(
    url: str, *, n_bodies: int, connections: int, seconds: float, client: str = "raw", rate: float = 0.0
) -> dict[str, Any]:
    """Run the load generator in its own process; ``rate`` > 0 paces it (requests/s), else back to back."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_generator_main, args=(url, n_bodies, connections, seconds, client, rate, child)
    )
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    lat = sorted(result["latencies"])
    ok = sum(n for status, n in result["statuses"].items() if status in (200, 204))
    return {
        "req_s": ok / result["elapsed_s"],
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
        "ok": ok,
        "statuses": result["statuses"],
    }


# -- DuckDB's own ceiling --------------------------------------------------------------------------


def duckdb_bulk(tmp: Path, batches: int) -> dict[str, float]:
    """Rows/s of one bulk load of ``batches`` spool lines (24 snapshots each) into a fresh file."""
    seg = tmp / segment_name(1)
    canonical = encode_batch(parse_batch(TEMPLATE))
    with seg.open("wb") as f:
        for _ in range(batches):
            obj = orjson.loads(canonical.replace(BATCH_ID.encode(), str(uuid.uuid4()).encode()))
            line = {"received_at": "2026-11-29T05:00:00Z", "sha256": "0" * 64, "body_bytes": len(canonical),
                    "batch": obj}  # fmt: skip
            f.write(orjson.dumps(line) + b"\n")
    con = duckdb.connect(str(tmp / "bulk.duckdb"))
    migrate(con)
    start = time.perf_counter()
    _, snapshots = load_segment(con, seg)
    elapsed = time.perf_counter() - start
    con.close()
    return {"rows_s": snapshots / elapsed, "batches_s": batches / elapsed, "rows": snapshots}


# -- report ------------------------------------------------------------------------------------------


def write_doc(table: str, command: str) -> None:
    section = (
        "## Ingest\n\n"
        f"Measured by `{command}` on the 2-core development machine, shared with other work at the time\n"
        "(so compare the ratios, which come from one run, rather than absolute figures).\n\n"
        f"{table}\n\n"
        "- *collector*: `telemetry-collector serve` as a subprocess on a temporary DuckDB file; a load generator in\n"
        "  another process posts gzip'd 24-snapshot batches with unique ids over keep-alive connections. Every 200\n"
        "  was sent after the batch's spool line was fsync'd (group commit); the writer thread bulk-loaded the\n"
        "  spool into DuckDB during the run.\n"
        "- *bare aiohttp*: a handler that reads the body and answers 204, same generator, same connections.\n"
        "- *DuckDB bulk*: the same rows loaded from one NDJSON segment in one transaction, as the loader does.\n"
        "- The generator shares the two cores with the server, so both HTTP figures are lower than with a separate\n"
        "  client machine; the ratio between them is the meaningful number. The generator is a lean asyncio\n"
        "  HTTP/1.1 client (`--client raw`): aiohttp's own client (`--client aiohttp`) tops out near 3k requests/s\n"
        "  here and would measure itself rather than the servers.\n"
        f"- Load average when the run ended: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) on\n"
        "  2 cores; other work was running, so absolute figures are several times below an idle machine's\n"
        "  (docs of the ceilings: ~34k requests/s bare, ~10k with validation, on an idle core).\n\n"
        "Where the time goes (py-spy of the collector under this load): the event loop thread is the bottleneck.\n"
        "About a third of its samples are the batch check (orjson decode plus `schema.parse_batch_obj`, whose\n"
        "metrics check is generated from the catalogue: ~70 us for 24 varied snapshots, down from ~150 us for a\n"
        "generic per-value check) and gunzip; about a quarter is aiohttp's own request and response handling;\n"
        "the rest is dedup, the spool line and group-commit bookkeeping. The writer thread's bulk loads run\n"
        "inside DuckDB without the GIL (a Python thread beside a 72k-row load saw at most an 8 ms gap), and fsync\n"
        "is cheap here (p99 0.3 ms), so neither is the limit.\n\n"
        "**Targets.** Saturated ingest is 0.22-0.41x the bare handler across runs on this machine (target 0.25x):\n"
        "the ratio swings with what else holds the two cores. The p99 target (< 50 ms at 0.25x the bare rate)\n"
        "is **not met**: at that pace p50 is 3-40 ms and p99 65-240 ms across runs (65-104 ms since `writer_threads`) (the offered rate is close to the\n"
        "collector's own saturated rate here, so queueing adds to the pauses). A latency trace shows the tail as a\n"
        "few 40-75 ms pauses per run in which no request is answered; they remain with Python's GC disabled and\n"
        "with loads spaced 30 s apart, and a bare handler under the same paced generator keeps p99 at 1.6 ms.\n"
        "They coincide with CPU contention on two cores between the event loop, DuckDB's worker threads\n"
        "(bulk loads, the report rollup refresh) and the generator. Writer jobs therefore run with one DuckDB\n"
        "thread (`writer_threads`, default 1): in back-to-back paced runs at 1,000/s that took p99 from\n"
        "80-215 ms to 27-58 ms. The rest is capacity: 0.25x the bare rate is 50-75% of this single event\n"
        "loop's own saturated rate here, so queueing adds to every pause. Taking the HTTP work across cores\n"
        "(several accepting processes, one of them owning DuckDB) is the next step.\n"
    )
    write_section("Ingest", section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each HTTP run (default 8)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections (default 64)")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                        help="load generator: a lean asyncio HTTP/1.1 client (default) or aiohttp's client")  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    n_bodies = max(20_000, int(args.seconds * 12_000))  # unique ids for everything sent
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        port = _free_port()
        bare_proc = mp.get_context("spawn").Process(target=_bare_server, args=(port,))
        bare_proc.start()
        time.sleep(1.0)
        try:
            bare = run_load(f"http://127.0.0.1:{port}", n_bodies=n_bodies, connections=args.connections,
                            seconds=args.seconds, client=args.client)  # fmt: skip
        finally:
            bare_proc.terminate()
            bare_proc.join()
        # The target load: a quarter of what the bare handler answered in this run, offered at a steady pace.
        target_rate = 0.25 * bare["req_s"] if args.client == "raw" else 0.0
        proc, url = start_collector(tmp / "t.duckdb")
        try:
            paced = None
            if target_rate:
                # Paced first, on a fresh collector: after a saturated run the loader and the report rollup
                # are still catching up, which would be measured as latency here.
                paced = run_load(url, n_bodies=n_bodies, connections=args.connections,
                                 seconds=args.seconds, client=args.client, rate=target_rate)  # fmt: skip
            col = run_load(url, n_bodies=n_bodies, connections=args.connections, seconds=args.seconds,
                           client=args.client)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        con = duckdb.connect(str(tmp / "t.duckdb"), read_only=True)
        stored = con.execute("SELECT count(DISTINCT batch_id), count(*) FROM batches").fetchone() or (0, 0)
        con.close()
        bulk = duckdb_bulk(tmp, batches=20_000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    snaps_s = col["req_s"] * 24
    rows = [
        ("collector, saturated (ack after fsync)", f"{col['req_s']:,.0f}", f"{snaps_s:,.0f}", f"{col['p50_ms']:.1f}",
         f"{col['p99_ms']:.1f}"),
    ]  # fmt: skip
    if paced is not None:
        rows.append((f"collector, paced at 0.25x bare ({target_rate:,.0f}/s offered)", f"{paced['req_s']:,.0f}",
                     f"{paced['req_s'] * 24:,.0f}", f"{paced['p50_ms']:.1f}", f"{paced['p99_ms']:.1f}"))  # fmt: skip
    rows += [
        ("bare aiohttp read + 204, saturated", f"{bare['req_s']:,.0f}", f"{bare['req_s'] * 24:,.0f}",
         f"{bare['p50_ms']:.1f}", f"{bare['p99_ms']:.1f}"),
        ("DuckDB bulk load, 1 txn", f"{bulk['batches_s']:,.0f}", f"{bulk['rows_s']:,.0f}", "", ""),
    ]  # fmt: skip
    header = ("", "batches/s", "snapshots/s", "p50 ms", "p99 ms")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append(f"- collector / bare aiohttp (requests/s, both saturated): **{col['req_s'] / bare['req_s']:.2f}x**")
    lines.append(f"- collector / DuckDB bulk (snapshots/s): **{snaps_s / bulk['rows_s']:.2f}x**")
    if paced is not None:
        lines.append(f"- at 0.25x the bare handler's rate the collector's p99 latency is **{paced['p99_ms']:.1f} ms** "
                     f"(latency counted from each request's scheduled send time)")  # fmt: skip
    acked = col["ok"] + (paced["ok"] if paced is not None else 0)
    lines.append(f"- {args.connections} connections, {args.seconds:g} s per HTTP run; collector statuses "
                 f"{col['statuses']}{'' if paced is None else ' / ' + str(paced['statuses'])}; stored {stored[0]:,} "
                 f"distinct batches in {stored[1]:,} rows (acknowledged {acked:,}).")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if stored[0] != stored[1] or stored[0] < acked:
        print("ERROR: stored batches do not match acknowledged ones", file=sys.stderr)
        return 1
    if not args.no_write:
        command = "python bench/ingest.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--no-write")
        write_doc(table, command)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
