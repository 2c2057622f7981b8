"""The load generator of bench/scaleout.py: one process that spreads bench/ingest.py's load over several collectors.

It makes bench/ingest.py's fleet-like bodies once (``make_bodies``: gzip'd 24-snapshot batches with their own batch
and install ids, hardware from a realistic mix, varied counts) and then, for each run it is sent, drives
bench/ingest.py's lean keep-alive HTTP/1.1 client (``_generate_raw``) against every collector of a configuration at
once. The connections are dealt round-robin over the collectors, as a load balancer spreads them; a paced run gives
each collector an equal share of the schedule, offset so that the send slots take the collectors in turn. Collector
``i`` of ``k`` posts bodies ``first + i``, ``first + i + k``, ... so no body is sent twice to one lake.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
from dataclasses import dataclass
from typing import Any

from ingest import _generate_raw, make_bodies

__all__ = ["Load", "LoadGenerator"]


@dataclass(frozen=True, slots=True)
class Load:
    """What one run measured, over all the collectors it was spread on."""

    rate: float
    """Acknowledged (200 or 204) requests per second."""
    p50_ms: float
    p99_ms: float
    ok: int
    statuses: dict[int, int]
    used: int
    """Bodies taken from ``first`` on (the next run on the same lake starts after them)."""
    short: bool
    """The bodies ran out before the end (the figure is then too low)."""


class LoadGenerator:
    """The generator process; :meth:`run` blocks for one run and returns its :class:`Load`."""

    def __init__(self, bodies: int) -> None:
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, bodies), name="loadgen", daemon=True)
        self.process.start()
        child.close()
        self.bodies = bodies

    def ready(self) -> None:
        """Wait until the bodies are made."""
        self._pipe.recv()

    def run(self, urls: list[str], *, connections: int, seconds: float, rate: float = 0.0, first: int = 0,
            reuse: bool = False) -> Load:  # fmt: skip
        """Post to ``urls`` for ``seconds``: back to back, or ``rate`` requests/s in all; ``reuse`` repeats bodies."""
        if not reuse and rate and first + 1.2 * rate * seconds + connections > self.bodies:
            raise ValueError("not enough bodies for this paced run: raise --bodies")
        self._pipe.send((urls, connections, seconds, rate, first, reuse))
        load: Load = self._pipe.recv()
        return load

    def close(self) -> None:
        """Stop the process (at once if it is busy)."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self._pipe.send(None)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._pipe.close()


def _serve(pipe: Any, n_bodies: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops this process
    bodies = make_bodies(n_bodies, seed=1)
    pipe.send(len(bodies))
    while (job := pipe.recv()) is not None:
        pipe.send(asyncio.run(_spread(bodies, *job)))


async def _spread(bodies: list[bytes], urls: list[str], connections: int, seconds: float, rate: float, first: int,
                  reuse: bool) -> Load:  # fmt: skip
    k = len(urls)
    feeds = [bodies * 8 if reuse else bodies[first + i :: k] for i in range(k)]

    async def one(i: int) -> dict[str, Any]:
        if rate:
            await asyncio.sleep(i / rate)  # collector i takes the i-th slot of every k
        share = connections // k + (i < connections % k)
        return await _generate_raw(urls[i], feeds[i], share, seconds, rate / k)

    results = await asyncio.gather(*(one(i) for i in range(k)))
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    ok = statuses.get(200, 0) + statuses.get(204, 0)
    sent = [len(r["latencies"]) for r in results]
    return Load(
        rate=ok / max(r["elapsed_s"] for r in results),
        p50_ms=1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        ok=ok,
        statuses=statuses,
        used=k * max(sent),
        short=any(n >= len(feed) for n, feed in zip(sent, feeds, strict=True)),
    )
