"""The collector: receives telemetry batches over HTTP, stores them durably in one DuckDB file, serves reports.

Run it with ``telemetry-collector serve`` (see docs/collector.md), or embed :func:`create_app`.
"""

from .app import create_app
from .config import CollectorConfig
from .errors import CollectorError, ConfigError
from .store import Receipt, Store

__all__ = ["CollectorConfig", "CollectorError", "ConfigError", "Receipt", "Store", "create_app"]
