"""Typed application keys: where the collector's shared objects live on the aiohttp app.

Kept in their own module so handlers in any collector module (ingest, analytics) can import them
without importing ``app.py`` (no cycles: this imports only config, monitoring and the storage interface).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from collector.config import CollectorConfig
from collector.storage import Storage
from collector.web.limits import Limits
from collector.web.monitoring import Monitor
from collector.web.offload import Offload

if TYPE_CHECKING:
    from collector.web.tokens import TokenCache  # noqa: F401  # named in a string below (tokens imports this module)

__all__ = ["CONFIG", "LIMITS", "MONITOR", "OFFLOAD", "STORE", "TOKENS"]

CONFIG: Final = web.AppKey("collector.config", CollectorConfig)
"""The :class:`CollectorConfig` the app was created with (set by ``create_app``)."""
STORE: Final = web.AppKey("collector.store", Storage)
"""The :class:`~collector.storage.Storage` (either backend); opened by the app's ``cleanup_ctx`` before the first request."""
MONITOR: Final = web.AppKey("collector.monitor", Monitor)
"""The :class:`~collector.web.monitoring.Monitor` holding the counters behind ``/metrics``."""
LIMITS: Final = web.AppKey("collector.web.limits", Limits)
"""The per-client :class:`~collector.web.limits.Limits` (rate limits, report slots, the ingest body budget)."""
TOKENS: Final = web.AppKey["TokenCache"]("collector.web.tokens")
"""The in-memory :class:`~collector.web.tokens.TokenCache` that verifies bearer tokens."""
OFFLOAD: Final = web.AppKey("collector.web.offload", Offload)
"""The report threads (:class:`~collector.web.offload.Offload`): each report's Python side runs off the event loop."""
