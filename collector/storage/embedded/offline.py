"""The offline import into the embedded store (``telemetry-collector import`` without a server).

New batches are staged as spool lines, then written as one fsync'd segment (0600, like every spool
file) and loaded by the writer thread exactly as a segment the server closed, so an import that is
interrupted is replayed at the next start like any other.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collector.errors import CollectorError
from collector.storage.base import OLD_BATCH_SQL, Receipt, answer, naive_utc, spool_line
from schema import Batch, parse_hour

from .dedup import DedupIndex
from .segments import SegmentLoader
from .spool import fsync_dir, segment_name

__all__ = ["OfflineImport"]

Submit = Callable[[Callable[[Any], int]], "concurrent.futures.Future[int]"]


class OfflineImport:
    """Stages validated batches and commits them as one segment; owned by an opened :class:`EmbeddedStore`."""

    def __init__(
        self,
        *,
        spool_dir: Path,
        index: DedupIndex,
        loader: SegmentLoader,
        clock: Callable[[], dt.datetime],
        read_sync: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]],
        submit: Submit,
        take_seq: Callable[[], int],
        other: frozenset[str] = frozenset(),
    ) -> None:
        self._spool_dir = spool_dir
        self._index = index
        self._loader = loader
        self._clock = clock
        self._read_sync = read_sync
        self._submit = submit
        self._take_seq = take_seq
        self._other = other
        self._receipts: list[Receipt] = []  # the receipts of the lines staged so far

    def stage(self, batch: Batch, obj: Any, sha256: str, body_bytes: int, staged: list[Any]) -> Receipt | None:
        """Answer a known batch now (or raise 409), else stage its line in ``staged`` and return None."""
        batch_id = batch.batch_id
        known = self._index.matches(batch_id, sha256)
        now = self._clock()
        created = parse_hour(batch.created_at, "created_at")
        if known is None and created.timestamp() < self._index.cutoff_s(now.timestamp()):
            stored = self._read_sync(OLD_BATCH_SQL, [naive_utc(created), batch_id])
            known = stored[0][0] == sha256 if stored else None
        if known is not None:
            return answer(batch, sha256, known)
        staged.append(spool_line(now, sha256, body_bytes, obj, self._other))
        self._index.add(batch_id, sha256, created_s=created.timestamp(), now_s=now.timestamp())
        self._receipts.append(
            Receipt(batch_id=batch_id, sha256=sha256, snapshots=len(batch.snapshots), duplicate=False)
        )
        return None

    def commit(self, staged: list[Any]) -> list[Receipt | CollectorError]:
        """Write ``staged`` lines as one fsync'd spool segment and load it (blocking); clears the list."""
        receipts, self._receipts = self._receipts, []
        if not staged:
            return []
        path = self._spool_dir / segment_name(self._take_seq())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(staged))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)
        lines = len(staged)
        staged.clear()
        before = self._loader.set_aside_segments
        loaded = self._submit(lambda con: self._loader.load_closed(con, path, lines)).result()
        if self._loader.set_aside_segments > before:
            raise CollectorError(
                f"loading {path.name} into the database failed; it was set aside and is retried ({loaded} loaded)"
            )
        return list(receipts)
