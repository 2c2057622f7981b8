"""The collector: receives telemetry batches over HTTP, stores them durably (one DuckDB file, or a shared DuckLake), serves reports.

Run it with ``telemetry-collector serve`` (see docs/collector.md), or embed :func:`create_app`.
"""

from .config import CollectorConfig
from .errors import CollectorError, ConfigError
from .storage import Receipt, Storage, open_storage
from .web.app import create_app

__all__ = ["CollectorConfig", "CollectorError", "ConfigError", "Receipt", "Storage", "create_app", "open_storage"]
