"""Typed application keys: where the collector's shared objects live on the aiohttp app.

Kept in their own module so handlers in any collector module (ingest, analytics) can import them
without importing ``app.py`` (no cycles: this imports only config, monitoring and the storage interface).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from .config import CollectorConfig
from .limits import Limits
from .monitoring import Monitor
from .offload import Offload
from .storage import Storage

if TYPE_CHECKING:
    from .tokens import TokenCache  # noqa: F401  # named in a string below (tokens imports this module)

__all__ = ["CONFIG", "LIMITS", "MONITOR", "OFFLOAD", "STORE", "TOKENS"]

CONFIG: Final = web.AppKey("collector.config", CollectorConfig)
"""The :class:`CollectorConfig` the app was created with (set by ``create_app``)."""
STORE: Final = web.AppKey("collector.store", Storage)
"""The :class:`~collector.storage.Storage` (either backend); opened by the app's ``cleanup_ctx`` before the first request."""
MONITOR: Final = web.AppKey("collector.monitor", Monitor)
"""The :class:`~collector.monitoring.Monitor` holding the counters behind ``/metrics``."""
LIMITS: Final = web.AppKey("collector.limits", Limits)
"""The per-client :class:`~collector.limits.Limits` (rate limits, report slots, the ingest body budget)."""
TOKENS: Final = web.AppKey["TokenCache"]("collector.tokens")
"""The in-memory :class:`~collector.tokens.TokenCache` that verifies bearer tokens."""
OFFLOAD: Final = web.AppKey("collector.offload", Offload)
"""The report threads (:class:`~collector.offload.Offload`): each report's Python side runs off the event loop."""
