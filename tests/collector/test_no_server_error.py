"""No input gets a 5xx: a property test over every route's path and query parameters, on the real app.

The requests carry real credentials (an analyst token for reports, an admin token for tokens, the secret
of a stored install for /v1/installs) so that each handler is reached, not just the authorization check.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from collector.reports import INTERVALS, REPORTS
from collector.storage.tokens import create_token
from collector.web.keys import STORE
from schema import install_id_from_secret, new_secret
from tests.collector.conftest import BATCHES, batch_obj, canonical, json_headers

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# Characters from anywhere in Unicode (no lone surrogates: a URL is UTF-8), short, as a client might type.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=24)
_DAYS = st.dates().map(lambda d: d.isoformat())
_QUERY_KEYS = st.sampled_from(["from", "to", "interval", "product", "format"]) | _TEXT
_QUERY_VALUES = _DAYS | st.sampled_from([*INTERVALS, "json", "csv", "deployserver", ""]) | _TEXT
_QUERY = st.lists(st.tuples(_QUERY_KEYS, _QUERY_VALUES), max_size=5)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path template) the app routes, HEAD aside (aiohttp adds it beside each GET)."""
    out = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in ("HEAD", "*") and route.resource is not None
    }
    return sorted(out)


async def _credentials(collector: TestClient[Any, Any]) -> tuple[dict[str, str], str]:
    """Authorization headers by path prefix, and the install id whose secret they carry (one batch stored)."""
    store = collector.app[STORE]
    now = store.clock()
    _, analyst = await store.write(lambda con: create_token(con, "analyst", now))
    _, admin = await store.write(lambda con: create_token(con, "admin", now))
    secret = new_secret()
    install_id = install_id_from_secret(secret)
    resp = await collector.post(BATCHES, data=canonical(batch_obj(install_id=install_id)), headers=json_headers())
    assert resp.status == 200, await resp.text()
    auth = {"/v1/reports": analyst, "/v1/tokens": admin, "/v1/installs": secret}
    return auth, install_id


# Routes with parameters or credentials get a test each; the rest share one ("OTHER").
_NAMED = [
    ("GET", "/v1/reports/{name}"),
    ("GET", "/v1/reports"),
    ("GET", "/v1/installs/{install_id}"),
    ("DELETE", "/v1/installs/{install_id}"),
    ("DELETE", "/v1/tokens/{token_id}"),
    ("GET", "/v1/tokens"),
    ("GET", "/dashboard/{file}"),
]


@pytest.mark.parametrize(("method", "template"), [*_NAMED, ("OTHER", "every other route")])
async def test_no_path_or_query_gets_a_server_error(
    method: str, template: str, collector: TestClient[Any, Any]
) -> None:
    """Arbitrary path parameters and query strings get 2xx or 4xx on every route, never 5xx."""
    auth, install_id = await _credentials(collector)
    routes = _routes(collector.app)
    assert set(_NAMED) <= set(routes), "a route listed here no longer exists"
    targets = [r for r in routes if r not in _NAMED] if method == "OTHER" else [(method, template)]
    loop = asyncio.get_running_loop()
    # Path parameters: arbitrary text, or a value that lets the handler go further than its first check.
    params = st.fixed_dictionaries({
        "name": st.sampled_from(sorted(REPORTS)) | _TEXT,
        "install_id": st.sampled_from([install_id, install_id.upper(), "{" + install_id + "}"]) | _TEXT,
        "token_id": st.sampled_from(["00000000", "ffffffff"]) | _TEXT,
        "file": st.sampled_from(["dashboard.js", "dashboard.css", "..%2Fapp.py"]) | _TEXT,
    })  # fmt: skip

    async def status(verb: str, url: URL, headers: dict[str, str]) -> tuple[int, str]:
        async with collector.session.request(verb, url, headers=headers) as resp:
            return resp.status, await resp.text()

    @settings(max_examples=40, deadline=None, database=None)
    @given(route=st.sampled_from(targets), values=params, query=_QUERY)
    @example(  # the two 500s of the issue: a non-ASCII install id, a range ending past year 9999
        route=targets[0],
        values={"name": "hardware", "install_id": "\u00e4", "token_id": "\u00e4", "file": "\u00e4"},
        query=[("from", "9999-12-25"), ("to", "9999-12-31"), ("interval", "week")],
    )
    def check(route: tuple[str, str], values: dict[str, str], query: list[tuple[str, str]]) -> None:
        verb, path = route
        path = _PLACEHOLDER.sub(lambda m: urllib.parse.quote(values[m[1]], safe=""), path)
        url = collector.make_url(path)
        if query:
            url = URL(str(url) + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote), encoded=True)
        prefix = next((p for p in auth if path.startswith(p)), None)
        headers = {"Authorization": f"Bearer {auth[prefix]}"} if prefix else {}
        code, body = asyncio.run_coroutine_threadsafe(status(verb, url, headers), loop).result(timeout=30)
        assert code < 500, f"{verb} {url} -> {code} {body[:200]}"

    # Hypothesis drives the requests from a worker thread; the app keeps running on this loop meanwhile.
    await loop.run_in_executor(None, check)


async def test_the_two_server_errors_of_the_issue_are_client_errors(collector: TestClient[Any, Any]) -> None:
    """A non-ASCII install id is a 401 like any wrong id; a range past the last reportable day is a 400 on ``to``."""
    auth, _ = await _credentials(collector)
    for verb in ("GET", "DELETE"):
        url = URL(str(collector.make_url("/v1/installs/%C3%A4")), encoded=True)
        resp = await collector.session.request(verb, url, headers={"Authorization": f"Bearer {auth['/v1/installs']}"})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await collector.get(
        "/v1/reports/hardware?from=9999-12-25&to=9999-12-31&interval=week",
        headers={"Authorization": f"Bearer {auth['/v1/reports']}"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["path"] == "to"
