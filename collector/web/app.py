"""The aiohttp application: routes, the error middleware, the private access log and the storage's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from collector.config import CollectorConfig
from collector.errors import CollectorError, OverloadedError, RateLimitedError
from collector.reports.rollup import PROGRESS_SQL, progress_of
from collector.storage import Gauge, create_storage
from collector.web import backup, routes
from collector.web.ingest import post_batch
from collector.web.jobs import CleanupCtx, periodic
from collector.web.keys import CONFIG, LIMITS, MONITOR, OFFLOAD, STORE, TOKENS
from collector.web.limits import Limits
from collector.web.monitoring import CONTENT_TYPE as MONITORING_CONTENT_TYPE
from collector.web.monitoring import Monitor
from collector.web.offload import Offload
from collector.web.openapi import openapi_document
from collector.web.responses import json_response
from collector.web.server import (
    CONNECTION_POLICY,
    HTTP_CODES,
    CollectorApplication,
    ConnectionPolicy,
    add_common_headers,
    fit_connections,
    trim_freed_memory,
)
from collector.web.tokens import TokenCache
from schema import policy_document as schema_policy_document

__all__ = ["ClientDetailsFilter", "PrivateAccessLogger", "create_app", "error_middleware", "policy_document"]

log = logging.getLogger(__name__)

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_JSON: Final = "application/json"


def _public(body: Any, status: int = 200) -> web.Response:
    return json_response(body, status, private=False)


def _error_response(status: int, body: dict[str, dict[str, str]]) -> web.Response:
    return _public(body, status)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[StreamResponse]]
) -> StreamResponse:
    """Render every CollectorError (and aiohttp's own 4xx) as ``{"error": {code, message, path}}``."""
    try:
        return await handler(request)
    except CollectorError as exc:
        response = _error_response(exc.status, exc.body())
        if isinstance(exc, RateLimitedError):
            request.app[MONITOR].client_event("rate_limited")
        if isinstance(exc, OverloadedError | RateLimitedError):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        elif exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except ConnectionResetError as exc:
        if request.transport is not None and not request.transport.is_closing():
            return _internal_error(request)  # not this client's connection (a backend's): an error of ours
        # The client reset or closed the connection mid-request (an aborted upload): its event, not our
        # error. Nobody reads this answer; aiohttp drops it quietly. aiohttp keeps the exception in the
        # request's stream: without its traceback it holds no frame (and no body data) of ours.
        exc.__traceback__ = None
        request.app[MONITOR].client_event("aborted")
        return _error_response(400, {"error": {"code": "client_gone", "message": "connection lost", "path": ""}})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        response = _error_response(exc.status, {"error": {"code": code, "message": exc.reason, "path": ""}})
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:  # noqa: BLE001  # _internal_error logs it with its traceback
        return _internal_error(request)


def _internal_error(request: web.Request) -> web.Response:
    # A bug, not bad input: logged with the route (never the URL or body), answered without details.
    log.exception("unexpected error in %s %s", request.method, _route_name(request))
    return _error_response(500, {"error": {"code": "internal", "message": "internal error", "path": ""}})


def _route_name(request: BaseRequest) -> str:
    # The route template (e.g. /v1/installs/{install_id}), never the raw path or query string:
    # a URL can carry anything a client types, and the log must hold no free text.
    # _match_info, not match_info: the property asserts, and a request aiohttp could not parse has none.
    match_info = getattr(request, "_match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "<unmatched>"


class PrivateAccessLogger(AbstractAccessLogger):
    """Access log lines with method, route template, status and duration only: no IP, agent, referer or query."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write one line for a finished request."""
        method = request.method if request.method in _METHODS else "OTHER"
        self.logger.info("%s %s %d %.1fms", method, _route_name(request), response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        """Skip the work when INFO is off for the access logger."""
        return self.logger.isEnabledFor(logging.INFO)


class ClientDetailsFilter(logging.Filter):
    """Keeps client details out of aiohttp's server log.

    aiohttp logs a request it cannot handle as "Error handling request from <client IP>" with a
    traceback that can quote the raw request line or headers. Only the error type is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request"):
            exc = record.exc_info[1] if record.exc_info else None
            record.msg = "error handling a request: %s"
            record.args = (type(exc).__name__ if exc is not None else "unknown",)
            record.exc_info = None
            record.exc_text = None
        return True


def _install_log_filters() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientDetailsFilter) for f in server_log.filters):
        server_log.addFilter(ClientDetailsFilter())


def policy_document(config: CollectorConfig | None = None) -> dict[str, Any]:
    """The catalogue in force (``config.catalogue``, default the packaged one) as served by ``GET /v1/policy``."""
    return schema_policy_document((config or CollectorConfig()).catalogue_in_force)


async def _policy(request: web.Request) -> web.Response:
    return _public(policy_document(request.app[CONFIG]))


async def _healthz(request: web.Request) -> web.Response:
    return _public({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    health = store.health()
    if health.ready:
        # Ingest is ready while the report pre-aggregates are being built (reports answer 503 meanwhile).
        progress = progress_of(await store.read(PROGRESS_SQL))
        if progress is not None:
            return _public({"status": "ready", "reports": progress.describe()})
        return _public({"status": "ready"})
    # path names the part that failed: database, spool (embedded), catalog or object_store (lake).
    return _public({"error": {"code": "not_ready", "message": health.message, "path": health.part}}, 503)


async def _metrics(request: web.Request) -> web.Response:
    text = request.app[MONITOR].render()
    return web.Response(body=text.encode(), headers={"Content-Type": MONITORING_CONTENT_TYPE})


async def _openapi(request: web.Request) -> web.Response:
    paths = {**routes.OPENAPI_PATHS, **backup.OPENAPI_PATHS}
    return _public(openapi_document(paths, request.app[CONFIG].catalogue_in_force))


_TRIM_INTERVAL_S: Final = 5.0
"""How often freed body memory is handed back to the OS, when bodies arrived in pieces since the last pass."""


def _memory_trim() -> CleanupCtx:
    last_total = 0

    async def step(app: web.Application) -> None:
        nonlocal last_total
        total = app[LIMITS].bodies.taken_bytes_total
        if total != last_total:
            last_total = total
            trim_freed_memory()

    return periodic("memory-trim", step, lambda _app: _TRIM_INTERVAL_S)


def create_app(
    config: CollectorConfig | None = None, *, clock: Callable[[], datetime] | None = None
) -> web.Application:
    """The collector as an aiohttp application; its storage opens on startup and closes on cleanup.

    ``clock`` (timezone-aware ``now``) is for tests. Analytics routes come from :func:`collector.web.routes.setup`.
    """
    config = config if config is not None else CollectorConfig()
    _install_log_filters()
    # CollectorApplication: requests aiohttp cannot parse get the JSON error body too (see collector.web.server).
    app = CollectorApplication(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware],
        # auto_decompress off: ingest inflates gzip itself, capped, and answers 415 for other encodings.
        handler_args={
            "access_log_class": PrivateAccessLogger,
            "auto_decompress": False,
            "keepalive_timeout": config.keepalive_timeout_s,
        },
    )
    store = create_storage(config, clock=clock if clock is not None else (lambda: datetime.now(UTC)))
    monitor = Monitor()
    monitor.gauges.update(store.gauges())
    tokens = TokenCache()
    monitor.gauges["telemetry_token_reloads_total"] = Gauge(
        "Times the token table was read into memory (made-up tokens cost at most four a second).",
        lambda: tokens.reloads,
        kind="counter",
    )
    app[CONFIG] = config
    app[STORE] = store
    app[MONITOR] = monitor
    app[LIMITS] = limits = Limits.from_config(config)
    monitor.gauges["telemetry_body_buffer_bytes"] = Gauge(
        "Bytes of ingest bodies being received in pieces now (at most max_body_buffer_bytes).",
        lambda: limits.bodies.held_bytes,
    )
    app[TOKENS] = tokens
    app[OFFLOAD] = offload = Offload()
    app[CONNECTION_POLICY] = ConnectionPolicy(
        max_connections=fit_connections(config.max_connections),
        header_timeout_s=config.header_timeout_s,
        count=monitor.client_event,
    )

    async def storage(app: web.Application) -> AsyncIterator[None]:
        await store.start()
        yield
        offload.close()
        await store.stop()

    app.cleanup_ctx.append(storage)
    app.cleanup_ctx.append(_memory_trim())
    app.on_response_prepare.append(add_common_headers)
    app.router.add_post("/v1/batches", post_batch)
    app.router.add_get("/v1/policy", _policy)
    app.router.add_get("/v1/openapi.json", _openapi)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    routes.setup(app)
    app.router.add_post("/v1/admin/backup", backup.post_backup)
    return app
