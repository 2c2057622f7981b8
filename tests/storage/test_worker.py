"""The worker thread: jobs in order on its own thread, and a niced worker runs at a lower CPU priority."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

import pytest

from collector.storage.worker import Worker


def _appender(n: int) -> Callable[[list[int]], None]:
    return lambda seen: seen.append(n)


def test_jobs_run_in_order_on_the_worker_thread() -> None:
    worker: Worker[list[int]] = Worker("test-worker", [])
    worker.start()
    try:
        for n in range(5):
            worker.submit(_appender(n))
        thread = worker.run_sync(lambda _: threading.current_thread().name)
    finally:
        worker.stop()
    assert worker.session == [0, 1, 2, 3, 4]
    assert thread == "test-worker"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_a_niced_worker_runs_below_the_process_and_leaves_it_alone() -> None:
    """The rollup's worker is niced so its folds yield the CPU to ingest; the rest of the process is not."""
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    niced: Worker[None] = Worker("niced", None, nice=5)
    plain: Worker[None] = Worker("plain", None)
    niced.start()
    plain.start()
    try:
        niced_priority = niced.run_sync(lambda _: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        plain_priority = plain.run_sync(lambda _: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    finally:
        niced.stop()
        plain.stop()
    assert niced_priority == min(before + 5, 19)
    assert plain_priority == before
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
