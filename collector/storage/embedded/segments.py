"""Spool segments into DuckDB: the load of one closed segment, the replay of a spool after a crash, and set-aside segments.

Runs only in the store's writer thread (or at start-up, before that thread exists). A segment is
loaded in ONE transaction (its rows plus its row in ``loaded_segments``), so replaying a segment after
a crash either finds it loaded or loads it whole.

A segment the database keeps refusing (a full disk, a failing device) is renamed ``*.failed``, which
turns ``/readyz`` to 503, and is retried (:meth:`SegmentLoader.retry`) until it loads: its batches
were acknowledged, so it is never dropped. Data-subject requests wait for it (the store answers them
503 meanwhile), so no copy of an install's batches is ever outside what they cover.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import duckdb
import orjson

from collector.storage.rows import insert_lines

from .spool import (
    SET_ASIDE_SUFFIX,
    fsync_dir,
    list_segments,
    list_set_aside,
    segment_name,
    segment_seq,
    truncate_torn_tail,
)

__all__ = ["SegmentLoader", "last_loaded_name", "load_segment", "loaded_segment_names"]

log = logging.getLogger(__name__)

_LOAD_ATTEMPTS: Final = 3
_COUNT_CHUNK: Final = 1024 * 1024


def load_segment(
    con: Any, path: Path, *, name: str | None = None, unlinked: list[str] | tuple[str, ...] = ()
) -> tuple[int, int]:
    """Load one closed segment file in one transaction and record it in ``loaded_segments``.

    Returns ``(batches, snapshots)`` inserted. The caller deletes the file after this returns.
    ``name`` is the segment name recorded (default ``path.name``; a set-aside file is recorded under
    its segment name). ``unlinked`` names earlier segments whose deletion is already durable: their
    rows are no longer needed for replay and are dropped in the same transaction, so the table stays
    a few rows long.
    """
    con.execute("BEGIN")
    try:
        batches, snapshots = insert_lines(con, path)
        if unlinked:
            con.execute("DELETE FROM loaded_segments WHERE list_contains(?, name)", [list(unlinked)])
        con.execute(
            "INSERT INTO loaded_segments VALUES (?, ?, ?)",
            [name or path.name, dt.datetime.now(dt.UTC).replace(tzinfo=None), batches],
        )
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full) has already ended the transaction: its ROLLBACK would raise and hide why.
        with contextlib.suppress(duckdb.Error):
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


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(_COUNT_CHUNK):
            lines += chunk.count(b"\n")
    return lines


def _why(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class SegmentLoader:
    """Loads closed segments (writer thread only) and keeps the counters ``/metrics`` shows."""

    def __init__(self) -> None:
        self.segments_loaded = 0
        self.last_load_s = 0.0
        """Duration of the most recent segment load, in seconds."""
        self.set_aside_segments = 0
        """Segments set aside as ``*.failed`` and not yet loaded (``/readyz`` fails while any are)."""
        self.set_aside_lines = 0
        """Acknowledged batches in those segments (counted as pending, so ingest stops at the limit)."""
        self._set_aside: dict[int, tuple[Path, int]] = {}  # seq -> (the .failed file, its lines)
        self._unlinked: list[str] = []  # segment deletions already durable

    def replay(self, con: Any, spool_dir: Path) -> int:
        """Load every segment a crash left behind (cutting a torn last line); returns the next sequence number.

        A segment that cannot be loaded now is set aside (and retried later) instead of stopping the start.
        """
        segments = list_segments(spool_dir)
        set_aside = list_set_aside(spool_dir)
        names = [p.name for _, p in segments] + [segment_name(seq) for seq, _ in set_aside]
        loaded = loaded_segment_names(con, names)
        for seq, path in set_aside:
            if segment_name(seq) in loaded:
                path.unlink()  # loaded by a retry that crashed before deleting the file
            else:
                self._set_aside[seq] = (path, _count_lines(path))
        self.retry(con)
        for seq, path in segments:
            if path.name not in loaded and truncate_torn_tail(path) > 0:
                started = time.perf_counter()
                try:
                    batches, _ = load_segment(con, path)
                except (duckdb.Error, OSError) as exc:
                    log.error("replaying spool segment %s failed: %s", path.name, _why(exc))
                    self._set_aside_file(seq, path, _count_lines(path))
                    continue
                self.last_load_s = time.perf_counter() - started
                log.info("replayed spool segment %s (%d batches)", path.name, batches)
            path.unlink()
        self._count()
        if segments or set_aside:
            fsync_dir(spool_dir)
        last = last_loaded_name(con)
        seqs = [seq for seq, _ in segments + set_aside] + [(segment_seq(last) or 0) if last else 0]
        return max(seqs) + 1

    def load_closed(self, con: Any, path: Path, lines: int) -> int:
        """Load ``path`` (holding ``lines`` batches) and delete it; after a few failed attempts set it aside."""
        # Retries a few times (e.g. a transient disk error); then sets the file aside, so one bad segment
        # cannot stall every later one. :meth:`retry` keeps trying it.
        seq = segment_seq(path.name) or 0
        for attempt in range(_LOAD_ATTEMPTS):
            started = time.perf_counter()
            try:
                batches, _ = load_segment(con, path, unlinked=self._unlinked)
            except (duckdb.Error, OSError) as exc:
                log.error("loading spool segment %s failed (attempt %d): %s", path.name, attempt + 1, _why(exc))
                time.sleep(0.2 * 2**attempt)
                continue
            self._loaded(path, seq, started)  # outside the try: once committed, a failure here must not reload
            return batches
        self._set_aside_file(seq, path, lines)
        self._count()
        return 0

    def retry(self, con: Any) -> int:
        """Try each set-aside segment once, oldest first; returns the batches loaded (0 when none is waiting)."""
        loaded = 0
        for seq, (path, _lines) in sorted(self._set_aside.items()):
            started = time.perf_counter()
            try:
                batches, _ = load_segment(con, path, name=segment_name(seq), unlinked=self._unlinked)
            except (duckdb.Error, OSError) as exc:
                log.warning("set-aside spool segment %s still cannot be loaded: %s", segment_name(seq), _why(exc))
                continue
            del self._set_aside[seq]
            self._loaded(path, seq, started)
            loaded += batches
            log.info("set-aside spool segment %s loaded (%d batches)", segment_name(seq), batches)
        self._count()
        return loaded

    def set_aside_batches(self) -> Iterator[tuple[str, str, str]]:
        """``(batch_id, sha256, created_at)`` of every batch in a set-aside segment (for the dedup index)."""
        for path, _lines in self._set_aside.values():
            with path.open("rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        item = orjson.loads(line)
                        yield item["batch"]["batch_id"], item["sha256"], item["batch"]["created_at"]

    def _loaded(self, path: Path, seq: int, started: float) -> None:
        self.last_load_s = time.perf_counter() - started
        self.segments_loaded += 1
        self._unlinked = []
        path.unlink()
        fsync_dir(path.parent)
        self._unlinked.append(segment_name(seq))

    def _set_aside_file(self, seq: int, path: Path, lines: int) -> None:
        target = path.with_name(path.name + SET_ASIDE_SUFFIX)
        try:
            path.rename(target)
            fsync_dir(path.parent)
        except OSError as exc:  # still retried under its own name (and replayed as a segment after a restart)
            log.error("renaming spool segment %s failed: %s", path.name, exc.strerror)
        else:
            path = target
        self._set_aside[seq] = (path, lines)
        log.error(
            "spool segment %s set aside as *%s and retried; its batches are not in the database yet",
            segment_name(seq),
            SET_ASIDE_SUFFIX,
        )

    def _count(self) -> None:
        # Plain ints, read by the event loop's thread: the dict itself is only touched in the writer thread.
        self.set_aside_segments = len(self._set_aside)
        self.set_aside_lines = sum(lines for _, lines in self._set_aside.values())
