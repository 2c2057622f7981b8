"""Reports, dashboard and data-subject routes (placeholder: filled in by the analytics work, issue 5)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["OPENAPI_PATHS", "setup"]

OPENAPI_PATHS: dict[str, Any] = {}
"""OpenAPI path items for the routes added by :func:`setup`, merged into /v1/openapi.json."""


def setup(app: web.Application) -> None:
    """Add the report, dashboard and /v1/installs routes (and their background jobs) to ``app``."""
