"""DuckDB side of storage: versioned migrations and the bulk load of one spool segment.

Runs only in the store's writer thread (or at start-up, before that thread exists). A segment is
loaded in ONE transaction with two ``INSERT ... SELECT FROM read_json(...)`` statements (DuckDB's
bulk path, ~1M rows/s here, against ~1k rows/s row by row) plus its row in ``loaded_segments``, so
replaying a segment after a crash either finds it loaded or loads it whole.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from schema import CATALOGUE, Catalogue

from .errors import ConfigError

__all__ = [
    "LINE_FIELDS",
    "Migration",
    "load_segment",
    "last_loaded_name",
    "loaded_segment_names",
    "migrate",
    "migrations",
    "spool_columns",
]

LINE_FIELDS: Final = ("received_at", "sha256", "body_bytes", "batch")
"""The keys of one spool line: arrival hour, hex SHA-256 and size of the decompressed body, the batch object."""

_MIGRATION_FILE: Final = re.compile(r"([0-9]{3})_([a-z0-9_]+)\.sql")
_SQL_TYPES: Final = {"enum": "VARCHAR", "pattern": "VARCHAR"}


class Migration:
    """One ``collector/sql/NNN_name.sql`` file."""

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql


def migrations() -> list[Migration]:
    """The migration files shipped with this release, in version order."""
    found = []
    for item in sorted((Path(__file__).parent / "sql").iterdir()):
        match = _MIGRATION_FILE.fullmatch(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migration files share a version: {versions}")
    return found


def migrate(con: Any) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``, each in its own transaction.

    Returns the names applied. Refuses a database that has migrations this release does not know
    (written by a newer collector). Followed by a CHECKPOINT so no DDL waits in the WAL.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMP NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    known = migrations()
    unknown = done - {m.version for m in known}
    if unknown:
        raise ConfigError(f"the database has migrations {sorted(unknown)} that this collector does not know (newer)")
    applied = []
    for migration in known:
        if migration.version in done:
            continue
        con.execute("BEGIN")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, _utcnow()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    con.execute("CHECKPOINT")
    return applied


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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
    """The ``columns=`` argument of ``read_json`` for a spool segment: the line's fields and DuckDB types."""
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


def load_segment(
    con: Any, path: Path, *, unlinked: list[str] | tuple[str, ...] = (), catalogue: Catalogue = CATALOGUE
) -> tuple[int, int]:
    """Load one closed segment file in one transaction and record it in ``loaded_segments``.

    Returns ``(batches, snapshots)`` inserted. The caller deletes the file after this returns.
    ``unlinked`` names earlier segments whose deletion is already durable: their rows are no longer
    needed for replay and are dropped in the same transaction, so the table stays a few rows long.
    """
    columns = spool_columns(catalogue)
    con.execute("BEGIN")
    try:
        batches = con.execute(_INSERT_BATCHES, [str(path), columns]).fetchone()[0]
        snapshots = con.execute(_cached("insert", catalogue, _insert_snapshots_sql), [str(path), columns]).fetchone()[0]
        if unlinked:
            con.execute("DELETE FROM loaded_segments WHERE list_contains(?, name)", [list(unlinked)])
        con.execute("INSERT INTO loaded_segments VALUES (?, ?, ?)", [path.name, _utcnow(), batches])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(batches), int(snapshots)


def loaded_segment_names(con: Any, names: list[str]) -> set[str]:
    """Which of ``names`` are already recorded in ``loaded_segments``."""
    if not names:
        return set()
    rows = con.execute("SELECT name FROM loaded_segments WHERE list_contains(?, name)", [names]).fetchall()
    return {row[0] for row in rows}


def last_loaded_name(con: Any) -> str | None:
    """The newest segment name recorded as loaded (sequence numbers continue after it)."""
    row = con.execute("SELECT max(name) FROM loaded_segments").fetchone()
    return None if row is None else row[0]
