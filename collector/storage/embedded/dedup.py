"""The in-memory dedup index: batch_id -> a 64-bit fingerprint of the sha256 for recent batches.

Holds every batch created within ``dedup_window_days`` (filled from DuckDB at start-up) and every
batch this process accepted in the last day whatever its age, so a retry is answered from memory
while its first copy may still be in the spool. Older batches are looked up in DuckDB instead
(``WHERE created_at = ? AND batch_id = ?``). No unique index exists in DuckDB on purpose: ART
indexes have WAL-replay bugs after a crash (duckdb#18732); this index is the uniqueness guarantee.

Layout: sorted pages of parallel ``array`` columns (a one-level B+-tree). Each page holds the
batch_id's high and low 64 bits and the fingerprint (``array('Q')``, 8 bytes each), and the expiry
hour as an offset from the page's base hour (``array('H')``, 2 bytes; 4 for a window over ~7 years):
26 bytes per entry. A list of each page's lowest 128-bit key routes a lookup (``bisect`` on the
list, then on the page's columns), so a get is two C-level binary searches and an add one
``array.insert`` per column, whose memmove is bounded by the page size (at most ``page_entries``,
1024: 8 KiB a column), never by the index size. Pages split in two when full and merge with a
neighbour below a quarter full, so temporary memory is at most one page.

Answers are exact: the key is the full 128-bit UUID, so an id never added is never "known". The
stored sha256 is reduced to its first 64 bits, which is enough for what the index is asked (is a
retry the same body as the stored one, else 409): a different body passes as "the same" only if its
sha256 agrees on 64 bits, by accident 1 in 2^64 per conflicting retry, on purpose ~2^64 sha256
evaluations (a second preimage of the prefix) by the one party who knows the random batch_id, its own
install, for no gain: the collector then keeps the first copy and answers ``duplicate`` instead of
409, and stores nothing. Batches older than the window are compared in full from DuckDB.

Expiry is exact but reclaimed lazily: :meth:`prune` moves a limit hour (entries expiring before it
are invisible at once and no longer counted by ``len``) and frees their memory in bounded sweeps
(at most ``sweep_entries`` per call, started once they exceed 1/64 of the entries), so an hourly
expiry never stalls the event loop for a pass over the whole index.

Memory: about 28 bytes per batch (26 in the columns, the rest array over-allocation and page
headers), 30 of process RSS, against ~240 for a dict of strings (bench/dedup.py, docs/performance.md):
1M installs sending one batch a day keep 35M entries in 35 days, about 1 GB. A get costs a few
microseconds, an add a few more (CPython on the 2-core development machine).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Final

__all__ = ["DedupIndex", "fingerprint"]

_HOUR_S: Final = 3600
_MIN_RESIDENCY_S: Final = 86400
"""An accepted batch stays indexed at least this long, so it is in DuckDB before only DuckDB can answer for it."""
_MASK64: Final = (1 << 64) - 1
_PAGE_ENTRIES: Final = 1024
"""A page splits past this many entries. Half a page's columns move on an insert (~9 KiB on average, a few us
when cold in cache); each page costs ~400 bytes of headers (~0.6 byte an entry at ~700 entries a page)."""
_SWEEP_ENTRIES: Final = 1 << 16
"""Entries a prune call may scan to reclaim expired ones (~40 ns each in CPython: ~3 ms)."""

_OFFSET_MAX: Final = 0xFFFF
"""Expiry hours are kept as 16-bit offsets from their page's base hour (7.4 years of range); a page whose hours
span more (a window over ~7 years) keeps 32-bit offsets instead."""


def fingerprint(sha256: str) -> int:
    """The first 64 bits of a hex sha256: what the index keeps and compares (see the module docstring)."""
    return int(sha256[:16], 16)


def _key(batch_id: str) -> int:
    # The 128-bit value of the UUID text. fromhex accepts only hex digits (and spaces between pairs),
    # so with 36 characters and 16 bytes this is exactly the UUID: no other string aliases one.
    raw = bytes.fromhex(batch_id.replace("-", ""))
    if len(raw) != 16 or len(batch_id) != 36:
        raise ValueError(f"batch_id {batch_id!r} is not a UUID")
    return int.from_bytes(raw)


def _offsets(hours: list[int], base: int) -> array[int]:
    top = max(hours, default=base)
    return array("H" if top - base <= _OFFSET_MAX else "I", [hour - base for hour in hours])


class _Page:
    """Parallel columns sorted by key: batch_id high and low 64 bits, fingerprint, expiry hour - ``base``."""

    __slots__ = ("base", "fps", "his", "los", "offs")

    def __init__(self, his: array[int], los: array[int], fps: array[int], offs: array[int], base: int) -> None:
        self.his, self.los, self.fps, self.offs, self.base = his, los, fps, offs, base

    @classmethod
    def empty(cls) -> _Page:
        return cls(array("Q"), array("Q"), array("Q"), array("H"), 0)

    def columns(self) -> tuple[array[int], array[int], array[int], array[int]]:
        return self.his, self.los, self.fps, self.offs

    def hours(self) -> list[int]:
        return [self.base + offset for offset in self.offs]

    def rebase(self, hour: int, floor: int) -> None:
        """Offsets from a base that ``hour`` fits too: down to ``floor`` if 16 bits still span it, else 32-bit."""
        hours = self.hours()
        base, top = min([*hours, hour]), max([*hours, hour])
        if top - floor <= _OFFSET_MAX:
            base = min(base, floor)  # room below for later hours
        self.offs = array("H" if top - base <= _OFFSET_MAX else "I", [h - base for h in hours])
        self.base = base

    def slice(self, start: int, stop: int) -> _Page:
        return _Page(self.his[start:stop], self.los[start:stop], self.fps[start:stop], self.offs[start:stop], self.base)

    def without(self, dead: list[int]) -> _Page:
        """A copy without the entries at the (sorted) positions ``dead``."""
        # Copies the runs between dead positions: O(len(dead)) slices, where a del per dead entry would
        # memmove the page once per entry.
        kept = self.slice(0, 0)
        for start, stop in zip([-1, *dead], [*dead, len(self.his)], strict=True):
            for column, source in zip(kept.columns(), self.columns(), strict=True):
                column += source[start + 1 : stop]
        return kept

    def joined(self, other: _Page) -> _Page:
        """This page's entries followed by ``other``'s (which sort after them)."""
        base = min(self.base, other.base)
        if self.base != other.base or self.offs.typecode != other.offs.typecode:
            offs = _offsets(self.hours() + other.hours(), base)
        else:
            offs = self.offs + other.offs
        return _Page(self.his + other.his, self.los + other.los, self.fps + other.fps, offs, base)


class DedupIndex:
    """Recent batch ids and a fingerprint of their stored bytes, expiring by the hour; see the module docstring."""

    def __init__(
        self, *, window_s: int, page_entries: int = _PAGE_ENTRIES, sweep_entries: int = _SWEEP_ENTRIES
    ) -> None:
        """``window_s``: the dedup window. ``page_entries`` and ``sweep_entries`` tune memory against speed
        (tests make them small to exercise splits, merges and sweeps)."""
        self.window_s = window_s
        self._split_above = max(page_entries, 2)
        self._merge_below = self._split_above // 4
        self._sweep_entries = sweep_entries
        self._bounds: list[int] = [0]
        """Each page's lowest key (page 0's is 0): page p holds keys in [bounds[p], bounds[p + 1])."""
        self._pages: list[_Page] = [_Page.empty()]
        self._limit = 0
        """Hour before which entries are expired: invisible now, removed by a later sweep."""
        self._hours: dict[int, int] = {}
        """Live (unexpired) entries per expiry hour: ~one key per hour of the window, so prune is exact and cheap."""
        self._live = 0
        self._stored = 0
        self._cursor = 0
        """Next page of the sweep in progress (0: none)."""

    def __len__(self) -> int:
        return self._live

    @property
    def stored(self) -> int:
        """Entries held in memory: ``len`` plus expired ones a sweep has not reclaimed yet."""
        return self._stored

    def cutoff_s(self, now_s: float) -> float:
        """Batches created before this epoch second are answered by DuckDB, not by the index alone."""
        return now_s - self.window_s

    def get(self, batch_id: str) -> int | None:
        """The sha256 :func:`fingerprint` stored for ``batch_id``, or ``None`` when the index does not know it."""
        p, i, found = self._find(_key(batch_id))
        if not found:
            return None
        page = self._pages[p]
        return page.fps[i] if page.base + page.offs[i] >= self._limit else None

    def matches(self, batch_id: str, sha256: str) -> bool | None:
        """Whether ``batch_id`` was stored with this (hex) sha256: ``None`` when unknown, ``False`` means 409."""
        stored = self.get(batch_id)
        return None if stored is None else stored == fingerprint(sha256)

    def add(self, batch_id: str, sha256: str, *, created_s: float, now_s: float) -> None:
        """Remember a stored batch until it has left the window and spent a day here (a second add replaces it)."""
        key = _key(batch_id)
        fp = fingerprint(sha256)
        # Never before the limit: an entry must stay until a prune that comes after it (a clock gone back).
        hour = max(int(max(created_s, now_s - self.window_s + _MIN_RESIDENCY_S)) // _HOUR_S, self._limit)
        p, i, found = self._find(key)
        page = self._pages[p]
        if found:
            old = page.base + page.offs[i]
            if old >= self._limit:
                self._uncount(old)
            page.fps[i] = fp
            try:
                page.offs[i] = hour - page.base
            except OverflowError:  # below the page's base or beyond its offsets' span (rare): rebase it
                page.rebase(hour, int(self.cutoff_s(now_s)) // _HOUR_S)
                page.offs[i] = hour - page.base
        else:
            try:  # the offset first: it is the one column that can refuse a value
                page.offs.insert(i, hour - page.base)
            except OverflowError:
                # Rebased as low as this window's cutoff, the page takes every later hour for ~7 years.
                page.rebase(hour, int(self.cutoff_s(now_s)) // _HOUR_S)
                page.offs.insert(i, hour - page.base)
            page.his.insert(i, key >> 64)
            page.los.insert(i, key & _MASK64)
            page.fps.insert(i, fp)
            self._stored += 1
            if len(page.his) > self._split_above:
                self._split(p)
        self._hours[hour] = self._hours.get(hour, 0) + 1
        self._live += 1

    def forget(self, batch_ids: Iterable[str]) -> None:
        """Drop ids (after a data-subject deletion, so the install may send them again)."""
        for batch_id in batch_ids:
            p, i, found = self._find(_key(batch_id))
            if not found:
                continue
            page = self._pages[p]
            hour = page.base + page.offs[i]
            for column in page.columns():
                del column[i]
            self._stored -= 1
            if hour >= self._limit:
                self._uncount(hour)
            self._shrunk(p)

    def prune(self, now_s: float) -> int:
        """Drop entries whose expiry hour lies before the window; returns how many went.

        They are gone for :meth:`get` and ``len`` at once; their memory is reclaimed by bounded sweeps
        over later calls (the store prunes after every segment load, about every ``load_interval_s``).
        """
        limit = int(self.cutoff_s(now_s)) // _HOUR_S
        dropped = 0
        if limit > self._limit:
            self._limit = limit
            for hour in [h for h in self._hours if h < limit]:
                dropped += self._hours.pop(hour)
            self._live -= dropped
        self._sweep()
        return dropped

    # -- internals ---------------------------------------------------------------------------------

    def _find(self, key: int) -> tuple[int, int, bool]:
        """The page for ``key``, the position of ``key`` in it (or where it would go), and whether it is there."""
        p = bisect_right(self._bounds, key) - 1
        page = self._pages[p]
        his, los = page.his, page.los
        hi = key >> 64
        lo = key & _MASK64
        i = bisect_left(his, hi)
        if i == len(his) or his[i] != hi:
            return p, i, False
        if los[i] >= lo:
            return p, i, los[i] == lo
        # Several ids share these high 64 bits (rare by chance, possible by choice): search their low bits.
        j = bisect_right(his, hi, i)
        i = bisect_left(los, lo, i, j)
        return p, i, i < j and los[i] == lo

    def _uncount(self, hour: int) -> None:
        self._live -= 1
        left = self._hours[hour] - 1
        if left:
            self._hours[hour] = left
        else:
            del self._hours[hour]

    def _split(self, p: int) -> None:
        page = self._pages[p]
        mid = len(page.his) // 2
        right = page.slice(mid, len(page.his))
        self._pages[p] = page.slice(0, mid)
        self._pages.insert(p + 1, right)
        self._bounds.insert(p + 1, right.his[0] << 64 | right.los[0])

    def _shrunk(self, p: int) -> None:
        """Merge page ``p`` with a neighbour once it is under a quarter full, so pages stay dense."""
        if len(self._pages[p].his) >= self._merge_below or len(self._pages) == 1:
            return
        q = p - 1 if p else 0
        self._pages[q] = self._pages[q].joined(self._pages[q + 1])
        del self._pages[q + 1]
        del self._bounds[q + 1]
        if len(self._pages[q].his) > self._split_above:
            self._split(q)

    def _sweep(self) -> None:
        """Remove expired entries from up to ``sweep_entries`` entries' worth of pages, resuming where the last stopped."""
        if self._cursor == 0 and self._stored - self._live <= self._stored >> 6:
            return  # no sweep in progress, and expired entries are under 1/64 of memory: not worth one yet
        limit = self._limit
        budget = self._sweep_entries
        while budget > 0 and self._cursor < len(self._pages):
            p = self._cursor
            page = self._pages[p]
            budget -= len(page.his) + 1
            threshold = limit - page.base  # offsets below it are expired; none can be when it is <= 0
            dead = [i for i, offset in enumerate(page.offs) if offset < threshold] if threshold > 0 else []
            if dead:
                self._pages[p] = page.without(dead)
                self._stored -= len(dead)
                self._shrunk(p)  # a merge with a neighbour may leave that page's rest to the next sweep
            self._cursor = p + 1
        if self._cursor >= len(self._pages):
            self._cursor = 0
