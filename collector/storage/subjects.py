"""Data-subject SQL, the same on both backends: everything held about one install, and its erasure.

Each function takes a DuckDB connection (the embedded file, or the lake selected with ``USE``) and runs
inside the caller's transaction; the backends decide locking and what else an erasure must clean up.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from collector.reports import rollup as reports_rollup
from schema import format_hour

from .rows import TYPED_METRICS

__all__ = ["erase_install", "install_data"]

_TYPED: Final = tuple(TYPED_METRICS)
_BATCH_COLUMNS: Final = (
    "batch_id",
    "product_name",
    "product_version",
    "agent_version",
    "created_at",
    "received_at",
    "sha256",
    "body_bytes",
    "snapshot_count",
    "catalogue_version",
)
_BATCH_SELECT: Final = ", ".join(
    "coalesce(catalogue_version, 1)" if c == "catalogue_version" else c for c in _BATCH_COLUMNS
)  # rows stored before migration 004 are format 1: catalogue version 1


def _hour(moment: dt.datetime) -> str:
    return format_hour(moment.replace(tzinfo=dt.UTC))  # the tables hold naive UTC


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _hour(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if not isinstance(value, (int, float, str, type(None))) else value


def install_data(con: Any, install_id: str) -> dict[str, Any]:
    """Everything held about one install: its batches, snapshots (every metric, typed column or not) and report
    rollup rows, as JSON values."""
    batches = con.execute(
        f"SELECT {_BATCH_SELECT} FROM batches WHERE install_id = ? ORDER BY created_at, batch_id",
        [install_id],
    ).fetchall()
    columns = ", ".join(k.replace(".", "_") for k in _TYPED)
    snapshots = con.execute(
        f"SELECT batch_id, product_name, product_version, taken_at, {columns} FROM snapshots"
        " WHERE install_id = ? ORDER BY taken_at, batch_id",
        [install_id],
    ).fetchall()
    others: dict[tuple[str, dt.datetime], dict[str, Any]] = {}
    for batch_id, taken_at, key, number, text in con.execute(
        "SELECT batch_id, taken_at, key, int_value, text_value FROM snapshot_values WHERE install_id = ?"
        " ORDER BY taken_at, key",
        [install_id],
    ).fetchall():
        others.setdefault((str(batch_id), taken_at), {})[key] = number if number is not None else text
    days = con.execute("SELECT * FROM report_days WHERE install_id = ? ORDER BY day", [install_id])
    names = [d[0] for d in days.description]
    return {
        "install_id": install_id,
        "batches": [{c: _plain(v) for c, v in zip(_BATCH_COLUMNS, row, strict=True)} for row in batches],
        "snapshots": [
            {
                "batch_id": str(row[0]),
                "product": {"name": row[1], "version": row[2]},
                "taken_at": _hour(row[3]),
                "metrics": {
                    **{k: v for k, v in zip(_TYPED, row[4:], strict=True) if v is not None},
                    **others.get((str(row[0]), row[3]), {}),
                },
            }
            for row in snapshots
        ],
        "report_days": [{c: _plain(v) for c, v in zip(names, row, strict=True)} for row in days.fetchall()],
    }


def erase_install(con: Any, install_id: str) -> tuple[list[str], int, int]:
    """Delete the install from every table; returns ``(batch_ids, batches, snapshots)`` deleted."""
    ids = [str(r[0]) for r in con.execute("SELECT batch_id FROM batches WHERE install_id = ?", [install_id]).fetchall()]
    reports_rollup.forget_install(con, install_id)
    row = con.execute("SELECT count(*) FROM snapshots WHERE install_id = ?", [install_id]).fetchone()
    snapshots = int(row[0]) if row else 0
    con.execute("DELETE FROM snapshots WHERE install_id = ?", [install_id])
    con.execute("DELETE FROM snapshot_values WHERE install_id = ?", [install_id])
    con.execute("DELETE FROM batches WHERE install_id = ?", [install_id])
    return ids, len(ids), snapshots
