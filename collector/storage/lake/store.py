"""The lake backend: stateless collectors sharing one DuckLake (PostgreSQL catalog, Parquet on S3 or a directory).

A batch is acknowledged only after its rows are committed to the lake: nothing a collector keeps on
its own disk is needed for an acknowledged batch to survive, so any collector may be killed at any
moment, or lose its disk. Requests that arrive together share one lake transaction (group commit, see
:mod:`.commit`); the dedup claims and advisory locks that make several collectors store each batch
once are in :mod:`.claims` and :mod:`.locks`; compaction and physical erasure in :mod:`.maintenance`.

Threads: the *writer* runs group commits and the small writes (tokens, erasure, retention) in order;
the *background* thread refreshes the report rollup and runs maintenance, so neither delays ingest;
reads take a fresh DuckDB cursor in the read pool; a *probe* thread checks PostgreSQL and the object
store every :data:`_PROBE_INTERVAL_S` for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import psycopg

from collector.config import CollectorConfig
from collector.errors import CollectorError, OverloadedError, UnavailableError
from collector.reports import rollup as reports_rollup
from collector.storage.base import Gauge, Health, Receipt, answer, naive_utc, spool_line
from collector.storage.migrations import migrate
from collector.storage.reads import ReadPool
from collector.storage.retention import purge
from collector.storage.rows import other_metric_keys
from collector.storage.subjects import erase_install, install_data
from collector.storage.worker import Worker
from schema import Batch, parse_hour

from . import claims, locks, outage
from .commit import Item, Session, commit_group, in_transaction, transaction
from .connect import CATALOG_NAME, LakeSettings, open_duckdb
from .maintenance import maintain

__all__ = ["LakeStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_GROUP_MAX_ITEMS: Final = 2000
"""Batches in one group commit at most (~48k snapshot rows: one Parquet file of a few MiB)."""
_PROBE_INTERVAL_S: Final = 2.0
_LOCK_TIMEOUT_S: Final = 10.0
"""A commit waits this long for the lake's write lock before its requests get 503."""
_OFFLINE_CHUNK: Final = 2000
_PARTITIONS: Final = {
    # Month partitions: retention drops whole files and a rewrite touches one month (DuckLake: year=/month= paths).
    1: "ALTER TABLE batches SET PARTITIONED BY (year(created_at), month(created_at));"
    " ALTER TABLE snapshots SET PARTITIONED BY (year(taken_at), month(taken_at));",
    2: "ALTER TABLE report_days SET PARTITIONED BY (year(day), month(day));",
    6: "ALTER TABLE report_periods SET PARTITIONED BY (period_kind, year(period));",
    4: "ALTER TABLE snapshot_values SET PARTITIONED BY (year(taken_at), month(taken_at));",
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LakeStore:
    """The :class:`~collector.storage.base.Storage` of a collector on a shared DuckLake."""

    def __init__(self, config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        """Returns the current time (timezone-aware); injected by tests."""
        self.settings = LakeSettings.from_config(config)
        self._other = other_metric_keys(config.catalogue_in_force)  # their values go to snapshot_values
        self.inflight_requests = 0
        self._db: Any = None
        self._tmp: Path | None = None
        self._writer: Worker[Session] | None = None
        self._background: Worker[Session] | None = None
        self._probe: Worker[Session] | None = None
        self._reads: ReadPool | None = None
        self._queue: list[tuple[Item, asyncio.Future[Receipt]]] = []
        self._committer: Worker[Session] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # batch_id -> waiters, for a batch whose first copy is being committed by this process right now.
        self._inflight: dict[str, list[asyncio.Future[None]] | None] = {}
        self._staged_ids: dict[str, str] = {}  # offline import: batch_id -> sha256 staged in this run
        self._health = Health(ready=True)
        self._invalid = False
        self.commits = 0
        self.last_commit_s = 0.0
        self.commit_failures = 0
        self.maintenance_passes = 0

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> Any:
        """Open synchronously for CLI use (``import``, ``token``, ``report``, ``copy-to-lake``)."""
        store = cls(config, clock=clock)
        store.open_sync()
        try:
            yield store
        finally:
            store.close_sync()

    def open_sync(self) -> None:
        """Attach the lake, create or migrate its tables (one collector at a time), start the threads."""
        self._tmp = Path(tempfile.mkdtemp(prefix="telemetry-lake-"))
        try:
            self._attach()
            assert self._writer is not None
            self._writer.run_sync(self._setup)
        except BaseException:
            self.close_sync()
            raise

    def close_sync(self) -> None:
        """Finish queued jobs, close every connection, remove the private temporary directory."""
        self._detach()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _attach(self) -> None:
        self._db = open_duckdb(self.settings, threads=self.config.writer_threads)
        self._writer = Worker("lake-writer", self._session())
        self._background = Worker("lake-background", self._session())
        self._probe = Worker("lake-probe", self._session(lock_timeout_s=2.0))
        self._committer = Worker("lake-commit", self._session())
        for worker in (self._writer, self._background, self._probe, self._committer):
            worker.start()
        self._reads = ReadPool(self._cursor, name="lake-read")

    def _detach(self) -> None:
        for worker in (self._writer, self._background, self._probe, self._committer):
            if worker is not None:
                worker.stop()
                worker.session.close()
        self._writer = self._background = self._probe = self._committer = None
        if self._reads is not None:
            self._reads.close()
            self._reads = None
        if self._db is not None:
            with contextlib.suppress(duckdb.Error):
                self._db.close()
            self._db = None

    def _reattach(self) -> None:
        # DuckDB invalidates a whole instance after an internal error (e.g. a DuckLake compaction bug): nothing
        # of it is usable again, so the store opens a new one; nothing acknowledged lived in the old one.
        log.warning("the lake's DuckDB instance was invalidated; opening a new one")
        self._detach()
        self._attach()
        self._invalid = False

    async def start(self) -> None:
        """Open (in a thread), then start the health probe and the maintenance schedule."""
        await asyncio.to_thread(self.open_sync)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(_PROBE_INTERVAL_S, self._check), name="lake-probe"),
            loop.create_task(self._every(self.config.maintenance_interval_s, self._maintain), name="lake-maintenance"),
        ]

    async def stop(self) -> None:
        """Answer every queued batch (commit or 503), stop the schedules, close."""
        while self._committing is not None:
            await asyncio.wait([self._committing])
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.close_sync)

    def _session(self, *, lock_timeout_s: float = _LOCK_TIMEOUT_S) -> Session:
        return Session(self._db, self.settings, lock_timeout_s=lock_timeout_s)

    def _cursor(self) -> Any:
        if self._db is None:
            raise RuntimeError("store is not open")
        cursor = self._db.cursor()
        try:
            cursor.execute(f"USE {CATALOG_NAME}")
        except duckdb.Error as exc:
            cursor.close()
            raise outage.catalog_lost(exc) or exc from None
        return cursor

    def _setup(self, session: Session) -> None:
        try:
            pg = session.pg()
            with locks.advisory(pg, locks.MIGRATE):
                for statement in claims.SETUP_SQL:
                    pg.execute(statement)
                migrate(session.duck, checkpoint=False, after=_PARTITIONS)
        except (psycopg.Error, duckdb.Error) as exc:
            # Creating the tables of a new lake writes to both parts: a refusal here is one line, exit 1.
            part = self._classify(exc).path or "lake"
            raise CollectorError(f"cannot set up the lake ({self.settings.where}), {part}: "
                                 f"{self._health.message.split(': ', 1)[-1]}") from None  # fmt: skip

    # -- health --------------------------------------------------------------------------------

    def health(self) -> Health:
        """The last probe's verdict (or a failure seen since): which part of the lake is down."""
        return self._health

    def _down(self, part: str, message: str) -> UnavailableError:
        what = {"catalog": "the lake's catalog (PostgreSQL)", "object_store": "the lake's object store"}.get(part, part)
        self._health = Health(ready=False, part=part, message=f"{what} is unavailable: {message}")
        return UnavailableError(f"{what} is unavailable", retry_after_s=self.config.retry_after_s, part=part)

    def _classify(self, exc: BaseException) -> UnavailableError:
        if outage.invalidated(exc):
            self._invalid = True  # the probe opens a new instance
        return self._down(outage.classify(exc), outage.describe(exc, self.settings))

    async def _check(self) -> None:
        try:
            if self._invalid:
                await asyncio.to_thread(self._reattach)
            assert self._probe is not None
            await self._probe.run(self._probe_once)
        except Exception as exc:  # noqa: BLE001  # any failure of a part is reported, never raised
            self._classify(exc)
        else:
            self._health = Health(ready=True)

    def _probe_once(self, session: Session) -> None:
        try:
            session.pg().execute("SELECT 1")
        except psycopg.Error:
            session.drop_pg()
            raise
        if self.settings.on_s3:
            # A prefix that matches nothing: one cheap LIST request, whatever the size of the lake.
            session.duck.execute("SELECT count(*) FROM glob(?)", [self.settings.data_path + ".probe-*"]).fetchall()
        elif not os.access(self.settings.data_path, os.W_OK | os.X_OK):
            raise OSError(f"data_path {self.settings.data_path} is not a writable directory")

    async def _every(self, interval_s: float, step: Callable[[], Any]) -> None:
        while True:
            try:
                await step()
            except (
                outage.OUTAGES
            ) as exc:  # a part is down: one line (redacted); the probe reports it, the next pass retries
                self._classify(exc)
                log.warning("lake %s failed: %s", step.__name__.strip("_"), self._health.message)
            except Exception:  # a bug: a failed pass must not end the schedule either
                log.exception("lake %s failed", step.__name__.strip("_"))
            await asyncio.sleep(interval_s)

    async def _maintain(self) -> None:
        if not self._health.ready or self._background is None:
            return
        config = self.config
        result = await self._background.run(
            lambda s: maintain(s, now=self.clock(), interval_s=config.maintenance_interval_s,
                               erasure_max_hours=config.erasure_max_hours,
                               dedup_window_days=config.dedup_window_days)
        )  # fmt: skip
        self.maintenance_passes += result.ran

    # -- ingest --------------------------------------------------------------------------------

    @property
    def pending_batches(self) -> int:
        """Batches accepted and not yet answered (queued for, or in, a group commit)."""
        return len(self._inflight)

    def check_readable(self) -> None:
        """Raise UnavailableError (503) while a part of the lake is down."""
        if not self._health.ready:
            raise UnavailableError(self._health.message or "the lake is unavailable",
                                   retry_after_s=self.config.retry_after_s, part=self._health.part)  # fmt: skip

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
            item = Item(batch_id=batch_id, sha256=sha256, snapshots=len(batch.snapshots), created=created,
                        line=spool_line(now, sha256, body_bytes, obj, self._other))  # fmt: skip
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
                    job = functools.partial(commit_group, items=items, tmp_dir=self._tmp,
                                            window_start=self._window_start())  # fmt: skip
                    outcomes = await worker.run(job)
                except Exception as exc:  # noqa: BLE001  # every request of the group gets a 503, nothing is lost
                    error = exc if isinstance(exc, UnavailableError) else self._classify(exc)
                    self.commit_failures += 1
                    log.warning("lake group commit of %d batch(es) failed: %s", len(items), self._health.message)
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
        staged.append(Item(batch_id=batch.batch_id, sha256=sha256, snapshots=len(batch.snapshots), created=created,
                           line=spool_line(self.clock(), sha256, body_bytes, obj, self._other)))  # fmt: skip
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

    # -- reads and writes ----------------------------------------------------------------------

    async def sync(self) -> None:
        """Nothing to wait for: a batch is acknowledged only once its lake commit is done."""

    def read_columns_sync(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read query on its own cursor in the calling thread; return ``(column_names, rows)``."""
        cursor = self._cursor()
        try:
            result = cursor.execute(sql, list(params))
            names = [d[0] for d in result.description] if result.description else []
            return names, result.fetchall()
        except duckdb.Error as exc:
            raise outage.catalog_lost(exc) or exc from None
        finally:
            cursor.close()

    def read_sync(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`read`, in the calling thread."""
        return self.read_columns_sync(sql, params)[1]

    async def read_columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Like :meth:`read`, also returning the column names."""
        assert self._reads is not None
        try:
            return await self._reads.run(lambda: self.read_columns_sync(sql, params))
        except outage.OUTAGES as exc:
            raise self._classify(exc) from None

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (``?`` parameters) on a fresh cursor in the read pool; return all rows."""
        return (await self.read_columns(sql, params))[1]

    def run_on_writer(self, job: Callable[[Session], T]) -> T:
        """Run ``job(session)`` in the writer thread and wait (for lake-only commands such as ``copy-to-lake``)."""
        assert self._writer is not None
        return self._writer.run_sync(job)

    async def _on(self, worker: Worker[Session] | None, job: Callable[[Session], T]) -> T:
        assert worker is not None
        try:
            return await worker.run(job)
        except outage.OUTAGES as exc:
            worker.session.drop_pg()
            raise self._classify(exc) from None

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(con)`` in one lake transaction under the write lock (tokens and other small writes)."""
        return await self._on(self._writer, lambda s: in_transaction(s, locks.WRITE, fn))

    def write_sync(self, fn: Callable[[Any], T]) -> T:
        """Like :meth:`write`, blocking."""
        return self.run_on_writer(lambda s: in_transaction(s, locks.WRITE, fn))

    async def refresh_rollup(self, *, wait: bool = True) -> int:
        """Fold new batches into the rollup, one collector at a time (others wait, then find little to do).

        ``wait=False`` returns 0 at once when another collector holds the rollup lock (the schedule's case).
        """
        return await self._under_rollup_lock(reports_rollup.refresh, wait=wait) or 0

    async def build_rollup(self, *, wait: bool = True) -> reports_rollup.BuildProgress | None:
        """One step of a pending build of the report pre-aggregates, under the rollup lock."""
        return await self._under_rollup_lock(reports_rollup.build_step, wait=wait)

    async def _under_rollup_lock(self, fn: Callable[[Any], T], *, wait: bool) -> T | None:
        # One collector at a time works on the rollup; the schedule (wait=False) skips a held lock.
        def job(session: Session) -> T | None:
            if wait:
                return in_transaction(session, locks.ROLLUP, fn)
            with locks.try_advisory(session.pg(), locks.ROLLUP) as mine:
                return transaction(session, locks.ROLLUP, fn) if mine else None

        return await self._on(self._background, job)

    def refresh_rollup_sync(self) -> int:
        """Like :meth:`refresh_rollup`, blocking."""
        assert self._background is not None
        return self._background.run_sync(lambda s: in_transaction(s, locks.ROLLUP, reports_rollup.refresh))

    async def install_data(self, install_id: str) -> dict[str, Any]:
        """Everything held about one install, read in one lake snapshot (every acknowledged batch is committed)."""

        def job() -> dict[str, Any]:
            cursor = self._cursor()
            try:
                cursor.execute("BEGIN")
                data = install_data(cursor, install_id)
                cursor.execute("COMMIT")
                return data
            finally:
                cursor.close()

        assert self._reads is not None
        try:
            return await self._reads.run(job)
        except outage.OUTAGES as exc:
            raise self._classify(exc) from None

    async def erase_install(self, install_id: str) -> tuple[int, int]:
        """Delete the install everywhere now; its rows become physically gone within ``erasure_max_hours``."""

        def job(session: Session) -> tuple[int, int]:
            pg = session.pg()
            with locks.advisory(pg, locks.ROLLUP), locks.advisory(pg, locks.WRITE):
                ids, batches, snapshots = transaction(session, locks.WRITE,
                                                      lambda con: erase_install(con, install_id))  # fmt: skip
                claims.delete(pg, ids)
                pg.execute("INSERT INTO telemetry_collector.erasures DEFAULT VALUES")
            return batches, snapshots

        return await self._on(self._writer, job)

    async def purge(self, cutoff: dt.date) -> tuple[int, int]:
        """Retention: delete what is dated before ``cutoff`` (and its claims)."""

        def job(session: Session) -> tuple[int, int]:
            pg = session.pg()
            with locks.advisory(pg, locks.ROLLUP), locks.advisory(pg, locks.WRITE):
                ids, snapshots = transaction(session, locks.WRITE, lambda con: purge(con, cutoff))
                claims.delete(pg, ids)
            return len(ids), snapshots

        return await self._on(self._writer, job)

    # -- monitoring ----------------------------------------------------------------------------

    def gauges(self) -> dict[str, Gauge]:
        """Lake gauges for ``/metrics``."""
        return {
            "telemetry_pending_batches": Gauge("Batches accepted and waiting for their lake commit.",
                                               lambda: len(self._queue)),
            "telemetry_writer_queue_depth": Gauge("Jobs queued for the lake writer thread.",
                                                  lambda: self._writer.depth if self._writer else 0),
            "telemetry_lake_commits_total": Gauge("Group commits to the lake since start.", lambda: self.commits,
                                                  kind="counter"),
            "telemetry_lake_commit_failures_total": Gauge("Group commits that failed (their requests got 503).",
                                                          lambda: self.commit_failures, kind="counter"),
            "telemetry_last_commit_seconds": Gauge("Duration of the latest group commit.", lambda: self.last_commit_s),
            "telemetry_lake_ready": Gauge("1 when PostgreSQL and the object store answered the last probe.",
                                          lambda: float(self._health.ready)),
            "telemetry_lake_maintenance_passes_total": Gauge("Maintenance passes this collector ran.",
                                                             lambda: self.maintenance_passes, kind="counter"),
        }  # fmt: skip
