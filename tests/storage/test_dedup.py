"""The dedup index against a plain dict model: exact answers through adds, forgets, prunes, page splits and merges."""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from collector.storage.embedded.dedup import DedupIndex, fingerprint

DAY = 86400
WINDOW = 35 * DAY
T0 = 1_800_000_000  # 2027-01-15T08:00:00Z, an exact hour


def _uuid(value: int) -> str:
    return str(uuid.UUID(int=value))


def _sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _pool() -> list[str]:
    # Random ids, plus ids sharing their high 64 bits (the index must then tell them apart by the low 64).
    rng = random.Random(7)
    shared = [0, 1, rng.getrandbits(64), (1 << 64) - 1]
    ids = [_uuid(hi << 64 | lo) for hi in shared for lo in (0, 1, rng.getrandbits(64), (1 << 64) - 1)]
    return ids + [_uuid(rng.getrandbits(128)) for _ in range(24)]


POOL = _pool()
SHAS = [_sha(n) for n in range(4)]


class Model:
    """The index's contract as a plain dict: batch_id -> (sha256, expiry hour)."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self.entries: dict[str, tuple[str, int]] = {}
        self.limit = 0

    def add(self, batch_id: str, sha256: str, created_s: float, now_s: float) -> None:
        hour = int(max(created_s, now_s - self.window_s + DAY)) // 3600
        # Not before an earlier prune's limit (a clock that went back): kept until the next prune past it.
        self.entries[batch_id] = (sha256, max(hour, self.limit))

    def prune(self, now_s: float) -> int:
        self.limit = max(self.limit, int(now_s - self.window_s) // 3600)
        gone = [b for b, (_, hour) in self.entries.items() if hour < self.limit]
        for batch_id in gone:
            del self.entries[batch_id]
        return len(gone)


def check_structure(index: DedupIndex) -> None:
    """Pages sorted and routed by their bounds, sizes within limits, counts consistent with the entries."""
    bounds, pages = index._bounds, index._pages
    assert bounds[0] == 0
    assert len(bounds) == len(pages)
    keys: list[int] = []
    live_hours: dict[int, int] = {}
    for p, page in enumerate(pages):
        his, los, hours = page.his, page.los, page.hours()
        assert len(his) == len(los) == len(page.fps) == len(page.offs) <= index._split_above
        page_keys = [hi << 64 | lo for hi, lo in zip(his, los, strict=True)]
        assert page_keys == sorted(page_keys)
        upper = bounds[p + 1] if p + 1 < len(bounds) else 1 << 128
        assert all(bounds[p] <= k < upper for k in page_keys)
        keys += page_keys
        for hour in hours:
            if hour >= index._limit:
                live_hours[hour] = live_hours.get(hour, 0) + 1
    assert len(set(keys)) == len(keys) == index.stored
    assert live_hours == index._hours
    assert sum(live_hours.values()) == len(index)


class IndexMachine(RuleBasedStateMachine):
    """Random adds, gets, forgets, prunes and clock moves (small pages: many splits, merges and sweeps)."""

    @initialize(page_entries=st.sampled_from([2, 4, 8]), sweep_entries=st.sampled_from([1, 5, 1 << 16]))
    def start(self, page_entries: int, sweep_entries: int) -> None:
        self.index = DedupIndex(window_s=WINDOW, page_entries=page_entries, sweep_entries=sweep_entries)
        self.model = Model(WINDOW)
        self.now = float(T0)

    @rule(
        batch_id=st.sampled_from(POOL),
        sha=st.sampled_from(SHAS),
        age=st.integers(-2 * 3600, 60 * DAY) | st.sampled_from([0, WINDOW - DAY, WINDOW, WINDOW + 1]),
    )
    def add(self, batch_id: str, sha: str, age: int) -> None:
        self.index.add(batch_id, sha, created_s=self.now - age, now_s=self.now)
        self.model.add(batch_id, sha, self.now - age, self.now)

    @rule(batch_id=st.sampled_from(POOL), sha=st.sampled_from(SHAS))
    def get(self, batch_id: str, sha: str) -> None:
        known = self.model.entries.get(batch_id)
        assert self.index.get(batch_id) == (None if known is None else fingerprint(known[0]))
        assert self.index.matches(batch_id, sha) == (None if known is None else known[0] == sha)

    @rule(batch_ids=st.lists(st.sampled_from(POOL), max_size=6))
    def forget(self, batch_ids: list[str]) -> None:
        self.index.forget(batch_ids)
        for batch_id in batch_ids:
            self.model.entries.pop(batch_id, None)

    @rule()
    def prune(self) -> None:
        assert self.index.prune(self.now) == self.model.prune(self.now)

    @rule(seconds=st.integers(-2 * DAY, 12 * DAY) | st.sampled_from([3600, DAY, WINDOW, -3 * DAY]))
    def tick(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def same_as_model(self) -> None:
        assert len(self.index) == len(self.model.entries)
        check_structure(self.index)


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def _filled(n: int, **kw: Any) -> tuple[DedupIndex, list[str]]:
    rng = random.Random(n)
    index = DedupIndex(window_s=WINDOW, **kw)
    ids = [_uuid(rng.getrandbits(128)) for _ in range(n)]
    for i, batch_id in enumerate(ids):
        index.add(batch_id, _sha(i), created_s=T0, now_s=T0)
    return index, ids


def test_pages_split_and_merge_back_and_every_answer_stays_exact() -> None:
    """Thousands of ids over 8-entry pages, then most forgotten: the pages split, merge and still answer exactly."""
    index, ids = _filled(3000, page_entries=8)
    check_structure(index)
    assert len(index._pages) > 3000 // 8
    never = [_uuid(random.Random(1).getrandbits(128)) for _ in range(500)]
    assert all(index.get(b) is None for b in never)
    assert all(index.matches(b, _sha(i)) for i, b in enumerate(ids))
    index.forget(ids[:2900])
    check_structure(index)
    assert len(index) == 100
    assert len(index._pages) < 100
    assert all(index.get(b) is None for b in ids[:2900])
    assert all(index.matches(b, _sha(i + 2900)) for i, b in enumerate(ids[2900:]))
    index.forget(ids)
    check_structure(index)
    assert len(index) == index.stored == 0


def test_a_different_sha256_for_a_known_batch_is_a_conflict() -> None:
    """Same bytes match; other bytes do not (409). The comparison is on the first 64 bits of the sha256."""
    index = DedupIndex(window_s=WINDOW)
    batch_id = str(uuid.uuid4())
    sha = _sha(1)
    assert index.matches(batch_id, sha) is None
    index.add(batch_id, sha, created_s=T0, now_s=T0)
    assert index.matches(batch_id, sha) is True
    assert index.matches(batch_id, _sha(2)) is False
    assert index.matches(batch_id, sha[:15] + ("0" if sha[15] != "0" else "1") + sha[16:]) is False
    # Beyond the 64-bit fingerprint a difference is not seen: the documented, accepted limit.
    assert index.matches(batch_id, sha[:16] + "f" * 48) is True
    assert index.get(batch_id) == int(sha[:16], 16)


def test_prune_boundary_is_the_expiry_hour_leaving_the_window() -> None:
    """A batch created at hour H stays while the cutoff is within H, and goes once the cutoff reaches H + 1."""
    index = DedupIndex(window_s=WINDOW)
    created = T0 + 5 * 3600
    index.add(str(uuid.uuid4()), _sha(0), created_s=created + 3599, now_s=created + 3599)
    assert index.prune(created + 3600 + WINDOW - 1) == 0
    assert len(index) == 1
    assert index.prune(created + 3600 + WINDOW) == 1
    assert len(index) == 0


def test_an_old_batch_stays_a_day_after_it_was_accepted() -> None:
    """A batch created long before the window (looked up in DuckDB) is kept a day after its add, then dropped."""
    index = DedupIndex(window_s=WINDOW)
    batch_id = str(uuid.uuid4())
    index.add(batch_id, _sha(0), created_s=T0 - 300 * DAY, now_s=T0)
    assert index.prune(T0 + DAY) == 0
    assert index.get(batch_id) == fingerprint(_sha(0))
    assert index.prune(T0 + DAY + 3600) == 1
    assert index.get(batch_id) is None


def test_forget_then_add_again_stores_the_new_sha256() -> None:
    """After forget the id is unknown; a new add (other bytes) is then the one matched."""
    index, ids = _filled(50, page_entries=4)
    index.forget([ids[10], str(uuid.uuid4())])
    assert index.get(ids[10]) is None
    assert len(index) == 49
    index.add(ids[10], _sha(999), created_s=T0, now_s=T0)
    assert index.matches(ids[10], _sha(999)) is True
    assert index.matches(ids[10], _sha(10)) is False
    assert len(index) == 50
    check_structure(index)


def test_expired_entries_vanish_at_once_and_their_memory_returns_over_later_prunes() -> None:
    """Prune answers exactly at once; sweeps then reclaim the expired entries a bounded number per call."""
    index, ids = _filled(400, page_entries=8, sweep_entries=16)
    fresh = str(uuid.uuid4())
    index.add(fresh, _sha(0), created_s=T0 + 10 * DAY, now_s=T0 + 10 * DAY)
    now = T0 + WINDOW + 2 * DAY
    assert index.prune(now) == 400
    assert len(index) == 1
    assert index.get(ids[0]) is None
    assert index.get(fresh) is not None
    assert 1 < index.stored < 401  # one sweep step ran: bounded, not the whole index
    calls = 1
    while index.stored > 1:
        assert index.prune(now) == 0
        calls += 1
    assert calls > 2
    check_structure(index)
    index.add(ids[0], _sha(5), created_s=now, now_s=now)
    assert index.matches(ids[0], _sha(5)) is True


def test_an_expired_entry_not_yet_swept_is_replaced_by_a_new_add() -> None:
    """Adding an id whose old entry expired but still sits in memory counts it once, with the new sha256."""
    index = DedupIndex(window_s=WINDOW, sweep_entries=0)
    batch_id = str(uuid.uuid4())
    index.add(batch_id, _sha(1), created_s=T0, now_s=T0)
    now = T0 + WINDOW + 2 * DAY
    assert index.prune(now) == 1
    assert index.stored == 1
    index.add(batch_id, _sha(2), created_s=now, now_s=now)
    assert len(index) == index.stored == 1
    assert index.matches(batch_id, _sha(2)) is True
    check_structure(index)


def test_after_the_clock_went_back_an_add_stays_until_a_later_prune() -> None:
    """An add whose expiry lies before the last prune's limit is not lost at once: the next prune past it drops it."""
    index = DedupIndex(window_s=WINDOW)
    assert index.prune(T0 + 10 * DAY) == 0
    batch_id = str(uuid.uuid4())
    index.add(batch_id, _sha(0), created_s=T0 - 100 * DAY, now_s=T0)  # expires T0 - 34 days: before the limit
    assert index.get(batch_id) == fingerprint(_sha(0))
    assert index.prune(T0 + 10 * DAY) == 0
    assert len(index) == 1
    assert index.prune(T0 + 10 * DAY + 3600) == 1


def test_hours_spanning_more_than_16_bits_of_offsets_are_kept_exactly() -> None:
    """A 10-year window puts hours over 7.4 years apart in one page: it moves to 32-bit offsets, answers unchanged."""
    window = 3650 * DAY
    index = DedupIndex(window_s=window, page_entries=4)
    early, late = str(uuid.UUID(int=1 << 64)), str(uuid.UUID(int=2 << 64))
    index.add(early, _sha(1), created_s=T0, now_s=T0)
    later = T0 + 9 * 365 * DAY
    index.add(late, _sha(2), created_s=later, now_s=later)
    assert index._pages[0].offs.typecode == "I"
    assert index.matches(early, _sha(1)) is True
    assert index.matches(late, _sha(2)) is True
    check_structure(index)
    assert index.prune(T0 + 3600 + window) == 1
    assert index.get(early) is None
    assert index.get(late) == fingerprint(_sha(2))


def test_merging_pages_with_different_base_hours_keeps_every_expiry() -> None:
    """Pages whose hour offsets count from different bases merge into one that still expires each entry on time."""
    index = DedupIndex(window_s=WINDOW, page_entries=8)
    ids = [str(uuid.UUID(int=(n + 1) << 64)) for n in range(12)]
    for n, batch_id in enumerate(ids):
        index.add(batch_id, _sha(n), created_s=T0 + n * 3600, now_s=T0 + n * 3600)
    assert [len(page.his) for page in index._pages] == [4, 8]
    right = index._pages[1]
    right.rebase(right.hours()[0], right.base - 1000)  # as an add with the clock gone back would
    assert index._pages[0].base != right.base
    index.forget(ids[1:4])  # the first page drops to one entry, merges with the second (9 > 8: splits again)
    assert [len(page.his) for page in index._pages] == [4, 5]
    assert index._pages[0].base == index._pages[1].base
    check_structure(index)
    for n in [0, *range(4, 12)]:  # entry n expires at hour n: one prune past each drops exactly it
        assert index.get(ids[n]) == fingerprint(_sha(n))
        assert index.prune(T0 + WINDOW + (n + 1) * 3600) == 1
        assert index.get(ids[n]) is None
    assert len(index) == 0


@pytest.mark.parametrize(
    "bad",
    ["", "not-a-uuid", "0x" + "0" * 30 + "-" * 4, "+" + "1" * 31 + "-" * 4, str(uuid.uuid4()) + "0", "g" * 36],
)
def test_a_batch_id_that_is_not_a_uuid_is_refused(bad: str) -> None:
    """Only UUID text is a key, so no other string can alias a real batch id."""
    index = DedupIndex(window_s=WINDOW)
    with pytest.raises(ValueError):
        index.get(bad)
    with pytest.raises(ValueError):
        index.add(bad, _sha(0), created_s=T0, now_s=T0)


def test_uuid_text_in_upper_case_is_the_same_batch() -> None:
    """The key is the 128-bit value: the same UUID in capitals is the same id (the schema only lets lowercase in)."""
    index = DedupIndex(window_s=WINDOW)
    batch_id = str(uuid.uuid4())
    index.add(batch_id, _sha(0), created_s=T0, now_s=T0)
    assert index.get(batch_id.upper()) == fingerprint(_sha(0))
