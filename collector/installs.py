"""Data-subject requests: ``GET`` and ``DELETE /v1/installs/{install_id}``, proven by the install's secret.

The caller presents ``Authorization: Bearer <install secret>``; the collector recomputes the install id
from it (:func:`schema.same_install`) and stores no secret. A missing, malformed or wrong secret gets the
same 401 whether or not the install exists, and nothing is read before the proof succeeds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import orjson
from aiohttp import web

from schema import CATALOGUE, same_install

from . import reports_rollup
from .errors import UnauthorizedError
from .keys import STORE
from .tokens import bearer

__all__ = ["delete_install", "erase_install", "get_install", "install_data"]

_METRICS: Final = tuple(CATALOGUE.metrics.values())
_BATCH_COLUMNS: Final = (
    "batch_id", "product_name", "product_version", "agent_version", "created_at", "received_at", "sha256",
    "body_bytes", "snapshot_count",
)  # fmt: skip


def _proven_install_id(request: web.Request) -> str:
    install_id = request.match_info["install_id"].lower()
    secret = bearer(request)
    if secret is None or not same_install(install_id, secret):
        raise UnauthorizedError("the install's secret is required (Authorization: Bearer <secret>)")
    return install_id


def _hour(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _hour(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if not isinstance(value, (int, float, str, type(None))) else value


def install_data(con: Any, install_id: str) -> dict[str, Any]:
    """Everything held about one install: its batches, snapshots and report rollup rows, as JSON values."""
    batches = con.execute(
        f"SELECT {', '.join(_BATCH_COLUMNS)} FROM batches WHERE install_id = ? ORDER BY created_at, batch_id",
        [install_id],
    ).fetchall()
    columns = ", ".join(m.column for m in _METRICS)
    snapshots = con.execute(
        f"SELECT batch_id, product_name, product_version, taken_at, {columns} FROM snapshots"
        " WHERE install_id = ? ORDER BY taken_at, batch_id",
        [install_id],
    ).fetchall()
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
                "metrics": {m.key: v for m, v in zip(_METRICS, row[4:], strict=True) if v is not None},
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
    con.execute("DELETE FROM batches WHERE install_id = ?", [install_id])
    return ids, len(ids), snapshots


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})


async def get_install(request: web.Request) -> web.Response:
    """``GET /v1/installs/{install_id}``: everything held about the install (after loading what was acknowledged)."""
    install_id = _proven_install_id(request)
    store = request.app[STORE]
    await store.sync()
    # A read in the writer thread: ordered after every load and deletion, and consistent across tables.
    return _json(await store.write(lambda con: install_data(con, install_id)))


async def delete_install(request: web.Request) -> web.Response:
    """``DELETE /v1/installs/{install_id}``: erase the install from every table, rollups included."""
    install_id = _proven_install_id(request)
    store = request.app[STORE]
    await store.sync()
    ids, batches, snapshots = await store.write(lambda con: erase_install(con, install_id))
    store.forget_batch_ids(ids)
    return _json({"install_id": install_id, "deleted": {"batches": batches, "snapshots": snapshots}})
