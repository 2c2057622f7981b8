"""The retention schedule: raw snapshots and batches older than ``retention_days`` are deleted.

The SQL is :func:`collector.storage.retention.purge` (rollup rows carrying an install id expire with the
raw rows); the job runs once at start-up and then every ``retention_interval_s``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from collector.storage.retention import cutoff_day
from collector.web.jobs import periodic
from collector.web.keys import CONFIG, STORE

__all__ = ["retention_ctx"]

log = logging.getLogger(__name__)


async def _pass(app: web.Application) -> None:
    store, config = app[STORE], app[CONFIG]
    cutoff = cutoff_day(store.clock(), config.retention_days)
    batches, snapshots = await store.purge(cutoff)
    if batches or snapshots:
        log.info("retention: deleted %d batches and %d snapshots before %s", batches, snapshots, cutoff)


retention_ctx = periodic("retention", _pass, lambda app: app[CONFIG].retention_interval_s)
"""``cleanup_ctx`` generator running the retention schedule while the app is up."""
