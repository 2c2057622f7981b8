"""The one way a handler answers JSON: orjson bytes, ``application/json``, and whether it may be cached."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["json_response"]


def json_response(body: Any, status: int = 200, *, private: bool = True) -> web.Response:
    """``body`` as JSON. ``private`` answers (reports, tokens, an install's data) say ``Cache-Control: no-store``
    so no proxy or browser keeps a copy; public ones (health, the policy, errors) leave caching to HTTP's defaults.
    """
    headers = {"Cache-Control": "no-store"} if private else None
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)
