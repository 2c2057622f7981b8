"""Which lake a data path belongs to: a marker object, so that two catalogs never share one data path.

Maintenance deletes every Parquet file under ``data_path`` that its catalog does not list (the orphans
of commits killed midway, :mod:`.maintenance`). A second catalog pointed at the same path (a new
database by mistake, a test lake on the production prefix) would therefore delete the first one's
files. So each catalog has an id (``telemetry_collector.lake``), the data path holds a small marker
object naming it (``telemetry-lake-id``, not Parquet: no sweep touches it), and a collector refuses to
start when the marker names another lake. Checked under the MIGRATE lock, so collectors starting
together on a new lake agree on one marker.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Final

import duckdb

from collector.errors import ConfigError

from .connect import LakeSettings

__all__ = ["MARKER_NAME", "SETUP_SQL", "check_data_path"]

MARKER_NAME: Final = "telemetry-lake-id"
SETUP_SQL: Final = (
    """CREATE TABLE IF NOT EXISTS telemetry_collector.lake (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),   -- a single row
        id  uuid    NOT NULL
    )""",
)


def check_data_path(pg: Any, duck: Any, settings: LakeSettings) -> None:
    """Write this catalog's marker into an unmarked data path; raise :class:`ConfigError` if another lake's is there."""
    pg.execute(
        "INSERT INTO telemetry_collector.lake (id) VALUES (%s) ON CONFLICT (one) DO NOTHING", (str(uuid.uuid4()),)
    )
    row = pg.execute("SELECT id::text FROM telemetry_collector.lake").fetchone()
    lake_id = str(uuid.UUID(str(row[0]))) if row else ""
    marker = settings.data_path + MARKER_NAME
    found = _read(duck, marker)
    if found is None:
        _write(duck, marker, lake_id)
    elif found != lake_id:
        raise ConfigError(
            f"data_path {settings.data_path} belongs to another lake (its {MARKER_NAME} is {found}, this catalog's"
            f" is {lake_id}): give each catalog its own data_path",
            path="data_path",
        )


def _read(duck: Any, marker: str) -> str | None:
    try:
        row = duck.execute("SELECT content FROM read_text(?)", [marker]).fetchone()
    except duckdb.IOException as exc:  # a missing file; on S3 an HTTPException (a subclass) with a 404
        if "404" in str(exc) or "No files found" in str(exc):
            return None
        raise
    return str(row[0]).strip() if row else None


def _write(duck: Any, marker: str, lake_id: str) -> None:
    if marker.startswith("s3://"):
        # COPY writes one object (it takes no parameters): the id is a UUID just parsed, the path is quoted.
        target = marker.replace("'", "''")
        duck.execute(f"COPY (SELECT '{lake_id}') TO '{target}' (FORMAT csv, HEADER false)")
    else:
        path = Path(marker)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lake_id + "\n", "ascii")
