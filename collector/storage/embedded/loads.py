"""Segment loads as the event loop sees them: closed segments handed to the writer, who waits, and retries.

The spool writer closes a segment on the loop; :meth:`LoadTracker.closed` queues its load in the
writer thread and counts its lines as pending until the load finishes (loaded, or set aside by
:class:`.segments.SegmentLoader`). :meth:`LoadTracker.wait_for` is how ``sync()`` waits for a segment.

A segment is set aside when the database keeps refusing it; the cause is usually outside the
collector (a full disk) and clears without telling anyone. So every set-aside segment is retried
:data:`FIRST_RETRY_S` after a failure, the wait doubling up to :data:`MAX_RETRY_S`, until none is
left; a data-subject request retries at once (:meth:`LoadTracker.all_loaded`) before it answers 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from collector.errors import UnavailableError

from .segments import SegmentLoader

__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "LoadTracker"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S: Final = 1.0
MAX_RETRY_S: Final = 30.0
"""The longest wait between retries: space given back is used within about this long. A retry that
fails costs one failed transaction per set-aside segment."""

Submit = Callable[[Callable[[Any], Any]], "concurrent.futures.Future[Any]"]


class LoadTracker:
    """Queues the loads of closed segments, resolves waiters as they finish, and retries set-aside ones."""

    def __init__(self, loader: SegmentLoader, submit: Submit, *, on_loaded: Callable[[], object]) -> None:
        self._loader = loader
        self._submit = submit
        self._on_loaded = on_loaded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._retry_task: asyncio.Task[None] | None = None
        self.closed_unloaded = 0
        """Lines of closed segments whose load has not finished."""
        self.loaded_seq = 0
        """The newest segment whose load finished (loaded or set aside)."""

    def start(self, loaded_seq: int) -> None:
        """Begin on the running loop, segments up to ``loaded_seq`` done (the replay's)."""
        self._loop = asyncio.get_running_loop()
        self.loaded_seq = loaded_seq
        self._kick()  # segments the replay had to set aside

    async def stop(self) -> None:
        """Cancel the retry schedule (set-aside segments stay on disk and are replayed at the next start)."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None

    def closed(self, seq: int, path: Path, lines: int) -> None:
        """The spool writer closed segment ``seq`` (``lines`` batches): load it in the writer thread."""
        self.closed_unloaded += lines
        assert self._loop is not None
        loop = self._loop

        def job(con: Any) -> None:
            try:
                self._loader.load_closed(con, path, lines)
            finally:  # whatever happened, waiters in sync() must not wait forever
                loop.call_soon_threadsafe(self._finished, seq, lines)

        self._submit(job)

    async def wait_for(self, seq: int) -> None:
        """Return once the load of every segment up to ``seq`` has finished."""
        if self.loaded_seq < seq:
            assert self._loop is not None
            waiter = self._loop.create_future()
            self._waiters.append((seq, waiter))
            await waiter

    async def all_loaded(
        self, write: Callable[[Callable[[Any], T]], Awaitable[T]], fn: Callable[[Any], T], *, retry_after_s: int
    ) -> T:
        """``await write(fn)`` once no segment is set aside (retrying them now first); else UnavailableError (503)."""
        if self._loader.set_aside_segments:
            await asyncio.wrap_future(self._submit(self._loader.retry))

        def job(con: Any) -> T:
            # Checked again in the writer thread, where segments are set aside: no load can slip in between.
            if self._loader.set_aside_segments:
                raise UnavailableError(
                    "acknowledged batches wait in a spool segment the database refused (see /readyz); it is retried",
                    retry_after_s=retry_after_s,
                    part="database",
                )
            return fn(con)

        return await write(job)

    def _finished(self, seq: int, lines: int) -> None:
        self.closed_unloaded -= lines
        self.loaded_seq = seq
        self._kick()  # when this one was set aside
        self._on_loaded()
        still = []
        for target, waiter in self._waiters:
            if target <= seq:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self._waiters = still

    def _kick(self) -> None:
        if self._loader.set_aside_segments and self._retry_task is None:
            assert self._loop is not None
            self._retry_task = self._loop.create_task(self._retry(), name="collector-set-aside-retry")

    async def _retry(self) -> None:
        delay = FIRST_RETRY_S
        try:
            while self._loader.set_aside_segments:
                await asyncio.sleep(delay)
                try:
                    await asyncio.wrap_future(self._submit(self._loader.retry))
                except Exception:  # the schedule must outlive any one failure; the next round tries again
                    log.exception("retrying set-aside spool segments failed")
                delay = min(delay * 2, MAX_RETRY_S)
        finally:
            self._retry_task = None
