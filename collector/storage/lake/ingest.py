"""How a lake collector stores batches: admission, one group commit at a time, and the offline import.

A request's batch joins the queue of the next group commit (:func:`.commit.commit_group`, which claims
each batch id in PostgreSQL so that several collectors store it once) and is answered when that commit
is done, or fails with the whole group (503: the agent retries, nothing acknowledged is lost). A batch id
already in flight in this process waits for that first copy's outcome instead of racing it.
:class:`LakeIngest` is the half of :class:`~collector.storage.lake.store.LakeStore` that does this; the
store opens the workers it uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from collector.config import CollectorConfig
from collector.errors import CollectorError, OverloadedError, UnavailableError
from collector.storage.base import Health, Receipt, answer, naive_utc, spool_line
from collector.storage.worker import Worker
from schema import Batch, parse_hour

from .commit import Item, Session, commit_group

__all__ = ["LakeIngest"]

log = logging.getLogger(__name__)

_GROUP_MAX_ITEMS: Final = 2000
"""Batches in one group commit at most (~48k snapshot rows: one Parquet file of a few MiB)."""
_OFFLINE_CHUNK: Final = 2000


class LakeIngest:
    """Admission, group commits and the offline import of a lake store (its state is set by the store)."""

    config: CollectorConfig
    clock: Callable[[], dt.datetime]
    commits: int
    commit_failures: int
    last_commit_s: float
    _health: Health
    _other: frozenset[str]
    _tmp: Path | None
    _writer: Worker[Session] | None
    _committer: Worker[Session] | None
    _queue: list[tuple[Item, asyncio.Future[Receipt]]]
    _committing: asyncio.Task[None] | None
    _inflight: dict[str, list[asyncio.Future[None]] | None]
    _staged_ids: dict[str, str]
    _classify: Callable[[BaseException], UnavailableError]
    """Which part of the lake failed (:class:`~collector.storage.lake.health.LakeHealth`)."""
    _explain: Callable[[UnavailableError], str]

    # -- ingest --------------------------------------------------------------------------------

    @property
    def pending_batches(self) -> int:
        """Batches accepted and not yet answered (queued for, or in, a group commit)."""
        return len(self._inflight)

    def check_readable(self) -> None:
        """Raise UnavailableError (503) while a part of the lake is down."""
        if not self._health.ready:
            raise UnavailableError(
                self._health.message or "the lake is unavailable",
                retry_after_s=self.config.retry_after_s,
                part=self._health.part,
            )

    def admit(self) -> None:
        """Raise 503 when a part of the lake is down (UnavailableError) or too many batches wait for a commit."""
        self.check_readable()
        if len(self._inflight) >= self.config.max_pending_batches:
            raise OverloadedError("too many batches waiting to be stored", retry_after_s=self.config.retry_after_s)

    async def ingest(self, batch: Batch, obj: Any, sha256: str, body_bytes: int) -> Receipt:
        """Store a validated batch once (committed to the lake before this returns); see :mod:`.claims`."""
        self.admit()
        batch_id = batch.batch_id
        loop = asyncio.get_running_loop()
        while batch_id in self._inflight:
            waiter = loop.create_future()
            waiters = self._inflight[batch_id]
            if waiters is None:
                waiters = self._inflight[batch_id] = []
            waiters.append(waiter)
            await waiter
        self.admit()
        self._inflight[batch_id] = None
        try:
            now = self.clock()
            created = naive_utc(parse_hour(batch.created_at, "created_at"))
            item = Item(
                batch_id=batch_id,
                sha256=sha256,
                snapshots=len(batch.snapshots),
                created=created,
                line=spool_line(now, sha256, body_bytes, obj, self._other),
            )
            future: asyncio.Future[Receipt] = loop.create_future()
            self._queue.append((item, future))
            if self._committing is None:
                self._committing = loop.create_task(self._commit_loop())
            return await asyncio.shield(future)
        finally:
            for waiter in self._inflight.pop(batch_id) or ():
                if not waiter.done():
                    waiter.set_result(None)

    def _window_start(self) -> dt.datetime:
        return naive_utc(self.clock() - dt.timedelta(days=self.config.dedup_window_days))

    async def _commit_loop(self) -> None:
        # One group commit at a time per collector: what arrives meanwhile forms the next group. Measured here,
        # two in flight made each group half as big and held the cluster's write lock longer (a commit beside
        # another's Parquet writing waits for CPU): 314 batches/s against 436 for one at a time.
        try:
            while self._queue:
                group, self._queue = self._queue[:_GROUP_MAX_ITEMS], self._queue[_GROUP_MAX_ITEMS:]
                items = [item for item, _ in group]
                started = time.perf_counter()
                worker = self._committer
                try:
                    if worker is None or self._tmp is None:
                        raise UnavailableError("the lake store is reopening", part="lake")
                    job = functools.partial(
                        commit_group, items=items, tmp_dir=self._tmp, window_start=self._window_start()
                    )
                    outcomes = await worker.run(job)
                except Exception as exc:  # noqa: BLE001  # every request of the group gets a 503, nothing is lost
                    error = exc if isinstance(exc, UnavailableError) else self._classify(exc)
                    self.commit_failures += 1
                    log.warning("lake group commit of %d batch(es) failed: %s", len(items), self._explain(error))
                    if worker is not None:
                        worker.session.drop_pg()
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.commits += 1
                self.last_commit_s = time.perf_counter() - started
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Receipt):
                        future.set_result(outcome)
                    else:
                        future.set_exception(outcome)
        finally:
            self._committing = None

    # -- offline import ------------------------------------------------------------------------

    @property
    def offline_chunk(self) -> int:
        """How many new batches the offline import stages before :meth:`commit_staged`."""
        return _OFFLINE_CHUNK

    def import_batch(self, batch: Batch, obj: Any, sha256: str, body_bytes: int, staged: list[Any]) -> Receipt | None:
        """Stage one validated batch (a repeat within this run is answered at once, like the API would)."""
        known = self._staged_ids.get(batch.batch_id)
        if known is not None:
            return answer(batch, sha256, known == sha256)
        self._staged_ids[batch.batch_id] = sha256
        created = naive_utc(parse_hour(batch.created_at, "created_at"))
        staged.append(
            Item(
                batch_id=batch.batch_id,
                sha256=sha256,
                snapshots=len(batch.snapshots),
                created=created,
                line=spool_line(self.clock(), sha256, body_bytes, obj, self._other),
            )
        )
        return None

    def commit_staged(self, staged: list[Any]) -> list[Receipt | CollectorError]:
        """Commit the staged batches as one group (dedup against the lake happens here); one outcome each."""
        if not staged:
            return []
        assert self._writer is not None
        assert self._tmp is not None
        tmp, window, items = self._tmp, self._window_start(), list(staged)
        staged.clear()
        return list(self._writer.run_sync(lambda s: commit_group(s, items, tmp_dir=tmp, window_start=window)))
