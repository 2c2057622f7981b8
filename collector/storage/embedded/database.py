"""The embedded store's DuckDB connection: opening the file, filling the dedup index, and how writer jobs run.

Kept apart from :mod:`.store` (which decides *when* things run) because each piece is about DuckDB
itself: its lock and error messages, the mode of a file it creates, its ``threads`` setting.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb

from collector.errors import ConfigError, InUseError, UnavailableError
from collector.storage.base import naive_utc
from schema import parse_hour

from .dedup import DedupIndex
from .segments import SegmentLoader

__all__ = ["connect", "fill_index", "in_transaction", "with_threads"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_FILL_CHUNK: Final = 50_000


def connect(path: Path) -> Any:
    """``duckdb.connect(path)``, with one-line errors: InUseError when another process holds it, else ConfigError."""
    created = not path.exists()
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise InUseError(f"database {path} is in use by another process", path="db_path") from None
        raise ConfigError(f"database {path}: cannot open ({str(exc).splitlines()[0]})", path="db_path") from None
    except duckdb.Error as exc:
        raise ConfigError(f"database {path}: cannot open ({str(exc).splitlines()[0]})", path="db_path") from None
    if created:
        # DuckDB creates the file (and later its .wal) with the process umask: the CLI sets 077, and this
        # keeps the file itself private in an application that embeds the collector with a looser umask.
        os.chmod(path, 0o600)
    # No progress bar (on by default): a long query, such as a fleet-sized rollup build, would draw one
    # into the service's log. It is a session setting, so every cursor sets it too.
    con.execute("SET enable_progress_bar = false")
    return con


def fill_index(con: Any, index: DedupIndex, loader: SegmentLoader, now: dt.datetime) -> None:
    """Add every batch created within the dedup window, and every batch of a set-aside segment, to ``index``."""
    cutoff = naive_utc(now) - dt.timedelta(seconds=index.window_s)
    result = con.execute(
        "SELECT CAST(batch_id AS VARCHAR), sha256, epoch(created_at) FROM batches WHERE created_at >= ?", [cutoff]
    )
    now_s = now.timestamp()
    # In chunks: a 35M-batch window fetched at once would hold gigabytes of Python tuples for a moment.
    while rows := result.fetchmany(_FILL_CHUNK):
        for batch_id, sha256, created_s in rows:
            index.add(batch_id, sha256, created_s=created_s, now_s=now_s)
    # Acknowledged batches waiting in set-aside segments are known too: a resend stays a duplicate.
    for batch_id, sha256, created_at in loader.set_aside_batches():
        index.add(batch_id, sha256, created_s=parse_hour(created_at, "created_at").timestamp(), now_s=now_s)


def in_transaction(fn: Callable[[Any], T], *, retry_after_s: int) -> Callable[[Any], T]:
    """A job that runs ``fn(con)`` inside BEGIN/COMMIT, rolling back if it raises.

    A COMMIT the database refuses (its disk is full or failing: the WAL cannot be written) raises
    UnavailableError (503, path ``database``): the request may be retried, and it is no bug of ours.
    """

    def job(con: Any) -> T:
        con.execute("BEGIN")
        try:
            result = fn(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        try:
            con.execute("COMMIT")
        except duckdb.Error as exc:  # the transaction is gone already: nothing to roll back
            log.error("the database refused a commit: %s", str(exc).splitlines()[0])
            raise UnavailableError(
                "the database refused the write", retry_after_s=retry_after_s, part="database"
            ) from None
        return result

    return job


def with_threads(job: Callable[[Any], T], limit: int) -> Callable[[Any], T]:
    """A job that runs ``job(con)`` with DuckDB's ``threads`` lowered to ``limit`` (0: unchanged), then restored."""
    # Writer jobs (bulk loads, rollup refreshes) run with fewer DuckDB threads so they never take every
    # core from the event loop: measured under paced load, that cut ingest p99 by more than half. Reads
    # started while no job runs keep all cores.

    def run(con: Any) -> T:
        full = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
        if not 0 < limit < full:
            return job(con)
        con.execute(f"SET threads = {limit}")
        try:
            return job(con)
        finally:
            con.execute(f"SET threads = {full}")

    return run
