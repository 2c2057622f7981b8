"""Versioned schema migrations: ``collector/storage/sql/NNN_name.sql``, applied in order at start-up.

The same files create the embedded database and the lake (DuckLake runs the same DDL). Each migration
runs in its own transaction and is recorded in ``schema_migrations``, so it is applied once. No DDL
ever runs on the ingest path (DuckDB's WAL replay has known bugs around DDL, duckdb#19712).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Final

from collector.errors import ConfigError

__all__ = ["Migration", "migrate", "migrations"]

_MIGRATION_FILE: Final = re.compile(r"([0-9]{3})_([a-z0-9_]+)\.sql")
_SQL_DIR: Final = Path(__file__).parent / "sql"


class Migration:
    """One ``collector/storage/sql/NNN_name.sql`` file."""

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql


def migrations() -> list[Migration]:
    """The migration files shipped with this release, in version order."""
    found = []
    for item in sorted(_SQL_DIR.iterdir()):
        match = _MIGRATION_FILE.fullmatch(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migration files share a version: {versions}")
    return found


def migrate(con: Any, *, checkpoint: bool = True, after: dict[int, str] | None = None) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``, each in its own transaction.

    Returns the names applied. Refuses a database that has migrations this release does not know
    (written by a newer collector). ``after`` adds backend-specific statements to a version's
    transaction (the lake partitions its tables by month). ``checkpoint`` ends with a CHECKPOINT so
    no DDL waits in the embedded WAL (on a lake, CHECKPOINT would start its maintenance instead).
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
            if after and migration.version in after:
                con.execute(after[migration.version])
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    if checkpoint:
        con.execute("CHECKPOINT")
    return applied
