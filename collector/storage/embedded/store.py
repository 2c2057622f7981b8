"""The embedded backend (the default): one DuckDB file, its write-ahead spool and the in-memory dedup index.

One :class:`EmbeddedStore` per process owns the single ``duckdb.connect(path)``. Ingest appends to the
spool on the event loop and is acknowledged after the group fsync (see :mod:`.spool`); every write
(segment loads, :meth:`write` jobs) runs in one writer thread, in order; reads take a fresh ``cursor()``
in the read pool. The offline import is in :mod:`.offline`, backups in :mod:`.backup`, the retry of
set-aside segments in :mod:`.retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar

import duckdb

from collector.config import CollectorConfig
from collector.errors import CollectorError, ConflictError, OverloadedError, UnavailableError
from collector.reports import rollup as reports_rollup
from collector.storage.base import OLD_BATCH_SQL, Gauge, Health, Receipt, answer, naive_utc, opened, spool_line
from collector.storage.embedded.dedup import DedupIndex
from collector.storage.migrations import migrate
from collector.storage.reads import ReadPool
from collector.storage.retention import purge
from collector.storage.rows import other_metric_keys
from collector.storage.subjects import erase_install, install_data
from collector.storage.worker import Worker
from schema import Batch, parse_hour

from .backup import open_snapshot, remove_leftovers, snapshot
from .database import connect, fill_index, in_transaction, with_threads
from .gauges import embedded_gauges
from .loads import LoadTracker
from .offline import OfflineImport
from .segments import SegmentLoader
from .spool import SpoolLock, SpoolWriter

__all__ = ["EmbeddedStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_SEGMENT_BYTES: Final = 64 * 1024 * 1024
"""A segment is closed early past this size, keeping one load transaction to a few seconds at most."""
_OFFLINE_CHUNK: Final = 5000
"""The offline import writes and loads a segment per this many new batches."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EmbeddedStore:
    """One DuckDB file plus its spool; see the module docstring. Create, then :meth:`start` (async) or :meth:`open`."""

    def __init__(self, config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        """Returns the current time (timezone-aware); injected by tests."""
        self._con: Any = None
        self._lock = SpoolLock(config.spool_path)
        self._index = DedupIndex(window_s=config.dedup_window_days * 86400)
        self._writer: Worker[Any] | None = None
        self._reads: ReadPool | None = None
        self._loader = SegmentLoader()
        self._next_seq = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spool: SpoolWriter | None = None
        # batch_id -> waiters of requests for a batch whose first copy is being stored right now.
        # The list is only allocated when a concurrent duplicate shows up (rare), keeping the hot path lean.
        self._inflight: dict[str, list[asyncio.Future[None]] | None] = {}
        self._loads = LoadTracker(
            self._loader, self._submit, on_loaded=lambda: self._index.prune(self.clock().timestamp())
        )
        self._other = other_metric_keys(config.catalogue_in_force)  # their values go to snapshot_values
        self._offline = OfflineImport(
            spool_dir=config.spool_path,
            index=self._index,
            loader=self._loader,
            clock=clock,
            read_sync=self.read_sync,
            submit=self._submit,
            take_seq=self._take_seq,
            other=self._other,
        )
        self._backing_up = False
        self.inflight_requests = 0
        """Ingest requests between acceptance of their headers and their answer (counted by the handler)."""

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> Iterator[EmbeddedStore]:
        """Open synchronously for CLI use without a server (``import``, ``token``, ``report --db``).

        Raises :class:`InUseError` ("database ... is in use by another process") when a running
        collector holds the file. Any spool left by a crash is loaded first.
        """
        with opened(cls(config, clock=clock)) as store:
            yield store

    def open_sync(self) -> None:
        """Open the file, apply migrations, replay the spool, fill the dedup index, start the writer thread."""
        self._con = connect(self.config.db_path)
        try:
            self._lock.acquire()
            remove_leftovers(self.config.spool_path)
            migrate(self._con)
            self._next_seq = self._loader.replay(self._con, self.config.spool_path)
            fill_index(self._con, self._index, self._loader, self.clock())
        except BaseException:
            self._lock.release()
            self._con.close()
            self._con = None
            raise
        self._writer = Worker("collector-writer", self._con)
        self._writer.start()
        self._reads = ReadPool(self._cursor, name="collector-read")

    def close_sync(self) -> None:
        """Finish queued writer jobs, then close the database and release the spool lock."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._reads is not None:
            self._reads.close()
            self._reads = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._lock.release()

    async def start(self) -> None:
        """Open (in a thread) and start the spool writer on the running loop."""
        await asyncio.to_thread(self.open_sync)
        self._loop = asyncio.get_running_loop()
        self._loads.start(loaded_seq=self._next_seq - 1)
        self._spool = SpoolWriter(
            self.config.spool_path,
            first_seq=self._next_seq,
            rotate_interval_s=self.config.load_interval_s,
            max_segment_bytes=_MAX_SEGMENT_BYTES,
            on_closed=self._loads.closed,
        )
        self._spool.start()

    async def stop(self) -> None:
        """Make queued batches durable, load the whole spool into DuckDB and close the file."""
        await self._loads.stop()
        if self._spool is not None:
            await self._spool.close()
            await self.sync()
        await asyncio.to_thread(self.close_sync)

    def _cursor(self) -> Any:
        if self._con is None:
            raise RuntimeError("store is not open")
        cursor = self._con.cursor()
        cursor.execute("SET enable_progress_bar = false")  # a session setting: see database.connect
        return cursor

    # -- the writer thread ---------------------------------------------------------------------

    def _submit(self, job: Callable[[Any], T]) -> Any:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer.submit(with_threads(job, self.config.writer_threads))

    # -- reads and writes for everyone ---------------------------------------------------------

    def read_columns_sync(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read query on its own cursor in the calling thread; return ``(column_names, rows)``."""
        cursor = self._cursor()
        try:
            result = cursor.execute(sql, list(params))
            names = [d[0] for d in result.description] if result.description else []
            return names, result.fetchall()
        finally:
            cursor.close()

    def read_sync(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`read`, in the calling thread (for CLI code)."""
        return self.read_columns_sync(sql, params)[1]

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (``?`` parameters) on a fresh cursor in the read pool; return all rows."""
        return (await self.read_columns(sql, params))[1]

    async def read_columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Like :meth:`read`, also returning the column names."""
        assert self._reads is not None
        return await self._reads.run(lambda: self.read_columns_sync(sql, params))

    def write_sync(self, fn: Callable[[Any], T]) -> T:
        """Like :meth:`write`, blocking the calling thread until done."""
        result: T = self._submit(in_transaction(fn, retry_after_s=self.config.retry_after_s)).result()
        return result

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(con)`` in the writer thread inside BEGIN/COMMIT (ROLLBACK if it raises); return its result."""
        result: T = await asyncio.wrap_future(self._submit(in_transaction(fn, retry_after_s=self.config.retry_after_s)))
        return result

    async def sync(self) -> None:
        """Wait until every batch acknowledged so far is loaded into the tables (and earlier writes are done)."""
        if self._spool is not None:
            await self._loads.wait_for(await self._spool.rotate())
        await asyncio.wrap_future(self._submit(lambda con: None))

    async def refresh_rollup(self, *, wait: bool = True) -> int:
        """Fold every loaded batch not yet in the report rollup into it (in the writer thread)."""
        return await self.write(reports_rollup.refresh)

    def refresh_rollup_sync(self) -> int:
        """Like :meth:`refresh_rollup`, blocking."""
        return self.write_sync(reports_rollup.refresh)

    async def build_rollup(self, *, wait: bool = True) -> reports_rollup.BuildProgress | None:
        """One step of a pending build of the report pre-aggregates, in the writer thread (loads go between steps)."""
        return await self.write(reports_rollup.build_step)

    async def install_data(self, install_id: str) -> dict[str, Any]:
        """Everything held about one install, after loading every batch acknowledged so far (else 503)."""
        # In the writer thread: ordered after every load and deletion, and consistent across tables.
        return await self._every_copy(lambda con: install_data(con, install_id))

    async def erase_install(self, install_id: str) -> tuple[int, int]:
        """Erase the install from every table (loading what was acknowledged first) and from the dedup index.

        Raises UnavailableError (503) while a set-aside segment cannot be loaded: it may hold the install's
        batches, and an erasure that left them there would answer a count that is not the truth.
        """
        ids, batches, snapshots = await self._every_copy(lambda con: erase_install(con, install_id))
        self._index.forget(ids)
        return batches, snapshots

    async def _every_copy(self, fn: Callable[[Any], T]) -> T:
        # Data-subject requests cover every copy: every acknowledged batch must be in the tables first.
        await self.sync()
        retry_after_s = self.config.retry_after_s
        try:
            return await self._loads.all_loaded(self.write, fn, retry_after_s=retry_after_s)
        except duckdb.Error as exc:  # e.g. a full disk refused the commit
            log.error("a data-subject request failed in the database: %s", type(exc).__name__)
            raise UnavailableError(
                "the database refused the request", retry_after_s=retry_after_s, part="database"
            ) from None

    @contextlib.asynccontextmanager
    async def backup(self) -> AsyncIterator[tuple[BinaryIO, int]]:
        """A consistent copy of the database with every batch acknowledged so far: an open file and its size.

        The copy is made on a read cursor (see :mod:`.backup`) while ingest goes on; the file is already
        unlinked from the spool directory, so closing it (at the end of the ``async with``) frees the
        space. One backup at a time, until its file is closed (else 409 ``backup_running``).
        """
        if self._backing_up:
            raise ConflictError("a backup is already being made", code="backup_running")
        self._backing_up = True
        try:
            await self.sync()
            assert self._reads is not None
            copy, size = await self._reads.run(lambda: open_snapshot(self._cursor, self.config.spool_path))
            with copy:
                yield copy, size
        finally:
            self._backing_up = False

    def backup_sync(self, target: Path) -> None:
        """Write a consistent copy of the database to the new file ``target`` (for CLI use without a server)."""
        snapshot(self._cursor, target)

    async def purge(self, cutoff: dt.date) -> tuple[int, int]:
        """Retention: delete what is dated before ``cutoff``."""
        ids, snapshots = await self.write(lambda con: purge(con, cutoff))
        self._index.forget(ids)
        return len(ids), snapshots

    # -- ingest ---------------------------------------------------------------------------------

    @property
    def pending_batches(self) -> int:
        """Batches waiting for their fsync or acknowledged but not yet loaded into DuckDB."""
        spool = self._spool
        open_lines = spool.buffered + spool.open_lines if spool is not None else 0
        return open_lines + self._loads.closed_unloaded + self._loader.set_aside_lines

    def health(self) -> Health:
        """Ready while the database is open, no segment failed to load and the last spool write worked."""
        if self._con is None:
            return Health(ready=False, part="database", message="the database is closed")
        if self._loader.set_aside_segments:
            return Health(
                ready=False,
                part="database",
                message="a spool segment failed to load; set aside as *.failed and retried",
            )
        if self._spool is not None and self._spool.failed:
            return Health(ready=False, part="spool", message="the spool disk refused the last write")
        return Health(ready=True)

    def check_readable(self) -> None:
        """Reads only need the open file (a failing spool disk does not stop reports)."""
        if self._con is None:
            raise UnavailableError("the database is closed", retry_after_s=self.config.retry_after_s, part="database")

    def _overloaded(self) -> bool:
        return self.pending_batches + len(self._inflight) >= self.config.max_pending_batches

    def admit(self) -> None:
        """Raise OverloadedError (503) when too many batches wait to be loaded."""
        if self._overloaded():
            raise OverloadedError("too many batches waiting to be stored", retry_after_s=self.config.retry_after_s)

    async def ingest(self, batch: Batch, obj: Any, sha256: str, body_bytes: int) -> Receipt:
        """Store a validated batch once, durably; answer duplicates; raise ConflictError/OverloadedError.

        ``obj`` is the decoded JSON the batch was parsed from (written to the spool as is).
        Concurrent requests for the same batch_id are serialised here: the second waits for the
        first to be durable (or to fail) and is then answered from the index.
        """
        batch_id = batch.batch_id
        while batch_id in self._inflight:
            assert self._loop is not None
            waiter = self._loop.create_future()
            waiters = self._inflight[batch_id]
            if waiters is None:
                waiters = self._inflight[batch_id] = []
            waiters.append(waiter)
            await waiter
        known = self._index.matches(batch_id, sha256)
        if known is not None:
            return answer(batch, sha256, known)
        self.admit()
        assert self._loop is not None
        assert self._spool is not None
        self._inflight[batch_id] = None
        try:
            now = self.clock()
            created = parse_hour(batch.created_at, "created_at")
            if created.timestamp() < self._index.cutoff_s(now.timestamp()):
                stored = await self.read(OLD_BATCH_SQL, [naive_utc(created), batch_id])
                if stored:
                    self._index.add(batch_id, stored[0][0], created_s=created.timestamp(), now_s=now.timestamp())
                    return answer(batch, sha256, stored[0][0] == sha256)
            line = spool_line(now, sha256, body_bytes, obj, self._other)
            try:
                await asyncio.shield(self._spool.append(line))
            except OSError:
                raise OverloadedError("storage is unavailable", retry_after_s=self.config.retry_after_s) from None
            self._index.add(batch_id, sha256, created_s=created.timestamp(), now_s=now.timestamp())
            return Receipt(batch_id=batch_id, sha256=sha256, snapshots=len(batch.snapshots), duplicate=False)
        finally:
            for waiter in self._inflight.pop(batch_id) or ():
                if not waiter.done():
                    waiter.set_result(None)

    # -- offline import --------------------------------------------------------------------------

    def import_batch(self, batch: Batch, obj: Any, sha256: str, body_bytes: int, staged: list[Any]) -> Receipt | None:
        """Offline ingest of one validated batch: answer a known one now (or raise 409), else stage its line."""
        return self._offline.stage(batch, obj, sha256, body_bytes, staged)

    def commit_staged(self, staged: list[Any]) -> list[Receipt | CollectorError]:
        """Write ``staged`` lines as one fsync'd spool segment and load it (blocking); clears the list."""
        return self._offline.commit(staged)

    def _take_seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    @property
    def offline_chunk(self) -> int:
        """How many new batches the offline import stages before :meth:`commit_staged`."""
        return _OFFLINE_CHUNK

    # -- monitoring ----------------------------------------------------------------------------

    def writer_depth(self) -> int:
        """Jobs queued for the writer thread."""
        return self._writer.depth if self._writer else 0

    def gauges(self) -> dict[str, Gauge]:
        """Embedded gauges for ``/metrics``."""
        return embedded_gauges(self, self._loader, self._index)
