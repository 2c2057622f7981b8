"""The first start after the upgrade that adds the report pre-aggregates: built in the background while
ingest goes on; reports answer 503 with the progress meanwhile, /readyz says so, then all answer again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collector.web.keys import STORE
from tests.analytics.conftest import Client, load
from tests.analytics.fleet import Install


async def test_reports_wait_for_the_background_build_with_its_progress(
    client: Client, fleet: list[Install], analyst: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a build is pending, a report is 503 (Retry-After, the progress); once built, the same answer as before."""
    await load(client, fleet[:20])
    store = client.app[STORE]
    path = "/v1/reports/versions?from=2026-05-01&to=2026-06-30"
    before = await client.get(path, headers=analyst)
    assert before.status == 200
    expected = await before.json()

    # Hold the background job's next build step until the test has seen the pending state.
    gate, real = asyncio.Event(), store.build_rollup

    async def gated(**kwargs: Any) -> Any:
        await gate.wait()
        return await real(**kwargs)

    monkeypatch.setattr(store, "build_rollup", gated)

    def as_before_the_upgrade(con: Any) -> None:  # report_days held, the pre-aggregates not yet built
        for table in ("report_periods", "report_installs", "report_groups"):
            con.execute(f"DELETE FROM {table}")
        con.execute("INSERT INTO report_builds SELECT 'periods', NULL, 0, count(DISTINCT install_id) FROM report_days")

    await store.write(as_before_the_upgrade)
    waiting = await client.get(path, headers=analyst)
    assert waiting.status == 503
    assert waiting.headers["Retry-After"] == "10"
    error = (await waiting.json())["error"]
    assert (error["code"], error["path"]) == ("unavailable", "rollup")
    assert error["message"].startswith("building the report pre-aggregates: 0 of 20 installs (0%)")
    ready = await client.get("/readyz")
    assert ready.status == 200  # ingest is ready all along
    assert (await ready.json())["reports"].startswith("building the report pre-aggregates")
    assert (await load(client, fleet[:1])) > 0  # ingest goes on (these are duplicates: answered 200 again)

    gate.set()
    for _ in range(150):  # the schedule's next pass (every 5 s) builds it
        if await (await client.get("/readyz")).json() == {"status": "ready"}:
            break
        await asyncio.sleep(0.1)
    assert await (await client.get("/readyz")).json() == {"status": "ready"}
    after = await client.get(path, headers=analyst)
    assert after.status == 200
    assert await after.json() == expected
