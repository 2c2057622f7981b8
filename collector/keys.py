"""Typed application keys: where the collector's shared objects live on the aiohttp app.

Kept in their own module so handlers in any collector module (ingest, analytics) can import them
without importing ``app.py`` (no cycles: this imports only config, monitoring and the storage interface).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .config import CollectorConfig
from .monitoring import Monitor
from .storage import Storage

__all__ = ["CONFIG", "MONITOR", "STORE"]

CONFIG: Final = web.AppKey("collector.config", CollectorConfig)
"""The :class:`CollectorConfig` the app was created with (set by ``create_app``)."""
STORE: Final = web.AppKey("collector.store", Storage)
"""The :class:`~collector.storage.Storage` (either backend); opened by the app's ``cleanup_ctx`` before the first request."""
MONITOR: Final = web.AppKey("collector.monitor", Monitor)
"""The :class:`~collector.monitoring.Monitor` holding the counters behind ``/metrics``."""
