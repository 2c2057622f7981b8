"""Retention: raw snapshots and batches older than ``retention_days`` are deleted on a schedule.

Rollup rows that carry an install id (``report_days``) expire with them. The job runs once at start-up
and then every ``retention_interval_s``, in the writer thread like every other write.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

from aiohttp import web

from . import reports_rollup
from .jobs import periodic
from .keys import CONFIG, STORE

__all__ = ["cutoff_day", "purge", "retention_ctx"]

log = logging.getLogger(__name__)


def cutoff_day(now: dt.datetime, retention_days: int) -> dt.date:
    """The first UTC day kept: data dated before it is older than ``retention_days``."""
    return (now.astimezone(dt.UTC) - dt.timedelta(days=retention_days)).date()


def purge(con: Any, cutoff: dt.date) -> tuple[list[str], int]:
    """Delete snapshots taken and batches created before ``cutoff``; returns ``(batch_ids, snapshots)`` deleted."""
    start = dt.datetime.combine(cutoff, dt.time())
    ids = [str(r[0]) for r in con.execute("SELECT batch_id FROM batches WHERE created_at < ?", [start]).fetchall()]
    reports_rollup.expire(con, cutoff)
    row = con.execute("SELECT count(*) FROM snapshots WHERE taken_at < ?", [start]).fetchone()
    con.execute("DELETE FROM snapshots WHERE taken_at < ?", [start])
    con.execute("DELETE FROM batches WHERE created_at < ?", [start])
    return ids, int(row[0]) if row else 0


async def _pass(app: web.Application) -> None:
    store, config = app[STORE], app[CONFIG]
    cutoff = cutoff_day(store.clock(), config.retention_days)
    ids, snapshots = await store.write(functools.partial(purge, cutoff=cutoff))
    store.forget_batch_ids(ids)
    if ids or snapshots:
        log.info("retention: deleted %d batches and %d snapshots before %s", len(ids), snapshots, cutoff)


retention_ctx = periodic("retention", _pass, lambda app: app[CONFIG].retention_interval_s)
"""``cleanup_ctx`` generator running the retention schedule while the app is up."""
