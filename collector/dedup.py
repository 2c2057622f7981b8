"""The in-memory dedup index: batch_id -> sha256 for recent batches.

Holds every batch created within ``dedup_window_days`` (filled from DuckDB at start-up) and every
batch this process accepted in the last day whatever its age, so a retry is answered from memory
while its first copy may still be in the spool. Older batches are looked up in DuckDB instead
(``WHERE created_at = ? AND batch_id = ?``). No unique index exists in DuckDB on purpose: ART
indexes have WAL-replay bugs after a crash (duckdb#18732); this index is the uniqueness guarantee.

Memory: about 200 bytes per batch; 10k installs sending one batch a day keep ~350k entries (~70 MB).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["DedupIndex"]

_HOUR_S: Final = 3600
_MIN_RESIDENCY_S: Final = 86400
"""An accepted batch stays indexed at least this long, so it is in DuckDB before only DuckDB can answer for it."""


class DedupIndex:
    """Recent batch ids and the sha256 of their stored bytes, pruned by age in hour buckets."""

    def __init__(self, *, window_s: int) -> None:
        self.window_s = window_s
        self._sha: dict[str, str] = {}
        self._buckets: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._sha)

    def cutoff_s(self, now_s: float) -> float:
        """Batches created before this epoch second are answered by DuckDB, not by the index alone."""
        return now_s - self.window_s

    def get(self, batch_id: str) -> str | None:
        """The sha256 stored for ``batch_id``, or ``None`` when the index does not know it."""
        return self._sha.get(batch_id)

    def add(self, batch_id: str, sha256: str, *, created_s: float, now_s: float) -> None:
        """Remember a stored batch until it has left the window and spent a day here."""
        self._sha[batch_id] = sha256
        expires_s = max(created_s, now_s - self.window_s + _MIN_RESIDENCY_S)
        self._buckets.setdefault(int(expires_s) // _HOUR_S, []).append(batch_id)

    def forget(self, batch_ids: Iterable[str]) -> None:
        """Drop ids (after a data-subject deletion, so the install may send them again)."""
        for batch_id in batch_ids:
            self._sha.pop(batch_id, None)

    def prune(self, now_s: float) -> int:
        """Drop entries whose whole hour bucket lies before the window; returns how many went."""
        limit = int(self.cutoff_s(now_s)) // _HOUR_S
        dropped = 0
        for hour in [h for h in self._buckets if h < limit]:
            for batch_id in self._buckets.pop(hour):
                dropped += self._sha.pop(batch_id, None) is not None
        return dropped
