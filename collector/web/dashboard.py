"""The dashboard: a static page plus its script and style, served from ``collector/web/static`` (no CDN).

The page holds no data: its script asks for a token (or reads ``#token=...`` from the URL fragment,
which browsers never send to a server) and calls ``/v1/reports`` like any other client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from collector.errors import NotFoundError

__all__ = ["STATIC_DIR", "dashboard_asset", "dashboard_page", "to_dashboard"]

STATIC_DIR: Final = Path(__file__).parent / "static"
_ASSETS: Final = {
    "charts.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_HEADERS: Final = {
    # Everything comes from this origin; no inline script, no framing, no referrer (the token is in the
    # fragment, which is never sent, but the page's own URL should not leak either).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def to_dashboard(request: web.Request) -> web.Response:
    """``GET /``: 302 to ``/dashboard`` (temporary: the bare address may one day lead to a landing page)."""
    raise web.HTTPFound("/dashboard", headers={"Cache-Control": "no-cache"})


async def dashboard_page(request: web.Request) -> web.Response:
    """``GET /dashboard``: the page."""
    body = (STATIC_DIR / "dashboard.html").read_bytes()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


async def dashboard_asset(request: web.Request) -> web.Response:
    """``GET /dashboard/{file}``: one of the page's fixed assets (nothing else is served from disk)."""
    name = request.match_info["file"]
    kind = _ASSETS.get(name)
    if kind is None:
        raise NotFoundError("no such dashboard file", path="file")
    body = (STATIC_DIR / name).read_bytes()
    return web.Response(body=body, content_type=kind, charset="utf-8", headers=_HEADERS)
