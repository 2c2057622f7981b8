"""Collector settings: one frozen, keyword-only dataclass, validated on construction.

Every field can be set by an environment variable ``TELEMETRY_COLLECTOR_<FIELD>`` (upper case),
and the ``serve`` command's flags override those. docs/collector.md documents every field; a
test fails when one is missing there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError

__all__ = ["ENV_PREFIX", "CollectorConfig"]

ENV_PREFIX: Final = "TELEMETRY_COLLECTOR_"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    """Everything the collector can be told. Defaults run the embedded single-file setup."""

    db_path: Path = Path("telemetry.duckdb")
    """The DuckDB file. One collector process owns it; a second one fails fast."""
    spool_dir: Path | None = None
    """Write-ahead spool of acknowledged batches; default ``<db_path>.spool`` beside the database."""
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    """Largest batch body accepted, checked after decompression (413 above it). A full 744-snapshot batch is ~250 KiB."""
    read_timeout_s: float = 10.0
    """Time allowed to receive a whole request body; slower clients get 408."""
    max_inflight_requests: int = 1024
    """Ingest requests being received or validated at once; beyond it, 503 + Retry-After (bounds memory at
    about this many times max_body_bytes when many slow clients connect together)."""
    writer_threads: int = 1
    """DuckDB threads while the writer loads the spool or refreshes rollups (0 = all); keeps a core for the event loop."""
    max_pending_batches: int = 50_000
    """Acknowledged batches waiting to be loaded into DuckDB; when full, ingest answers 503 + Retry-After."""
    retry_after_s: int = 5
    """The Retry-After value sent with 503 answers."""
    load_interval_s: float = 0.5
    """How often the spool is bulk-loaded into DuckDB (an acknowledged batch shows in reports after about this long)."""
    dedup_window_days: int = 35
    """Batches created within this many days are deduplicated from memory; older ones are checked in DuckDB."""
    max_future_s: int = 2 * 3600
    """How far ahead of the collector's clock a batch's timestamps may be (clock skew)."""
    min_group_size: int = 5
    """Report groups with fewer distinct installs than this are suppressed (k-anonymity)."""
    retention_days: int = 400
    """Raw snapshots older than this are deleted on a schedule."""
    retention_interval_s: float = 3600.0
    """How often the retention job runs."""
    lost_after_days: int = 30
    """An install not seen for this many days counts as lost."""

    def __post_init__(self) -> None:
        checks: dict[str, bool] = {
            "port": 0 <= self.port <= 65535,
            "max_body_bytes": 1024 <= self.max_body_bytes <= 64 * 1024 * 1024,
            "read_timeout_s": 0 < self.read_timeout_s <= 3600,
            "max_inflight_requests": 1 <= self.max_inflight_requests <= 1_000_000,
            "writer_threads": 0 <= self.writer_threads <= 1024,
            "max_pending_batches": self.max_pending_batches >= 1,
            "retry_after_s": 1 <= self.retry_after_s <= 3600,
            "load_interval_s": 0 < self.load_interval_s <= 60,
            "dedup_window_days": 1 <= self.dedup_window_days <= 3650,
            "max_future_s": 0 <= self.max_future_s <= 7 * 86400,
            "min_group_size": 1 <= self.min_group_size <= 1000,
            "retention_days": 1 <= self.retention_days <= 36500,
            "retention_interval_s": 1 <= self.retention_interval_s <= 7 * 86400,
            "lost_after_days": 1 <= self.lost_after_days <= 3650,
            "host": bool(self.host),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}: invalid value {getattr(self, name)!r}", path=name)

    @property
    def spool_path(self) -> Path:
        """The spool directory in effect."""
        return self.spool_dir if self.spool_dir is not None else self.db_path.with_name(self.db_path.name + ".spool")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> CollectorConfig:
        """Build from ``TELEMETRY_COLLECTOR_*`` variables, then ``overrides`` (e.g. CLI flags) on top."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env = ENV_PREFIX + field.name.upper()
            if env in environ:
                values[field.name] = _convert(field, environ[env], env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:  # an override with a wrong name or type
            raise ConfigError(str(exc)) from None


def _convert(field: dataclasses.Field[Any], text: str, env: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind.startswith("Path"):
            return Path(text) if text else None
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{env}: expected {kind}, got {text!r}", path=env) from None
