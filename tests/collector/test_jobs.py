"""The collector's background schedule: a failed pass is logged and the next one still runs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from collector.errors import UnavailableError
from collector.web.jobs import periodic


async def _run_until_called(step_error: Exception, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    calls = 0
    again = asyncio.Event()

    async def step(app: web.Application) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            again.set()
        raise step_error

    ctx = periodic("test-job", step, lambda app: 0.0)(web.Application())
    with caplog.at_level(logging.WARNING, logger="collector.web.jobs"):
        await ctx.__anext__()
        await asyncio.wait_for(again.wait(), timeout=10)  # the schedule went on after a failed pass
        with pytest.raises(StopAsyncIteration):
            await ctx.__anext__()
    return [r for r in caplog.records if r.name == "collector.web.jobs"]


async def test_a_pass_refused_by_storage_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    """An outage (a 503 to requests) is not a bug: a warning naming the job, without a traceback."""
    records = await _run_until_called(UnavailableError("the lake's object store is unavailable"), caplog)
    assert records
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    assert records[0].getMessage() == "test-job skipped: the lake's object store is unavailable"


async def test_a_failing_pass_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Anything else is a bug: logged as an error with its traceback, and the schedule goes on."""
    records = await _run_until_called(ValueError("boom"), caplog)
    assert records
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in records)
