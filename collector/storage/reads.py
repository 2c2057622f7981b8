"""The read pool: report and lookup queries run in a bounded pool of their own threads.

Reads never share the default executor with anything else (the spool's fsync, DNS, ...): a flood of
slow report queries then waits for a free reader instead of delaying the acknowledgement of batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["READERS", "ReadPool"]

T = TypeVar("T")

READERS: Final = 4
"""Read threads per collector: DuckDB parallelises each query over every core already."""


class ReadPool:
    """``await pool.run(fn)`` runs ``fn()`` in one of :data:`READERS` threads."""

    def __init__(self, cursor: Callable[[], Any], *, name: str) -> None:
        self.cursor = cursor
        """Returns a fresh cursor for one read (the caller closes it)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=READERS, thread_name_prefix=name)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a read thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        """Wait for running reads, then stop the threads."""
        self._pool.shutdown(wait=True)
