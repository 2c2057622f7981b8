"""Spool segments into DuckDB: the load of one closed segment, and the replay of a spool after a crash.

Runs only in the store's writer thread (or at start-up, before that thread exists). A segment is
loaded in ONE transaction (its rows plus its row in ``loaded_segments``), so replaying a segment after
a crash either finds it loaded or loads it whole.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any, Final

import duckdb

from collector.storage.rows import insert_lines

from .spool import fsync_dir, list_segments, segment_seq, truncate_torn_tail

__all__ = ["SegmentLoader", "last_loaded_name", "load_segment", "loaded_segment_names"]

log = logging.getLogger(__name__)

_LOAD_ATTEMPTS: Final = 3


def load_segment(con: Any, path: Path, *, unlinked: list[str] | tuple[str, ...] = ()) -> tuple[int, int]:
    """Load one closed segment file in one transaction and record it in ``loaded_segments``.

    Returns ``(batches, snapshots)`` inserted. The caller deletes the file after this returns.
    ``unlinked`` names earlier segments whose deletion is already durable: their rows are no longer
    needed for replay and are dropped in the same transaction, so the table stays a few rows long.
    """
    con.execute("BEGIN")
    try:
        batches, snapshots = insert_lines(con, path)
        if unlinked:
            con.execute("DELETE FROM loaded_segments WHERE list_contains(?, name)", [list(unlinked)])
        con.execute(
            "INSERT INTO loaded_segments VALUES (?, ?, ?)",
            [path.name, dt.datetime.now(dt.UTC).replace(tzinfo=None), batches],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return batches, snapshots


def loaded_segment_names(con: Any, names: list[str]) -> set[str]:
    """Which of ``names`` are already recorded in ``loaded_segments``."""
    if not names:
        return set()
    rows = con.execute("SELECT name FROM loaded_segments WHERE list_contains(?, name)", [names]).fetchall()
    return {row[0] for row in rows}


def last_loaded_name(con: Any) -> str | None:
    """The newest segment name recorded as loaded (sequence numbers continue after it)."""
    row = con.execute("SELECT max(name) FROM loaded_segments").fetchone()
    return None if row is None else row[0]


class SegmentLoader:
    """Loads closed segments (writer thread only) and keeps the counters ``/metrics`` shows."""

    def __init__(self) -> None:
        self.segments_loaded = 0
        self.load_failures = 0
        """Segments that could not be loaded and were set aside as ``*.failed`` (``/readyz`` then fails)."""
        self.last_load_s = 0.0
        """Duration of the most recent segment load, in seconds."""
        self._unlinked: list[str] = []  # segment deletions already durable

    def replay(self, con: Any, spool_dir: Path) -> int:
        """Load every segment a crash left behind (cutting a torn last line); returns the next sequence number."""
        segments = list_segments(spool_dir)
        loaded = loaded_segment_names(con, [p.name for _, p in segments])
        for _seq, path in segments:
            if path.name not in loaded and truncate_torn_tail(path) > 0:
                batches, _ = load_segment(con, path)
                log.info("replayed spool segment %s (%d batches)", path.name, batches)
            path.unlink()
        if segments:
            fsync_dir(spool_dir)
        last = last_loaded_name(con)
        seqs = [seq for seq, _ in segments] + [(segment_seq(last) or 0) if last else 0]
        return max(seqs) + 1

    def load_closed(self, con: Any, path: Path) -> int:
        """Load ``path`` and delete it; after a few failed attempts set it aside as ``<name>.failed``."""
        # Retries a few times (e.g. a transient disk error); then sets the file aside for an operator,
        # so one bad segment cannot stall every later one.
        for attempt in range(_LOAD_ATTEMPTS):
            started = time.perf_counter()
            try:
                batches, _ = load_segment(con, path, unlinked=self._unlinked)
            except (duckdb.Error, OSError) as exc:
                log.error("loading spool segment %s failed (attempt %d): %s", path.name, attempt + 1,
                          str(exc).splitlines()[0])  # fmt: skip
                time.sleep(0.2 * 2**attempt)
                continue
            self.last_load_s = time.perf_counter() - started
            self.segments_loaded += 1
            self._unlinked = []
            path.unlink()
            fsync_dir(path.parent)
            self._unlinked.append(path.name)
            return batches
        self.load_failures += 1
        path.rename(path.with_name(path.name + ".failed"))
        log.error("spool segment %s set aside as %s.failed; its batches are not in the database", path.name, path.name)
        return 0
