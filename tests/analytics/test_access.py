"""Access control: report routes need an analyst or admin token; token routes need admin; ingest needs none."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from collector import CollectorConfig, create_app
from collector.web.keys import CONFIG, LIMITS, STORE
from tests.analytics.conftest import Client, new_token
from tests.analytics.fleet import batches, make_fleet

REPORT_ROUTES = ["/v1/reports", "/v1/reports/active-installs", "/v1/reports/versions?format=csv"]


@pytest.mark.parametrize("path", REPORT_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer tct_00000000_" + "A" * 43],
)
async def test_reports_without_a_valid_token_are_401(client: Client, path: str, authorization: str | None) -> None:
    """No token, a malformed one, another scheme or an unknown token: 401 with a JSON error and no data."""
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await client.get(path, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_ingest_and_dashboard_page_need_no_token(client: Client) -> None:
    """POST /v1/batches and the static dashboard page are served without any token."""
    body = next(iter(batches(make_fleet()[0])))
    resp = await client.post("/v1/batches", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    assert (await client.get("/dashboard")).status == 200


async def test_revoked_token_is_401(client: Client) -> None:
    """A token works until it is revoked, then gets 401."""
    token = await new_token(client, "analyst")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/reports", headers=headers)).status == 200
    admin = {"Authorization": f"Bearer {await new_token(client, 'admin')}"}
    token_id = token.split("_")[1]
    resp = await client.delete(f"/v1/tokens/{token_id}", headers=admin)
    assert resp.status == 200
    assert (await client.get("/v1/reports", headers=headers)).status == 401
    assert (await client.delete(f"/v1/tokens/{token_id}", headers=admin)).status == 404


async def test_token_routes_need_admin(client: Client) -> None:
    """Analysts get 403 on token management; admins create, list and revoke, and tokens are stored hashed."""
    analyst = {"Authorization": f"Bearer {await new_token(client, 'analyst')}"}
    admin = {"Authorization": f"Bearer {await new_token(client, 'admin')}"}
    assert (await client.get("/v1/tokens", headers=analyst)).status == 403
    assert (await client.post("/v1/tokens", json={"role": "admin"}, headers=analyst)).status == 403
    assert (await client.get("/v1/tokens")).status == 401

    resp = await client.post("/v1/tokens", json={"role": "analyst"}, headers=admin)
    assert resp.status == 201
    created = await resp.json()
    assert (await client.get("/v1/reports", headers={"Authorization": f"Bearer {created['token']}"})).status == 200
    assert (await client.post("/v1/tokens", json={"role": "root"}, headers=admin)).status == 400
    assert (await client.post("/v1/tokens", data=b"{", headers=admin)).status == 400

    listing = (await (await client.get("/v1/tokens", headers=admin)).json())["tokens"]
    assert created["token_id"] in {t["token_id"] for t in listing}
    assert all(set(t) == {"token_id", "role", "label", "created_at", "last_used_on", "revoked_at"} for t in listing)
    stored = await client.app[STORE].read("SELECT token_sha256 FROM tokens")
    assert all(created["token"] not in row[0] for row in stored)


async def test_a_token_with_its_reports_in_progress_queues_then_gets_429(client: Client) -> None:
    """Past max_reports_per_token in progress, requests wait (4 per slot); past those, 429 + Retry-After."""
    token = await new_token(client, "analyst")
    other = await new_token(client, "analyst")
    token_id, headers = token.split("_")[1], {"Authorization": f"Bearer {token}"}
    reports = client.app[LIMITS].reports
    per_token = client.app[CONFIG].max_reports_per_token
    async with contextlib.AsyncExitStack() as busy:
        for _ in range(per_token):  # as if that many reports of this token were still running
            await busy.enter_async_context(reports.hold(token_id))
        queued = [
            asyncio.create_task(client.get("/v1/reports/versions", headers=headers)) for _ in range(4 * per_token)
        ]
        while reports.waiting(token_id) < 4 * per_token:
            await asyncio.sleep(0.01)
        resp = await client.get("/v1/reports/versions", headers=headers)
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "rate_limited"
        assert (await client.get("/v1/reports/versions", headers={"Authorization": f"Bearer {other}"})).status == 200
    assert [r.status for r in await asyncio.gather(*queued)] == [200] * (4 * per_token)  # all answered in turn


async def test_a_token_revoked_through_the_api_is_refused_at_once(client: Client) -> None:
    """The in-memory token copy forgets a token the moment this collector revokes it."""
    token = await new_token(client, "analyst")
    admin = {"Authorization": f"Bearer {await new_token(client, 'admin')}"}
    assert (await client.get("/v1/reports", headers={"Authorization": f"Bearer {token}"})).status == 200
    assert (await client.delete(f"/v1/tokens/{token.split('_')[1]}", headers=admin)).status == 200
    assert (await client.get("/v1/reports", headers={"Authorization": f"Bearer {token}"})).status == 401


async def test_a_daily_report_over_more_than_1000_days_is_400(client: Client) -> None:
    """A daily range past MAX_PERIODS days is refused naming interval; the same range weekly is answered."""
    headers = {"Authorization": f"Bearer {await new_token(client, 'analyst')}"}
    query = "from=2016-01-01&to=2026-01-01"
    resp = await client.get(f"/v1/reports/versions?{query}&interval=day", headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["path"] == "interval"
    assert (await client.get(f"/v1/reports/versions?{query}&interval=week", headers=headers)).status == 200


async def test_a_token_past_its_reports_per_minute_gets_429(aiohttp_client: Any, tmp_path: Path) -> None:
    """max_reports_per_min reports at once, then 429 + Retry-After for that token only."""
    client = await aiohttp_client(create_app(CollectorConfig(db_path=tmp_path / "t.duckdb", max_reports_per_min=2)))
    token, other = await new_token(client, "analyst"), await new_token(client, "analyst")
    statuses = [
        (await client.get("/v1/reports/versions", headers={"Authorization": f"Bearer {token}"})).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert (await client.get("/v1/reports/versions", headers={"Authorization": f"Bearer {other}"})).status == 200


async def test_tokens_carry_a_label_and_the_day_they_were_last_used(client: Client) -> None:
    """POST /v1/tokens takes an optional label; the list shows it, and the UTC day each token was last used."""
    admin = {"Authorization": f"Bearer {await new_token(client, 'admin')}"}
    resp = await client.post("/v1/tokens", json={"role": "analyst", "label": "pm dashboard"}, headers=admin)
    assert resp.status == 201
    created = await resp.json()
    assert created["label"] == "pm dashboard"
    listed = {t["token_id"]: t for t in (await (await client.get("/v1/tokens", headers=admin)).json())["tokens"]}
    assert listed[created["token_id"]]["label"] == "pm dashboard"
    assert listed[created["token_id"]]["last_used_on"] is None
    analyst = {"Authorization": f"Bearer {created['token']}"}
    assert (await client.get("/v1/reports", headers=analyst)).status == 200
    for _ in range(100):  # the day is written in the background, once a day per token
        tokens = (await (await client.get("/v1/tokens", headers=admin)).json())["tokens"]
        used = {t["token_id"]: t["last_used_on"] for t in tokens}
        if used[created["token_id"]] is not None:
            break
        await asyncio.sleep(0.05)
    assert used[created["token_id"]] == client.app[STORE].clock().date().isoformat()


@pytest.mark.parametrize("label", ["", " leading space", "x" * 41, "semi;colon", "new\nline", 7])
async def test_a_token_label_outside_its_pattern_is_400(client: Client, label: object) -> None:
    """A label is 1-40 of letters, digits, space and . _ -, starting with a letter or digit: else 400 naming it."""
    admin = {"Authorization": f"Bearer {await new_token(client, 'admin')}"}
    resp = await client.post("/v1/tokens", json={"role": "analyst", "label": label}, headers=admin)
    assert resp.status == 400
    assert (await resp.json())["error"]["path"] == "label"
