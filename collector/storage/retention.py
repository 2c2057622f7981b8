"""Retention SQL, the same on both backends: data dated before the cutoff day is deleted.

Rollup rows that carry an install id (``report_days``) expire with the raw rows. The schedule that calls
this lives with the app's other jobs (:mod:`collector.web.jobs`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from collector.reports import rollup as reports_rollup

__all__ = ["cutoff_day", "purge"]


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
    con.execute("DELETE FROM snapshot_values WHERE taken_at < ?", [start])
    con.execute("DELETE FROM batches WHERE created_at < ?", [start])
    return ids, int(row[0]) if row else 0
