"""The same fleet through the embedded default and through a lake: every report answers the same.

Then moving in: the embedded database copied into an empty lake with ``telemetry-collector copy-to-lake``
answers every report as before, and running the copy again copies nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig, create_app
from collector.reports import INTERVALS, REPORTS
from tests.analytics.conftest import load, new_token
from tests.analytics.fleet import NOW, make_fleet
from tests.conftest import LakeServers
from tests.lake.cluster import lake_env, run_cli

pytestmark = [pytest.mark.lake, pytest.mark.slow]

Client = TestClient[Any, Any]
RANGE = {"from": "2026-01-01", "to": "2026-06-30"}


async def all_reports(client: Client) -> dict[str, Any]:
    """Every report, interval and product filter's JSON answer, by ``"name interval product"``."""
    answers: dict[str, Any] = {}
    for name in REPORTS:
        # A token per report: one token asking all of them at once would meet max_reports_per_min's burst.
        headers = {"Authorization": f"Bearer {await new_token(client, 'analyst')}"}
        for interval in INTERVALS:
            for product in ("", "deployserver"):  # the fleet's product (one without data is a 404)
                query = {**RANGE, "interval": interval, **({"product": product} if product else {})}
                resp = await client.get(f"/v1/reports/{name}", params=query, headers=headers)
                assert resp.status == 200, await resp.text()
                answers[f"{name} {interval} {product or '*'}"] = await resp.json()
    return answers


async def embedded_and_lake(
    aiohttp_client: Callable[..., Any], lake_servers: LakeServers, tmp_path: Path
) -> tuple[Client, Client]:
    """An embedded collector and one on a new lake (no maintenance pass unless called), both at ``NOW``."""
    embedded: Client = await aiohttp_client(
        create_app(CollectorConfig(db_path=tmp_path / "e.duckdb", load_interval_s=0.05), clock=lambda: NOW)
    )
    lake: Client = await aiohttp_client(create_app(lake_servers.config(maintenance_interval_s=3600), clock=lambda: NOW))
    return embedded, lake


async def assert_same_reports(embedded: Client, lake: Client) -> dict[str, Any]:
    """Every answer of :func:`all_reports` from ``lake`` equals ``embedded``'s; returns the embedded ones."""
    expected, got = await all_reports(embedded), await all_reports(lake)
    assert got.keys() == expected.keys()
    for key, answer in expected.items():
        assert got[key] == answer, key
    return expected


async def test_parity_embedded_and_lake_answer_every_report_the_same(
    aiohttp_client: Callable[..., Any], lake_servers: LakeServers, tmp_path: Path
) -> None:
    """Every report, interval and product filter: the lake's JSON equals the embedded collector's."""
    fleet = make_fleet()
    embedded, lake = await embedded_and_lake(aiohttp_client, lake_servers, tmp_path)
    assert await load(embedded, fleet) == await load(lake, fleet)
    expected = await assert_same_reports(embedded, lake)
    assert any(row.get("installs") for answer in expected.values() for row in answer["rows"])


def _report_cli(env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    answers = {}
    for name in REPORTS:
        for interval in ("month",):
            done = run_cli(env, "report", name, "--from", RANGE["from"], "--to", RANGE["to"], "--interval", interval,
                           "--format", "json", *args)  # fmt: skip
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            answers[f"{name} {interval}"] = answer
    return answers


async def test_parity_copy_to_lake_moves_in_and_reports_answer_the_same(
    aiohttp_client: Callable[..., Any], lake_servers: LakeServers, tmp_path: Path
) -> None:
    """copy-to-lake copies batches, snapshots and tokens once; `report` then answers from the lake as before."""
    db = tmp_path / "e.duckdb"
    embedded: Client = await aiohttp_client(create_app(CollectorConfig(db_path=db, load_interval_s=0.05),
                                                       clock=lambda: NOW))  # fmt: skip
    sent = await load(embedded, make_fleet())
    await new_token(embedded, "analyst")
    await embedded.close()
    env = lake_env(lake_servers.config())
    before = _report_cli(env | {"TELEMETRY_COLLECTOR_STORE": "duckdb"}, "--db", str(db))

    moved = run_cli(env, "copy-to-lake", "--db", str(db))
    assert moved.returncode == 0, moved.stderr
    assert f"batches copied{sent:>28}" in moved.stdout
    assert "tokens copied                            1" in moved.stdout
    after = _report_cli(env)
    assert after == before

    again = run_cli(env, "copy-to-lake", "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert "batches copied                           0" in again.stdout
    assert f"batches already in the lake{sent:>15}" in again.stdout
    assert _report_cli(env) == before
    listed = run_cli(env, "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert "analyst" in listed.stdout
