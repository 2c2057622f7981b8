"""What a lake collector knows of its parts' health: the probe, and the verdict ``/readyz`` shows.

Every few seconds the probe asks PostgreSQL for ``SELECT 1`` and lists a prefix that matches nothing on
the object store (or checks the data directory); any failure seen elsewhere (a commit, maintenance)
also updates the verdict, so ingest answers 503 naming the part within a request of an outage, and
``/readyz`` turns ready again once a probe passes. No password or key reaches a message
(:func:`.outage.describe` redacts them).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import psycopg

from collector.config import CollectorConfig
from collector.errors import UnavailableError
from collector.storage.base import Health
from collector.storage.worker import Worker

from . import outage
from .commit import Session
from .connect import LakeSettings

__all__ = ["LakeHealth"]

log = logging.getLogger(__name__)


class LakeHealth:
    """The health half of :class:`~collector.storage.lake.store.LakeStore` (its state is set by the store)."""

    config: CollectorConfig
    settings: LakeSettings
    _health: Health
    _invalid: bool
    _probe: Worker[Session] | None
    _serving: bool = False
    """Set once the store serves (``start``): a command's or a start's failure is its own one-line error."""

    _reattach: Callable[[], None]
    """Open a new DuckDB instance (the store's)."""

    def health(self) -> Health:
        """The last probe's verdict (or a failure seen since): which part of the lake is down."""
        return self._health

    def _down(self, part: str, message: str) -> UnavailableError:
        what = {"catalog": "the lake's catalog (PostgreSQL)", "object_store": "the lake's object store"}.get(part, part)
        health = Health(ready=False, part=part, message=f"{what} is unavailable: {message}")
        if self._serving and health != self._health:  # once per new verdict, not per request answered 503
            log.warning("%s", health.message)
        self._health = health
        return UnavailableError(f"{what} is unavailable", retry_after_s=self.config.retry_after_s, part=part)

    def _classify(self, exc: BaseException) -> UnavailableError:
        if outage.busy(exc):
            # A lock wait that timed out (another collector's long fold, compaction or stuck commit) is not a
            # part going down: answer 503 with Retry-After, and leave /readyz and the other requests alone.
            return UnavailableError(
                "the lake is busy (a lock wait timed out)", retry_after_s=self.config.retry_after_s, part="lake"
            )
        if outage.invalidated(exc):
            self._invalid = True  # the probe opens a new instance
        return self._down(outage.classify(exc), outage.describe(exc, self.settings))

    def _explain(self, error: UnavailableError) -> str:
        """What a log line says of a failure ``_classify`` answered: the part down and why, or that it was busy."""
        return self._health.message if not self._health.ready else str(error)

    async def _check(self) -> None:
        try:
            if self._invalid:
                await asyncio.to_thread(self._reattach)
            assert self._probe is not None
            await self._probe.run(self._probe_once)
        except Exception as exc:  # noqa: BLE001  # any failure of a part is reported, never raised
            self._classify(exc)
        else:
            if self._serving and not self._health.ready:
                log.warning("the lake is ready again (%s was unavailable)", self._health.part)
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
