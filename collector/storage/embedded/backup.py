"""Online backups of the embedded database: a consistent copy in a new DuckDB file while the collector serves.

The serving process holds the database file under an exclusive lock, so a backup is made by that
process, on a read cursor of its own connection::

    ATTACH '<new file>' AS backup; COPY FROM DATABASE <main> TO backup; CHECKPOINT backup; DETACH backup

``COPY FROM DATABASE`` is one statement, hence one transaction: DuckDB's MVCC gives it a snapshot of
every table as of one commit, while the writer thread keeps loading the spool (nothing waits on the
backup; ingest goes on). This is preferred to copying the file's bytes, which is consistent only if no
checkpoint rewrites the file (and deletes its WAL) during the copy, something DuckDB does not promise;
the logical copy depends only on documented SQL, skips free blocks, and the result is an ordinary
database file: restoring it is putting it in place of ``db_path``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

import duckdb

__all__ = ["BACKUP_PREFIX", "open_snapshot", "remove_leftovers", "snapshot", "verify_backup"]

BACKUP_PREFIX: Final = "backup-"
"""Names of the temporary copies a running collector makes in its spool directory (removed at start)."""


def _quoted(text: str, quote: str) -> str:
    return quote + text.replace(quote, quote * 2) + quote


def snapshot(cursor: Callable[[], Any], target: Path) -> None:
    """Copy the database a fresh ``cursor()`` sees into the new DuckDB file ``target`` (it must not exist)."""
    if target.exists():
        raise FileExistsError(target)
    cur = cursor()
    alias = f"telemetry_backup_{secrets.token_hex(4)}"
    try:
        source = _quoted(cur.execute("SELECT current_database()").fetchone()[0], '"')
        # ATTACH takes no parameters: the path is ours (derived from settings, never from a request), quoted.
        where = _quoted(str(target), "'")
        cur.execute(f"ATTACH {where} AS {alias}")
        try:
            cur.execute(f"COPY FROM DATABASE {source} TO {alias}")
            cur.execute(f"CHECKPOINT {alias}")  # everything in the file itself: no WAL to carry along
        finally:
            cur.execute(f"DETACH {alias}")
    finally:
        cur.close()
    os.chmod(target, 0o600)


def open_snapshot(cursor: Callable[[], Any], spool_dir: Path) -> tuple[BinaryIO, int]:
    """A fresh snapshot as an open file (already unlinked: nothing is left behind, even on a crash) and its size."""
    target = spool_dir / f"{BACKUP_PREFIX}{secrets.token_hex(8)}.duckdb"
    try:
        snapshot(cursor, target)
        f = target.open("rb")
    finally:
        for leftover in (target, target.with_name(target.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return f, os.fstat(f.fileno()).st_size


def remove_leftovers(spool_dir: Path) -> None:
    """Delete temporary copies a crash left in the spool directory (they are never needed again)."""
    if spool_dir.is_dir():
        for path in spool_dir.iterdir():
            if path.name.startswith(BACKUP_PREFIX) and path.name.endswith((".duckdb", ".duckdb.wal")):
                path.unlink(missing_ok=True)


def verify_backup(path: Path) -> tuple[int, int]:
    """Open a backup read-only and return ``(schema version, batches)``; raises ``duckdb.Error`` if it is no database."""
    with duckdb.connect(str(path), read_only=True) as con:
        version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        batches = con.execute("SELECT count(*) FROM batches").fetchone()
    return int(version[0] if version else 0), int(batches[0] if batches else 0)
