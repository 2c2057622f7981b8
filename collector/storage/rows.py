"""Batches into rows: the bulk insert of NDJSON batch lines into ``batches``, ``snapshots`` and ``snapshot_values``.

Both backends load the same way: lines as :func:`collector.storage.base.spool_line` writes them, read
by ``INSERT ... SELECT FROM read_json(...)`` statements (DuckDB's bulk path, ~1M rows/s here, against
~1k rows/s row by row). The caller owns the transaction.

Where a metric is stored: the metrics of catalogue version 1 each have a typed column of ``snapshots``
(:data:`TYPED_METRICS`, created by ``001_initial.sql``). Any other catalogue metric (one a vendor added in
a later catalogue version) is a row of ``snapshot_values`` (key, and its integer or text value), so a
collector takes a newer catalogue without a migration, on both backends, and data-subject requests,
erasure and retention cover those values like the rest. A line carries such values already split out
(its ``values`` field), so loading never depends on the catalogue in force: a spool written under a
newer catalogue loads whole under any other.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from collector.errors import ConfigError
from schema import Catalogue

__all__ = [
    "LINE_FIELDS",
    "TYPED_METRICS",
    "check_catalogue",
    "insert_lines",
    "other_metric_keys",
    "other_values",
    "spool_columns",
]

LINE_FIELDS: Final = ("received_at", "sha256", "body_bytes", "batch", "values")
"""The keys of one line: arrival hour, hex SHA-256 and size of the decompressed body, the batch object, and
(only when there are any) the batch's values of metrics without a typed column (:func:`other_values`)."""

TYPED_METRICS: Final[Mapping[str, str]] = {
    "os.family": "VARCHAR",
    "os.version": "VARCHAR",
    "host.cpu.logical_cores": "INTEGER",
    "host.cpu.usage_pct": "INTEGER",
    "host.memory.total_gib": "INTEGER",
    "host.disk.total_gib": "INTEGER",
    "host.disk.free_gib": "INTEGER",
    "usage.projects": "BIGINT",
    "usage.deployments": "BIGINT",
}
"""Metric key -> SQL type of its column in ``snapshots`` (the key with dots as underscores)."""

_INT_RANGE: Final = {"INTEGER": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}


def _column(key: str) -> str:
    return key.replace(".", "_")


def check_catalogue(catalogue: Catalogue) -> None:
    """Raise :class:`ConfigError` when a catalogue metric cannot be stored in its typed column.

    A vendor's catalogue could define a key that has a column with another type (text where the column
    holds integers, or bounds past an INTEGER); its batches would then fail to load after being
    acknowledged, so such a catalogue is refused at start instead.
    """
    for key, entry in catalogue.metrics.items():
        sql_type = TYPED_METRICS.get(key)
        if sql_type is None:
            continue
        if sql_type == "VARCHAR":
            fits = entry.type != "int"
        else:
            lo, hi = _INT_RANGE[sql_type]
            fits = entry.type == "int" and entry.min is not None and entry.max is not None
            fits = fits and lo <= (entry.min or 0) and (entry.max or 0) <= hi
        if not fits:
            raise ConfigError(
                f"catalogue: {key} does not fit its stored column ({sql_type}); give a metric of "
                "another type a new key",
                path="catalogue",
            )


def other_metric_keys(catalogue: Catalogue) -> frozenset[str]:
    """The catalogue's metrics without a typed column: stored as ``snapshot_values`` rows."""
    return frozenset(catalogue.metrics) - TYPED_METRICS.keys()


def other_values(obj: Any, keys: frozenset[str]) -> list[dict[str, Any]]:
    """The values of ``keys`` in a (validated) batch object, one item per snapshot and key, as a line holds them."""
    out = []
    for snap in obj["snapshots"]:
        metrics = snap["metrics"]
        for key in keys:
            value = metrics.get(key)
            if value is not None:
                # Validated: an int or a str, and never a bool (JSON true is refused as a wrong type).
                number, text = (value, None) if type(value) is int else (None, value)
                out.append({"taken_at": snap["taken_at"], "key": key, "int_value": number, "text_value": text})
    return out


_METRICS_STRUCT: Final = "STRUCT(" + ", ".join(f'"{k}" {t}' for k, t in TYPED_METRICS.items()) + ")"
_BATCH_STRUCT: Final = (
    "STRUCT(schema_version INTEGER, catalogue_version INTEGER, batch_id UUID, install_id UUID, product STRUCT(name"
    " VARCHAR, version VARCHAR), agent_version VARCHAR, created_at TIMESTAMP, snapshots STRUCT(taken_at TIMESTAMP,"
    f" metrics {_METRICS_STRUCT})[])"
)
_VALUES_COLUMNS: Final = {
    "batch": "STRUCT(batch_id UUID, install_id UUID)",
    "values": "STRUCT(taken_at TIMESTAMP, key VARCHAR, int_value BIGINT, text_value VARCHAR)[]",
}


def spool_columns() -> dict[str, str]:
    """The ``columns=`` argument of ``read_json`` for batch lines: the line's fields and DuckDB types."""
    return {"received_at": "TIMESTAMP", "sha256": "VARCHAR", "body_bytes": "INTEGER", "batch": _BATCH_STRUCT}


_TYPED_VALUES: Final = ", ".join('s.metrics."' + k + '"' for k in TYPED_METRICS)
_INSERT_SNAPSHOTS: Final = (
    "INSERT INTO snapshots (install_id, batch_id, product_name, product_version, taken_at, "
    f"{', '.join(_column(k) for k in TYPED_METRICS)}) SELECT b.install_id, b.batch_id, b.product.name, "
    f"b.product.version, s.taken_at, {_TYPED_VALUES} FROM (SELECT batch AS b, "
    "unnest(batch.snapshots) AS s FROM read_json(?, format='newline_delimited', columns=?))"
)
_INSERT_BATCHES: Final = (
    "INSERT INTO batches (batch_id, install_id, product_name, product_version, agent_version, created_at, received_at,"
    " sha256, body_bytes, snapshot_count, catalogue_version, first_taken_at) SELECT batch.batch_id, batch.install_id,"
    " batch.product.name, batch.product.version, batch.agent_version, batch.created_at, received_at, sha256,"
    " body_bytes, len(batch.snapshots), coalesce(batch.catalogue_version, 1),"  # format 1: catalogue version 1
    " list_min([s.taken_at FOR s IN batch.snapshots])"
    " FROM read_json(?, format='newline_delimited', columns=?)"
)
_INSERT_VALUES: Final = (
    "INSERT INTO snapshot_values (install_id, batch_id, taken_at, key, int_value, text_value) SELECT"
    " batch.install_id, batch.batch_id, v.taken_at, v.key, v.int_value, v.text_value FROM (SELECT batch,"
    " unnest(\"values\") AS v FROM read_json(?, format='newline_delimited', columns=?))"
)
_VALUES_MARK: Final = b'"values":['
"""How a line with values starts that field (orjson writes no spaces). No metric value is a list, so only
that field can hold these bytes; a false match would only cost one more read of the file."""


def _has_values(path: Path) -> bool:
    # A byte search (memchr speed) instead of a third pass of DuckDB's JSON reader over every file:
    # with the packaged catalogue no line ever has values, and that pass costs ~13% of a load.
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return view.find(_VALUES_MARK) != -1


def insert_lines(con: Any, path: Path) -> tuple[int, int]:
    """Insert every batch line of the NDJSON file ``path``; returns ``(batches, snapshots)`` inserted."""
    columns = spool_columns()
    batches = con.execute(_INSERT_BATCHES, [str(path), columns]).fetchone()[0]
    snapshots = con.execute(_INSERT_SNAPSHOTS, [str(path), columns]).fetchone()[0]
    if _has_values(path):
        con.execute(_INSERT_VALUES, [str(path), _VALUES_COLUMNS])
    return int(batches), int(snapshots)
