"""Background jobs that run on a schedule while the app is up (rollup refresh, retention).

Each is a ``cleanup_ctx`` generator: started with the app, cancelled at shutdown. A failed pass is
logged and retried at the next interval; it never ends the schedule. A pass refused because storage
is unavailable or busy (a 503 to a request) is one warning line, not a traceback: the store has
already logged which part is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from collector.errors import OverloadedError

__all__ = ["periodic"]

log = logging.getLogger(__name__)

Step = Callable[[web.Application], Awaitable[None]]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def periodic(name: str, step: Step, interval_s: Callable[[web.Application], float]) -> CleanupCtx:
    """A ``cleanup_ctx`` that runs ``step(app)`` at once and then every ``interval_s(app)`` seconds."""

    async def loop(app: web.Application) -> None:
        while True:
            try:
                await step(app)
            except OverloadedError as exc:  # storage down or busy: no bug to trace
                log.warning("%s skipped: %s", name, exc)
            except Exception:  # a failed pass must not end the schedule; the next one retries
                log.exception("%s failed", name)
            await asyncio.sleep(interval_s(app))

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app), name=f"collector-{name}")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
