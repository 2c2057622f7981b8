"""The read side of the API, and its background jobs (all added by :func:`setup`).

Routes (every one described in :data:`OPENAPI_PATHS`):

- ``GET /v1/reports`` and ``GET /v1/reports/{name}``: analyst or admin bearer token.
- ``GET /dashboard`` and ``GET /dashboard/{file}``: static page and assets; the page asks for a token.
- ``GET /``: a redirect to ``/dashboard``, so the collector's bare address leads somewhere useful.
- ``GET/POST /v1/tokens``, ``DELETE /v1/tokens/{token_id}``: admin token (see :mod:`collector.web.tokens`).
- ``GET/DELETE /v1/installs/{install_id}``: the install's own secret (see :mod:`collector.web.installs`).
"""

from __future__ import annotations

import logging
from typing import Final

import orjson
from aiohttp import web

from collector.errors import BadRequestError, NotFoundError, UnavailableError
from collector.reports import INTERVALS, REPORTS, ReportParams, ReportResult, first_day, list_products, run_report
from collector.reports.rollup import PROGRESS_SQL, progress_of
from collector.web.dashboard import dashboard_asset, dashboard_page, to_dashboard
from collector.web.installs import delete_install, get_install
from collector.web.jobs import periodic
from collector.web.keys import CONFIG, LIMITS, OFFLOAD, STORE
from collector.web.offload import Fetch
from collector.web.openapi_paths import OPENAPI_PATHS
from collector.web.responses import json_response
from collector.web.retention import retention_ctx
from collector.web.tokens import authorize, token_routes

__all__ = ["OPENAPI_PATHS", "setup"]

log = logging.getLogger(__name__)

_BUILD_RETRY_S: Final = 10
"""Retry-After of a report asked while the pre-aggregates are being built (a step of the build takes seconds)."""
_REPORT_QUERY: Final = frozenset({"from", "to", "interval", "product", "format"})


async def _fresh(request: web.Request) -> None:
    # Fold in whatever was stored since the last refresh (a count comparison when nothing was). While
    # the pre-aggregates are being built in the background (the first start after an upgrade), reports
    # would be wrong: they wait, with the progress in the answer.
    store = request.app[STORE]
    store.check_readable()
    progress = progress_of(await store.read(PROGRESS_SQL))
    if progress is not None:
        raise UnavailableError(
            f"{progress.describe()}; reports answer once it is done", retry_after_s=_BUILD_RETRY_S, part="rollup"
        )
    await store.refresh_rollup()


async def _list_reports(request: web.Request) -> web.Response:
    await authorize(request)
    await _fresh(request)
    store, config = request.app[STORE], request.app[CONFIG]
    return json_response(
        {
            "reports": [r.describe() for r in REPORTS.values()],
            "intervals": list(INTERVALS),
            "products": await list_products(store.read, min_group_size=config.min_group_size),
            "min_group_size": config.min_group_size,
            "lost_after_days": config.lost_after_days,
            "today": store.clock().date().isoformat(),
            "first_day": day.isoformat() if (day := await first_day(store.read)) else None,
        }
    )


async def _get_report(request: web.Request) -> web.Response:
    caller = await authorize(request)
    # A long daily report costs tens of milliseconds of CPU: one token gets a few at once, and so many a
    # minute, so that a script looping over reports cannot take the CPU that ingest needs.
    limits = request.app[LIMITS]
    limits.report_rate.spend(caller.token_id, "reports for this token")
    async with limits.reports.hold(caller.token_id):
        return await _report(request)


async def _report(request: web.Request) -> web.Response:
    query = request.query
    unknown = sorted(set(query) - _REPORT_QUERY)
    if unknown:
        raise BadRequestError(f"unknown parameter {unknown[0][:40]!r}", path=unknown[0][:40])
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequestError("format must be json or csv", path="format")
    name = request.match_info["name"]
    if name not in REPORTS:
        raise NotFoundError(f"no report named {name[:60]!r}; GET /v1/reports lists them", path="name")
    store, config = request.app[STORE], request.app[CONFIG]
    today = store.clock().date()
    params = ReportParams.parse(
        date_from=query.get("from"),
        date_to=query.get("to"),
        interval=query.get("interval"),
        product=query.get("product"),
        today=today,
    )
    await _fresh(request)

    async def answer(fetch: Fetch) -> tuple[ReportResult, bytes]:
        # In a report thread (collector.web.offload): the rows' suppression and encoding are pure Python.
        result = await run_report(
            name,
            params,
            fetch=fetch,
            min_group_size=config.min_group_size,
            lost_after_days=config.lost_after_days,
            today=today,
        )
        return result, orjson.dumps(result.to_json()) if fmt == "json" else result.to_csv().encode()

    result, body = await request.app[OFFLOAD].run(answer, store.read)
    if fmt == "json":
        return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Telemetry-Min-Group-Size": str(result.min_group_size),
            "Telemetry-Suppressed-Groups": str(result.suppressed_groups),
            "Telemetry-Suppressed-Installs": str(result.suppressed_installs),
            "Telemetry-Merged-Groups": str(result.merged_groups),
            "Telemetry-Withheld-Groups": str(result.withheld_groups),
            "Telemetry-Suppression-Note": result.note(),  # ASCII: built from our own words and numbers
        },
    )


async def _refresh(app: web.Application) -> None:
    store = app[STORE]
    await store.refresh_rollup(wait=False)  # on a lake, one collector refreshing is enough
    # A build of the pre-aggregates goes on step after step (each one a transaction of its own, so loads
    # and other writes go in between), logging its progress, until it is done.
    while await store.build_rollup(wait=False) is not None:
        pass


_refresh_ctx = periodic("report-refresh", _refresh, lambda app: app[CONFIG].rollup_interval_in_force_s)


def setup(app: web.Application) -> None:
    """Add the report, dashboard, token and /v1/installs routes, and the rollup and retention jobs, to ``app``."""
    app.cleanup_ctx.append(_refresh_ctx)
    app.cleanup_ctx.append(retention_ctx)
    router = app.router
    router.add_get("/v1/reports", _list_reports)
    router.add_get("/v1/reports/{name}", _get_report)
    token_routes(router)
    router.add_get("/v1/installs/{install_id}", get_install)
    router.add_delete("/v1/installs/{install_id}", delete_install)
    router.add_get("/", to_dashboard)
    router.add_get("/dashboard", dashboard_page)
    router.add_get("/dashboard/{file}", dashboard_asset)
