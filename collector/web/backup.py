"""Backups of the embedded database without downtime: ``POST /v1/admin/backup`` and ``telemetry-collector backup``.

The serving collector holds its DuckDB file under an exclusive lock, so no other process can read it
while it runs; the backup is therefore made by that process (a consistent snapshot on a read cursor,
see :mod:`collector.storage.embedded.backup`) and streamed over HTTP to the command, which writes it
to a new file where it runs. Why this shape rather than a backup directory on the server: the file
lands where the operator asked, on whichever machine runs the command; no path ever comes from a
request; the collector keeps no backups of its own to fill its disk or to escape erasure; and one
admin-token request is all a cron job needs. ``--db`` copies the file of a stopped collector the same way.

On a lake (``store = ducklake``) backups are PostgreSQL's and the object store's own (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from collector.errors import ConflictError
from collector.storage.embedded.store import EmbeddedStore
from collector.web.keys import STORE
from collector.web.tokens import authorize

__all__ = ["OPENAPI_PATHS", "post_backup"]

_CHUNK: Final = 1024 * 1024


async def post_backup(request: web.Request) -> web.StreamResponse:
    """``POST /v1/admin/backup``: a consistent copy of the database (every batch acknowledged before the request)."""
    await authorize(request, admin=True)
    store = request.app[STORE]
    if not isinstance(store, EmbeddedStore):
        raise ConflictError(
            "this collector stores into a lake: back up PostgreSQL and the object store instead (docs/scale-out.md)",
            code="backup_unsupported",
        )
    store.check_readable()
    async with store.backup() as (backup, size):
        response = web.StreamResponse(
            headers={
                "Cache-Control": "no-store",
                "Content-Type": "application/octet-stream",
                "Content-Disposition": 'attachment; filename="telemetry.duckdb"',
            }
        )
        response.content_length = size
        await response.prepare(request)
        while chunk := await asyncio.to_thread(backup.read, _CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


OPENAPI_PATHS: Final = {
    "/v1/admin/backup": {
        "post": {
            "operationId": "postBackup",
            "security": [{"adminToken": []}],
            "tags": ["operations"],
            "summary": "A consistent copy of the embedded database, made while the collector serves.",
            "description": (
                "The answer is a DuckDB database file holding every batch acknowledged before the request"
                " (`telemetry-collector backup PATH --url URL` writes it to PATH). One backup at a time."
                " Needs `Authorization: Bearer <token>` with the admin role (401 without, 403 for analyst)."
            ),
            "responses": {
                "200": {
                    "description": "The database file (Content-Length is its size).",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                **{code: {"$ref": f"#/components/responses/{code}"} for code in ("401", "403", "405", "503")},
                "409": {
                    "description": "A backup is already being made (`backup_running`), or the collector stores into"
                    " a lake (`backup_unsupported`).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
    }
}
"""The OpenAPI path item of the backup route, merged into ``/v1/openapi.json``."""
