"""The collector's storage: one :class:`Storage` interface, two backends (see :mod:`.base`).

``store = duckdb`` (the default) is :class:`~.embedded.EmbeddedStore`: one DuckDB file and its spool.
``store = ducklake`` is :class:`~.lake.store.LakeStore`: several collectors on one DuckLake. The lake
backend is imported only when chosen, so the embedded default needs none of its extras.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator

from collector.config import CollectorConfig

from .base import Gauge, Health, Receipt, Storage, opened
from .rows import check_catalogue

__all__ = ["Gauge", "Health", "Receipt", "Storage", "create_storage", "open_storage"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_storage(config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> Storage:
    """The backend ``config.store`` names, not yet opened; ConfigError when its catalogue cannot be stored."""
    check_catalogue(config.catalogue_in_force)
    if config.lake:
        from .lake.store import LakeStore  # psycopg and the DuckLake extensions load only here

        return LakeStore(config, clock=clock)
    from .embedded.store import EmbeddedStore

    return EmbeddedStore(config, clock=clock)


@contextlib.contextmanager
def open_storage(config: CollectorConfig, *, clock: Callable[[], dt.datetime] = _utcnow) -> Iterator[Storage]:
    """Open the configured backend synchronously for command-line use; closed on exit."""
    with opened(create_storage(config, clock=clock)) as store:
        yield store
