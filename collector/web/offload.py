"""Report work off the event loop: each report's Python side runs in a thread of its own, its SQL where it was.

A daily report over ten years is tens of thousands of rows to suppress, fill and encode in Python;
on the event loop that blocked every other request for hundreds of milliseconds (a flood of such
reports took ingest p50 from 6 ms to 1.7 s). :class:`Offload` runs the report's coroutine on a
private event loop in one of :data:`REPORT_THREADS` threads. Its queries still go to the store's
``read`` on the main loop (so the read pool, and the lake's outage answers, apply unchanged); only
the pure-Python work moves. The event loop then waits for the GIL at most one switch interval at a
time, instead of for a whole report; while a report runs, that interval is 1 ms instead of Python's
5 ms (beside a report flood, ingest p50 went from 14.6 to 3.5 ms and p99 from 84 to 22-28 ms; with
1 ms always, saturated ingest lost throughput to the extra switching, so it applies only then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

__all__ = ["REPORT_THREADS", "Fetch", "Offload"]

T = TypeVar("T")
Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]

REPORT_THREADS: Final = 1
"""Reports whose Python side runs at once; more wait their turn (a core for them, one for the event loop)."""
_REPORT_SWITCH_INTERVAL_S: Final = 0.001


class Offload:
    """``await offload.run(build, fetch)`` runs ``build(fetch')`` in a report thread, ``fetch'`` bridging back."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=REPORT_THREADS, thread_name_prefix="report")
        self._running = 0
        self._default_switch_interval_s = sys.getswitchinterval()

    async def run(self, build: Callable[[Fetch], Awaitable[T]], fetch: Fetch) -> T:
        """Run ``build`` on a private loop in a report thread; its ``fetch`` calls run on this loop."""
        main = asyncio.get_running_loop()

        async def on_main(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return await fetch(sql, params)

        async def bridged(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_main(sql, params), main))

        async def job() -> T:
            return await build(bridged)

        self._running += 1
        if self._running == 1:
            sys.setswitchinterval(_REPORT_SWITCH_INTERVAL_S)
        try:
            return await main.run_in_executor(self._pool, lambda: asyncio.run(job()))
        finally:
            self._running -= 1
            if not self._running:
                sys.setswitchinterval(self._default_switch_interval_s)

    def close(self) -> None:
        """Stop the threads once idle (never blocks: a report in progress needs this loop to finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
