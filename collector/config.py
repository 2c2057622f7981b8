"""Collector settings: one frozen, keyword-only dataclass, validated on construction.

Every field can be set by an environment variable ``TELEMETRY_COLLECTOR_<FIELD>`` (upper case),
and by a flag ``--<field-with-dashes>`` of the commands that take settings; flags win. Each field
names its own parser (a :class:`schema.settings.Kind`, shared with the agent's config), so the environment and
the flags go through the same conversion and the same rule for empty values (None for a setting that may be
None), and an error names what the user typed (the variable or the flag).
docs/collector.md documents every field; a test fails when one is missing there.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from schema import Catalogue, SchemaError, catalogue_file
from schema.settings import INTEGER, NUMBER, PATH, TEXT, Optional, kind_of, setting

from .errors import ConfigError

__all__ = ["ENV_PREFIX", "STORES", "CollectorConfig", "flag_name"]

ENV_PREFIX: Final = "TELEMETRY_COLLECTOR_"
STORES: Final = ("duckdb", "ducklake")
"""The storage backends: the embedded DuckDB file (default) or a shared DuckLake."""

_AWS_FALLBACKS: Final = {
    "s3_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret": "AWS_SECRET_ACCESS_KEY",  # the name of a variable, not a secret
    "s3_region": "AWS_REGION",
    "s3_endpoint": "AWS_ENDPOINT_URL",
}
"""The standard AWS variables, read when ours are unset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    """Everything the collector can be told. Defaults run the embedded single-file setup."""

    store: Literal["duckdb", "ducklake"] = setting(TEXT, "duckdb")
    """Storage backend: ``duckdb`` (one embedded file) or ``ducklake`` (a lake shared by several collectors)."""
    db_path: Path = setting(PATH, Path("telemetry.duckdb"))
    """The DuckDB file (``store = duckdb``). One collector process owns it; a second one fails fast."""
    spool_dir: Path | None = setting(Optional(PATH), None)
    """Write-ahead spool of acknowledged batches; default ``<db_path>.spool`` beside the database."""
    catalog: str | None = setting(Optional(TEXT), None, secret=True)
    """The lake's PostgreSQL catalog, ``postgresql://user[:password]@host:port/dbname`` (``store = ducklake``)."""
    data_path: str | None = setting(Optional(TEXT), None)
    """Where the lake's Parquet files live: ``s3://bucket/prefix/`` or an absolute directory shared by all collectors.

    The lake's own prefix: maintenance deletes every Parquet file under it that the lake's catalog does not list."""
    s3_endpoint: str | None = setting(Optional(TEXT), None)
    """S3-compatible endpoint URL such as ``http://127.0.0.1:8333`` (path-style addressing); unset means AWS."""
    s3_key_id: str | None = setting(Optional(TEXT), None, secret=True)
    """S3 access key id (default ``$AWS_ACCESS_KEY_ID``)."""
    s3_secret: str | None = setting(Optional(TEXT), None, secret=True)
    """S3 secret access key (default ``$AWS_SECRET_ACCESS_KEY``)."""
    s3_region: str | None = setting(Optional(TEXT), None)
    """S3 region (default ``$AWS_REGION``, else ``us-east-1``)."""
    host: str = setting(TEXT, "127.0.0.1")
    port: int = setting(INTEGER, 8080)
    max_body_bytes: int = setting(INTEGER, 1024 * 1024)
    """Largest batch body accepted, checked after decompression (413 above it). A full 744-snapshot batch is ~250 KiB."""
    read_timeout_s: float = setting(NUMBER, 10.0)
    """Time allowed to receive a whole request body; slower clients get 408."""
    idle_timeout_s: float = setting(NUMBER, 5.0)
    """Longest pause between two reads of a request body; a client that stops sending gets 408 sooner."""
    header_timeout_s: float = setting(NUMBER, 10.0)
    """Time allowed for a request's line and headers once its first byte arrived; then the connection closes."""
    keepalive_timeout_s: float = setting(NUMBER, 30.0)
    """A connection that sends nothing this long, before its first request or between two, is closed."""
    max_connections: int = setting(INTEGER, 2048)
    """Open client connections at most (lowered to fit the open-files limit). Past it, the longest-idle
    connection is closed to make room; when none is idle, the new one gets a 503 and is closed."""
    max_body_buffer_bytes: int = setting(INTEGER, 128 * 1024 * 1024)
    """Bytes of ingest bodies being received at once, over every connection; a body that would go past it
    gets 503 + Retry-After (bounds the memory that slow or aborted uploads can hold)."""
    max_inflight_requests: int = setting(INTEGER, 1024)
    """Ingest requests being validated and stored at once, counted once their body has arrived (a client
    still sending holds none); beyond it, 503 + Retry-After."""
    max_reports_per_token: int = setting(INTEGER, 4)
    """Report requests one token may have in progress at once; four times as many more wait, the rest get 429."""
    max_reports_per_min: int = setting(INTEGER, 120)
    """Report requests one token may make per minute (a burst of that many, then one per 60/N s); then 429."""
    max_auth_failures_per_min: int = setting(INTEGER, 120)
    """Failed authentications (401) one client address may cause per minute; past it, 429 until it slows."""
    max_install_requests_per_min: int = setting(INTEGER, 60)
    """Requests to ``/v1/installs/...`` (data-subject access and erasure) one client address may make per minute."""
    writer_threads: int = setting(INTEGER, 1)
    """DuckDB threads while the writer loads the spool or refreshes rollups (0 = all); keeps a core for the event loop."""
    max_pending_batches: int = setting(INTEGER, 50_000)
    """Batches accepted but not yet in the tables (embedded: awaiting load; lake: awaiting their commit);
    when full, ingest answers 503 + Retry-After."""
    retry_after_s: int = setting(INTEGER, 5)
    """The Retry-After value sent with 503 answers."""
    load_interval_s: float = setting(NUMBER, 0.5)
    """How often the spool is bulk-loaded into DuckDB (an acknowledged batch shows in reports after about this long)."""
    dedup_window_days: int = setting(INTEGER, 35)
    """Batches created within this many days are deduplicated from memory (lake: from claims in PostgreSQL);
    older ones are looked up in the tables."""
    max_future_s: int = setting(INTEGER, 2 * 3600)
    """How far ahead of the collector's clock a batch's timestamps may be (clock skew)."""
    min_group_size: int = setting(INTEGER, 5)
    """Report groups with fewer distinct installs than this are suppressed (k-anonymity)."""
    retention_days: int = setting(INTEGER, 400)
    """Raw snapshots older than this are deleted on a schedule."""
    retention_interval_s: float = setting(NUMBER, 3600.0)
    """How often the retention job runs."""
    lost_after_days: int = setting(INTEGER, 30)
    """An install not seen for this many days counts as lost."""
    rollup_interval_s: float | None = setting(Optional(NUMBER), None)
    """How often new batches are folded into the report rollup in the background (a report folds what it
    needs first anyway); default 5 s embedded, 30 s on a lake, where finding the new batches reads the day's
    small files: a fold costs about as much for ten batches as for a thousand."""
    maintenance_interval_s: float = setting(NUMBER, 300.0)
    """Lake: how often one collector (holding a PostgreSQL advisory lock) compacts and cleans the lake."""
    erasure_max_hours: float = setting(NUMBER, 24.0)
    """Lake: an erased install's rows are gone from every Parquet file, catalog row and retained snapshot
    within this many hours of the DELETE (the rows stop being readable at once)."""
    catalogue: Path | None = setting(Optional(PATH), None)
    """The policy catalogue (a TOML file) batches are validated against and ``GET /v1/policy`` serves; default the
    packaged one. A vendor ships its catalogue with its product release; only ever move it to a newer version."""

    def __post_init__(self) -> None:
        checks: dict[str, bool] = {
            "store": self.store in STORES,
            "port": 0 <= self.port <= 65535,
            "max_body_bytes": 1024 <= self.max_body_bytes <= 64 * 1024 * 1024,
            "read_timeout_s": 0 < self.read_timeout_s <= 3600,
            "idle_timeout_s": 0 < self.idle_timeout_s <= 3600,
            "header_timeout_s": 0 < self.header_timeout_s <= 3600,
            "keepalive_timeout_s": 0 < self.keepalive_timeout_s <= 86400,
            "max_connections": 16 <= self.max_connections <= 1_000_000,
            "max_body_buffer_bytes": self.max_body_bytes <= self.max_body_buffer_bytes <= 1 << 40,
            "max_inflight_requests": 1 <= self.max_inflight_requests <= 1_000_000,
            "max_reports_per_token": 1 <= self.max_reports_per_token <= 1000,
            "max_reports_per_min": 1 <= self.max_reports_per_min <= 1_000_000,
            "max_auth_failures_per_min": 1 <= self.max_auth_failures_per_min <= 1_000_000,
            "max_install_requests_per_min": 1 <= self.max_install_requests_per_min <= 1_000_000,
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
            "maintenance_interval_s": 0.1 <= self.maintenance_interval_s <= 86400,
            "rollup_interval_s": self.rollup_interval_s is None or 0.1 <= self.rollup_interval_s <= 3600,
            "erasure_max_hours": 0 < self.erasure_max_hours <= 24 * 30,
            "host": bool(self.host),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}: invalid value {getattr(self, name)!r}", path=name)
        if self.store == "ducklake":
            self._check_lake()
        try:
            catalogue_file(self.catalogue)
        except SchemaError as exc:
            raise ConfigError(f"catalogue: {exc.message}", path="catalogue") from None

    def _check_lake(self) -> None:
        if self.catalog is None:
            raise ConfigError(
                "catalog: required with store = ducklake (postgresql://user@host:port/dbname)", path="catalog"
            )
        catalog_error = _catalog_error(self.catalog)
        if catalog_error:
            raise ConfigError(f"catalog: {catalog_error}", path="catalog")
        if self.data_path is None:
            raise ConfigError(
                "data_path: required with store = ducklake (s3://bucket/prefix/ or a directory)", path="data_path"
            )
        if self.data_path.startswith("s3://"):
            bucket = self.data_path.removeprefix("s3://").split("/", 1)[0]
            if not bucket:
                raise ConfigError("data_path: s3:// needs a bucket, e.g. s3://telemetry/lake/", path="data_path")
            if (self.s3_key_id is None) != (self.s3_secret is None):
                raise ConfigError("s3_key_id and s3_secret: set both or neither", path="s3_key_id")
        elif not Path(self.data_path).is_absolute() or "://" in self.data_path:
            raise ConfigError("data_path: expected s3://bucket/prefix/ or an absolute directory", path="data_path")
        if self.s3_endpoint is not None:
            parts = urllib.parse.urlsplit(self.s3_endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                raise ConfigError("s3_endpoint: expected a URL such as http://127.0.0.1:8333", path="s3_endpoint")

    @property
    def catalogue_in_force(self) -> Catalogue:
        """The catalogue of the ``catalogue`` file, or the packaged one (read once per file version)."""
        return catalogue_file(self.catalogue)

    @property
    def spool_path(self) -> Path:
        """The spool directory in effect."""
        return self.spool_dir if self.spool_dir is not None else self.db_path.with_name(self.db_path.name + ".spool")

    @property
    def where(self) -> str:
        """Where the batches are stored, for people and logs (never a credential)."""
        if not self.lake:
            return f"database {self.db_path}"
        url = urllib.parse.urlsplit(self.catalog or "")
        return f"lake postgresql://{url.hostname}:{url.port}{url.path}, data {self.data_path}"

    @property
    def rollup_interval_in_force_s(self) -> float:
        """``rollup_interval_s``, or its default for the store (5 s embedded, 30 s on a lake)."""
        if self.rollup_interval_s is not None:
            return self.rollup_interval_s
        return 30.0 if self.lake else 5.0

    @property
    def lake(self) -> bool:
        """True when the batches live in a shared DuckLake rather than the embedded file."""
        return self.store == "ducklake"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, flags: Mapping[str, str] | None = None, **overrides: Any
    ) -> CollectorConfig:
        """Build from ``TELEMETRY_COLLECTOR_*`` (and the AWS fallbacks), then ``flags``, then ``overrides``.

        ``flags`` maps field names to the text a user typed on the command line (parsed like the
        environment; an error names the flag); ``overrides`` are typed values (``None`` is ignored).
        """
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            env = ENV_PREFIX + item.name.upper()
            fallback = _AWS_FALLBACKS.get(item.name)
            if env in environ:
                values[item.name] = _parse(item, environ[env], env)
            elif fallback is not None and environ.get(fallback):
                values[item.name] = _parse(item, environ[fallback], fallback)
        for name, text in (flags or {}).items():
            values[name] = _parse(_field(cls, name), text, flag_name(name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:  # an override with a wrong name or type
            raise ConfigError(str(exc)) from None

    def with_flags(self, flags: Mapping[str, str]) -> CollectorConfig:
        """A copy with flag texts applied (as :meth:`from_env` does)."""
        values = {name: _parse(_field(type(self), name), text, flag_name(name)) for name, text in flags.items()}
        return dataclasses.replace(self, **values)


def flag_name(field_name: str) -> str:
    """The command-line flag of a setting (``db_path`` is also ``--db``)."""
    return "--" + field_name.replace("_", "-")


def _field(cls: type[CollectorConfig], name: str) -> dataclasses.Field[Any]:
    for item in dataclasses.fields(cls):
        if item.name == name:
            return item
    raise ConfigError(f"unknown setting {name!r}", path=name)


def _parse(item: dataclasses.Field[Any], text: str, source: str) -> Any:
    try:
        return kind_of(item).text(text)
    except ValueError as exc:
        # A secret's text is never echoed back, even in an error.
        shown = "(hidden)" if not item.repr else repr(text[:80])
        raise ConfigError(f"{source}: {exc}, got {shown}", path=source) from None


def _catalog_error(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return "expected postgresql://user[:password]@host:port/dbname"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number"
    if not parts.hostname or not parts.username or not parts.path.strip("/") or port is None:
        return "expected postgresql://user[:password]@host:port/dbname (user, host, port and dbname are required)"
    if parts.query or parts.fragment or "/" in parts.path.strip("/"):
        return "expected postgresql://user[:password]@host:port/dbname with nothing after the dbname"
    return ""
