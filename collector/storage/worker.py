"""A thread that owns one database session and runs submitted jobs on it, one at a time, in order.

DuckDB connections (and psycopg sessions) are not to be shared between threads, and DuckDB wants few,
large write transactions: so each backend gives its writes to one :class:`Worker` (datasette's
pattern), and reads take a fresh cursor in a pool thread instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Worker"]

C = TypeVar("C")
T = TypeVar("T")

_Job = tuple[Callable[[C], object], concurrent.futures.Future[object]]


class Worker(Generic[C]):
    """Runs ``job(session)`` for each submitted job in a dedicated thread; :meth:`stop` drains the queue first."""

    def __init__(self, name: str, session: C, *, nice: int = 0) -> None:
        self.name = name
        self.nice = nice
        """Added to the thread's CPU scheduling niceness (Linux: per thread); 0 leaves it as the process's."""
        self.session = session
        """The object every job receives (owned by the worker thread while it runs)."""
        self._jobs: queue.SimpleQueue[_Job[C] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._depth = 0

    @property
    def depth(self) -> int:
        """Jobs queued or running."""
        return self._depth

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, job: Callable[[C], T]) -> concurrent.futures.Future[T]:
        """Queue ``job``; its result (or exception) arrives in the returned future."""
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._depth += 1
        self._jobs.put((job, future))  # type: ignore[arg-type]  # a Future[T] is a Future[object] here
        return future

    async def run(self, job: Callable[[C], T]) -> T:
        """Submit ``job`` and await its result on the running event loop."""
        return await asyncio.wrap_future(self.submit(job))

    def run_sync(self, job: Callable[[C], T]) -> T:
        """Submit ``job`` and block until it is done."""
        return self.submit(job).result()

    def _main(self) -> None:
        if self.nice > 0:
            # Linux schedules threads as tasks: PRIO_PROCESS with this thread's id renices it alone. Lowering
            # a priority needs no privilege; where it is not supported the thread just runs at the usual one.
            with contextlib.suppress(OSError, AttributeError):
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.nice)
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job(self.session))
                except BaseException as exc:  # noqa: BLE001  # delivered to the caller's future, who decides
                    future.set_exception(exc)
            self._depth -= 1
