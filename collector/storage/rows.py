"""Batches into rows: the bulk insert of NDJSON batch lines into ``batches`` and ``snapshots``.

Both backends load the same way: lines as :func:`collector.storage.base.spool_line` writes them, read
by two ``INSERT ... SELECT FROM read_json(...)`` statements (DuckDB's bulk path, ~1M rows/s here, against
~1k rows/s row by row). The caller owns the transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from schema import CATALOGUE, Catalogue

__all__ = ["LINE_FIELDS", "insert_lines", "spool_columns"]

LINE_FIELDS: Final = ("received_at", "sha256", "body_bytes", "batch")
"""The keys of one line: arrival hour, hex SHA-256 and size of the decompressed body, the batch object."""

_SQL_TYPES: Final = {"enum": "VARCHAR", "pattern": "VARCHAR"}
_CACHE: dict[tuple[tuple[tuple[str, str, int | None], ...], str], str] = {}


def _cached(kind: str, catalogue: Catalogue, build: Any) -> str:
    # The SQL text depends only on the metrics' keys and types (Catalogue holds dicts: not hashable).
    key = (tuple((e.key, e.type, e.max) for e in catalogue.metrics.values()), kind)
    text = _CACHE.get(key)
    if text is None:
        text = _CACHE[key] = build(catalogue)
    return text


def _metric_struct(catalogue: Catalogue) -> str:
    fields = []
    for entry in catalogue.metrics.values():
        sql_type = _SQL_TYPES.get(entry.type) or (
            "INTEGER" if entry.max is not None and entry.max < 2**31 else "BIGINT"
        )
        fields.append(f'"{entry.key}" {sql_type}')
    return f"STRUCT({', '.join(fields)})"


def spool_columns(catalogue: Catalogue = CATALOGUE) -> dict[str, str]:
    """The ``columns=`` argument of ``read_json`` for batch lines: the line's fields and DuckDB types."""
    batch = (
        "STRUCT(schema_version INTEGER, batch_id UUID, install_id UUID, product STRUCT(name VARCHAR, version VARCHAR),"
        f" agent_version VARCHAR, created_at TIMESTAMP, snapshots STRUCT(taken_at TIMESTAMP, metrics"
        f" {_cached('struct', catalogue, _metric_struct)})[])"
    )
    return {"received_at": "TIMESTAMP", "sha256": "VARCHAR", "body_bytes": "INTEGER", "batch": batch}


def _insert_snapshots_sql(catalogue: Catalogue) -> str:
    columns = [entry.column for entry in catalogue.metrics.values()]
    values = [f's.metrics."{entry.key}"' for entry in catalogue.metrics.values()]
    return (
        "INSERT INTO snapshots (install_id, batch_id, product_name, product_version, taken_at, "
        f"{', '.join(columns)}) SELECT b.install_id, b.batch_id, b.product.name, b.product.version, s.taken_at, "
        f"{', '.join(values)} FROM (SELECT batch AS b, unnest(batch.snapshots) AS s FROM "
        "read_json(?, format='newline_delimited', columns=?))"
    )


_INSERT_BATCHES: Final = (
    "INSERT INTO batches SELECT batch.batch_id, batch.install_id, batch.product.name, batch.product.version, "
    "batch.agent_version, batch.created_at, received_at, sha256, body_bytes, len(batch.snapshots) "
    "FROM read_json(?, format='newline_delimited', columns=?)"
)


def insert_lines(con: Any, path: Path, *, catalogue: Catalogue = CATALOGUE) -> tuple[int, int]:
    """Insert every batch line of the NDJSON file ``path``; returns ``(batches, snapshots)`` inserted."""
    columns = spool_columns(catalogue)
    batches = con.execute(_INSERT_BATCHES, [str(path), columns]).fetchone()[0]
    snapshots = con.execute(_cached("insert", catalogue, _insert_snapshots_sql), [str(path), columns]).fetchone()[0]
    return int(batches), int(snapshots)
