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
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import psycopg

from collector.config import CollectorConfig
from collector.errors import CollectorError
from collector.reports import rollup as reports_rollup
from collector.storage.base import Gauge, Health, Receipt, opened
from collector.storage.migrations import migrate
from collector.storage.reads import ReadPool
from collector.storage.retention import purge
from collector.storage.rows import other_metric_keys
from collector.storage.subjects import erase_install, install_data
from collector.storage.worker import Worker

from . import claims, locks, outage, owner
from .commit import Item, Session, in_transaction, transaction
from .connect import CATALOG_NAME, LakeSettings, open_duckdb
from .health import LakeHealth
from .ingest import LakeIngest
from .maintenance import maintain

__all__ = ["LakeStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_PROBE_INTERVAL_S: Final = 2.0
_ROLLUP_NICE: Final = 10
"""Niceness added to the rollup's thread: a fold reads every new file (seconds of CPU after a busy half
minute), and at equal priority its bursts were the tail of ingest latency (bench/scaleout.py)."""
_LOCK_TIMEOUT_S: Final = 10.0
"""A commit waits this long for the lake's write lock before its requests get 503."""
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


class LakeStore(LakeHealth, LakeIngest):
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
        self._rollup: Worker[Session] | None = None
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
        with opened(cls(config, clock=clock)) as store:
            yield store

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
        self._rollup = Worker("lake-rollup", self._session(), nice=_ROLLUP_NICE)
        self._probe = Worker("lake-probe", self._session(lock_timeout_s=2.0))
        self._committer = Worker("lake-commit", self._session())
        for worker in (self._writer, self._background, self._rollup, self._probe, self._committer):
            worker.start()
        self._reads = ReadPool(self._cursor, name="lake-read")

    def _detach(self) -> None:
        for worker in (self._writer, self._background, self._rollup, self._probe, self._committer):
            if worker is not None:
                worker.stop()
                worker.session.close()
        self._writer = self._background = self._rollup = self._probe = self._committer = None
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
        self._serving = True
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
            cursor.execute("SET enable_progress_bar = false")  # no progress bar in the service's log
        except duckdb.Error as exc:
            cursor.close()
            raise outage.catalog_lost(exc) or exc from None
        return cursor

    def _setup(self, session: Session) -> None:
        try:
            pg = session.pg()
            with locks.advisory(pg, locks.MIGRATE):
                for statement in (*claims.SETUP_SQL, *owner.SETUP_SQL):
                    pg.execute(statement)
                migrate(session.duck, checkpoint=False, after=_PARTITIONS)
                owner.check_data_path(pg, session.duck, self.settings)
        except (psycopg.Error, duckdb.Error) as exc:
            # Creating the tables of a new lake writes to both parts: a refusal here is one line, exit 1.
            part = self._classify(exc).path or "lake"
            raise CollectorError(
                f"cannot set up the lake ({self.settings.where}), {part}: {self._health.message.split(': ', 1)[-1]}"
            ) from None

    async def _every(self, interval_s: float, step: Callable[[], Any]) -> None:
        while True:
            try:
                await step()
            except (
                outage.OUTAGES
            ) as exc:  # a part is down: one line (redacted); the probe reports it, the next pass retries
                log.warning("lake %s failed: %s", step.__name__.strip("_"), self._explain(self._classify(exc)))
            except Exception:  # a bug: a failed pass must not end the schedule either
                log.exception("lake %s failed", step.__name__.strip("_"))
            await asyncio.sleep(interval_s)

    async def _maintain(self) -> None:
        if not self._health.ready or self._background is None:
            return
        config = self.config
        result = await self._background.run(
            lambda s: maintain(
                s,
                now=self.clock(),
                interval_s=config.maintenance_interval_s,
                erasure_max_hours=config.erasure_max_hours,
                dedup_window_days=config.dedup_window_days,
            )
        )
        self.maintenance_passes += result.ran

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
        except (duckdb.IOException, duckdb.HTTPException):
            # Once more, on a newer snapshot: a file the read's snapshot named can be gone if maintenance
            # merged and cleaned it up meanwhile (the test cluster's 2 s margin). Reads change nothing.
            pass
        except outage.OUTAGES as exc:
            raise self._classify(exc) from None
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

        return await self._on(self._rollup, job)

    def refresh_rollup_sync(self) -> int:
        """Like :meth:`refresh_rollup`, blocking."""
        assert self._rollup is not None
        return self._rollup.run_sync(lambda s: in_transaction(s, locks.ROLLUP, reports_rollup.refresh))

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
                ids, batches, snapshots = transaction(session, locks.WRITE, lambda con: erase_install(con, install_id))
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
            "telemetry_pending_batches": Gauge(
                "Batches accepted and waiting for their lake commit.", lambda: len(self._queue)
            ),
            "telemetry_writer_queue_depth": Gauge(
                "Jobs queued for the lake writer thread.", lambda: self._writer.depth if self._writer else 0
            ),
            "telemetry_lake_commits_total": Gauge(
                "Group commits to the lake since start.", lambda: self.commits, kind="counter"
            ),
            "telemetry_lake_commit_failures_total": Gauge(
                "Group commits that failed (their requests got 503).", lambda: self.commit_failures, kind="counter"
            ),
            "telemetry_last_commit_seconds": Gauge("Duration of the latest group commit.", lambda: self.last_commit_s),
            "telemetry_lake_ready": Gauge(
                "1 when PostgreSQL and the object store answered the last probe.", lambda: float(self._health.ready)
            ),
            "telemetry_lake_maintenance_passes_total": Gauge(
                "Maintenance passes this collector ran.", lambda: self.maintenance_passes, kind="counter"
            ),
        }
