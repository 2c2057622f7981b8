"""The embedded store's readings for ``/metrics``: what waits, the spool on disk, the dedup index, the loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.storage.base import Gauge

from .dedup import DedupIndex
from .segments import SegmentLoader
from .spool import list_segments

if TYPE_CHECKING:
    from .store import EmbeddedStore

__all__ = ["embedded_gauges"]


def embedded_gauges(store: EmbeddedStore, loader: SegmentLoader, index: DedupIndex) -> dict[str, Gauge]:
    """Each gauge reads its value when ``/metrics`` is rendered."""
    spool_dir = store.config.spool_path
    return {
        "telemetry_pending_batches": Gauge(
            "Batches acknowledged or awaiting fsync, not yet loaded into DuckDB.", lambda: store.pending_batches
        ),
        "telemetry_writer_queue_depth": Gauge("Jobs queued for the DuckDB writer thread.", store.writer_depth),
        "telemetry_spool_segments": Gauge("Spool segment files on disk.", lambda: len(list_segments(spool_dir))),
        "telemetry_dedup_index_entries": Gauge("Batch ids in the in-memory dedup index.", lambda: len(index)),
        "telemetry_segments_loaded_total": Gauge(
            "Spool segments loaded since start.", lambda: loader.segments_loaded, kind="counter"
        ),
        "telemetry_segment_load_failures": Gauge(
            "Spool segments set aside after failed loads, awaiting a retry.", lambda: loader.set_aside_segments
        ),
        "telemetry_last_load_seconds": Gauge("Duration of the latest segment load.", lambda: loader.last_load_s),
    }
