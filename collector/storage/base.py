"""What every storage backend offers the rest of the collector: the :class:`Storage` protocol and its values.

Two backends implement it: :class:`~collector.storage.embedded.EmbeddedStore` (one DuckDB file with its
write-ahead spool, the default) and :class:`~collector.storage.lake.LakeStore` (a DuckLake shared by
several collectors). Both run the same SQL: the lake is attached in DuckDB and selected with ``USE``,
so reports, the rollup, tokens and data-subject requests are written once, against ``con``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

import orjson

from collector.config import CollectorConfig
from collector.errors import CollectorError, ConflictError
from collector.reports.rollup import BuildProgress
from schema import Batch, format_hour

from .rows import other_values

__all__ = ["OLD_BATCH_SQL", "Gauge", "Health", "Receipt", "Storage", "answer", "naive_utc", "opened", "spool_line"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What the collector answers for a stored (or already stored) batch."""

    batch_id: str
    sha256: str
    snapshots: int
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        """The receipt as the wire's JSON object."""
        return {
            "batch_id": self.batch_id,
            "sha256": self.sha256,
            "snapshots": self.snapshots,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """Whether the store can take batches now; when not, which part failed (``/readyz`` names it)."""

    ready: bool
    part: str = ""
    """``database``, ``spool``, ``catalog`` (PostgreSQL) or ``object_store``; empty when ready."""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Gauge:
    """A value read when ``/metrics`` is rendered."""

    help: str
    read: Callable[[], float]
    kind: Literal["gauge", "counter"] = "gauge"
    """``counter`` for a count that only grows (its name then ends in ``_total``, as Prometheus requires)."""


def answer(batch: Batch, sha256: str, same: bool) -> Receipt:
    """The receipt for a batch already stored: a duplicate when the bytes are the same, else 409."""
    if not same:
        raise ConflictError("this batch_id was already stored with different content", path="batch_id")
    return Receipt(batch_id=batch.batch_id, sha256=sha256, snapshots=len(batch.snapshots), duplicate=True)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as a naive UTC datetime, as the tables store timestamps."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


_HOUR_TEXT: list[tuple[int, str]] = [(-1, "")]


def _hour_text(now: dt.datetime) -> str:
    # strftime per request is measurable at 10k requests/s; the hour changes once an hour.
    hour = int(now.timestamp()) // 3600
    cached = _HOUR_TEXT[0]
    if cached[0] != hour:
        cached = _HOUR_TEXT[0] = (hour, format_hour(now))
    return cached[1]


def spool_line(now: dt.datetime, sha256: str, body_bytes: int, obj: Any, other: frozenset[str] = frozenset()) -> bytes:
    """One NDJSON line as :func:`collector.storage.rows.insert_lines` loads it: the batch and its arrival facts.

    ``other`` is the catalogue's metrics without a typed column (:func:`collector.storage.rows.other_metric_keys`):
    their values go into the line's ``values`` field. Empty for the packaged catalogue, which costs nothing.
    """
    # Arrival time is truncated to the hour: the exact second would be metadata we do not need.
    line = {"received_at": _hour_text(now), "sha256": sha256, "body_bytes": body_bytes, "batch": obj}
    if other and (values := other_values(obj, other)):
        line["values"] = values
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


OLD_BATCH_SQL: Final = "SELECT sha256 FROM batches WHERE created_at = ? AND batch_id = ? LIMIT 1"
"""How a batch older than the dedup window is looked up (``created_at`` first: it prunes row groups)."""


class Storage(Protocol):
    """The collector's storage, whichever backend; every method is safe to call from the event loop."""

    config: CollectorConfig
    clock: Callable[[], dt.datetime]
    inflight_requests: int
    """Ingest requests between acceptance of their headers and their answer (counted by the handler)."""

    async def start(self) -> None:
        """Open the store for serving (called once, in the app's ``cleanup_ctx``)."""

    async def stop(self) -> None:
        """Make everything acknowledged durable where it belongs, then close."""

    def open_sync(self) -> None:
        """Open for command-line use without a server (``import``, ``token``, ``report``)."""

    def close_sync(self) -> None:
        """Close what :meth:`open_sync` opened."""

    def admit(self) -> None:
        """Raise the 503 error ingest must answer at once (too much accepted and not yet stored, a part down)."""

    def health(self) -> Health:
        """Readiness, as ``/readyz`` reports it (cheap: no I/O)."""

    def check_readable(self) -> None:
        """Raise UnavailableError (503) when reads cannot be answered now (reports, data-subject requests)."""

    def gauges(self) -> dict[str, Gauge]:
        """Backend-specific gauges for ``/metrics``."""

    async def ingest(self, batch: Batch, obj: Any, sha256: str, body_bytes: int) -> Receipt:
        """Store a validated batch once, durably, then answer; raise ConflictError or a 503 error."""

    def import_batch(self, batch: Batch, obj: Any, sha256: str, body_bytes: int, staged: list[Any]) -> Receipt | None:
        """Offline import of one validated batch: answer it now if known (receipt, or raise 409), else stage it."""

    def commit_staged(self, staged: list[Any]) -> list[Receipt | CollectorError]:
        """Store what :meth:`import_batch` staged (blocking), clear ``staged``; one outcome per staged batch."""

    @property
    def offline_chunk(self) -> int:
        """How many new batches the offline import stages before :meth:`commit_staged`."""

    async def sync(self) -> None:
        """Wait until every batch acknowledged so far is visible in the tables."""

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read query (``?`` parameters) off the event loop; return all rows."""

    async def read_columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Like :meth:`read`, also returning the column names."""

    def read_sync(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`read`, in the calling thread."""

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(con)`` inside BEGIN/COMMIT, serialised with every other writer of the same tables."""

    def write_sync(self, fn: Callable[[Any], T]) -> T:
        """Like :meth:`write`, blocking the calling thread."""

    async def refresh_rollup(self, *, wait: bool = True) -> int:
        """Fold every stored batch not yet in the report rollup into it; returns how many were folded.

        ``wait=False`` (the background schedule) skips the refresh when another collector is running one.
        """

    def refresh_rollup_sync(self) -> int:
        """Like :meth:`refresh_rollup`, blocking."""

    async def build_rollup(self, *, wait: bool = True) -> BuildProgress | None:
        """One step of a pending build of the report pre-aggregates (:func:`collector.reports.rollup.build_step`).

        None when nothing is left to build (or, with ``wait=False``, another collector is building).
        """

    async def install_data(self, install_id: str) -> dict[str, Any]:
        """Everything held about one install (every acknowledged batch included), as JSON values."""

    async def erase_install(self, install_id: str) -> tuple[int, int]:
        """Erase the install everywhere; returns ``(batches, snapshots)`` deleted."""

    async def purge(self, cutoff: dt.date) -> tuple[int, int]:
        """Retention: delete data dated before ``cutoff``; returns ``(batches, snapshots)`` deleted."""


S = TypeVar("S", bound="Storage")


@contextlib.contextmanager
def opened(store: S) -> Iterator[S]:
    """``store`` opened synchronously (command-line use) and closed on exit, whatever happens inside."""
    store.open_sync()
    try:
        yield store
    finally:
        store.close_sync()
