"""The report rollup over a lake whose tables are Parquet files on S3, not rows inlined in the catalog.

Small commits stay inlined in PostgreSQL until maintenance flushes them into Parquet files; only then do
the rollup's statements scan files on the object store, where DuckDB 1.5's Parquet prefetch check can
refuse a healthy file (duckdb/duckdb#24186: a MERGE whose source holds a materialized CTE). Here the
fleet arrives in three parts with a flush after each, so every refresh works on files, and the reports
must answer as the embedded collector does with the whole fleet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.storage.lake.maintenance import maintain
from collector.web.keys import STORE
from tests.analytics.conftest import load, new_token, post
from tests.analytics.fleet import NOW, batches, make_fleet
from tests.conftest import LakeServers
from tests.lake.test_parity import assert_same_reports, embedded_and_lake

pytestmark = [pytest.mark.lake, pytest.mark.slow]

Client = TestClient[Any, Any]


async def _flush(client: Client) -> None:
    """One maintenance pass now: every inlined row goes into Parquet files on S3."""
    store = client.app[STORE]
    done = await asyncio.to_thread(
        store.run_on_writer,
        lambda session: maintain(session, now=NOW, interval_s=0.1, erasure_max_hours=24.0, dedup_window_days=35),
    )
    assert done.ran
    for table in ("report_days", "report_installs", "report_periods"):
        files = await store.read(f"SELECT count(*) FROM ducklake_list_files('lake', '{table}')")
        assert files[0][0] > 0, f"{table} has no Parquet file"


async def test_reports_over_parquet_files_answer_as_embedded(
    aiohttp_client: Callable[..., Any], lake_servers: LakeServers, tmp_path: Path
) -> None:
    """Early batches, then later ones (the rollup grows), then withheld ones (it retracts), a flush between."""
    fleet = make_fleet()
    embedded, lake = await embedded_and_lake(aiohttp_client, lake_servers, tmp_path)
    await load(embedded, fleet)
    early: list[bytes] = []
    later: list[bytes] = []
    withheld: list[bytes] = []
    for install in fleet:
        bodies = list(batches(install))  # in time order
        half = len(bodies) // 2
        early += bodies[:half]
        for n, body in enumerate(bodies[half:]):
            (withheld if n % 4 == 1 else later).append(body)
    assert early
    assert later
    assert withheld
    for part in (early, later, withheld):
        await post(lake, part)
        # A report refreshes the rollup: the new part is folded into rollup tables held as files.
        resp = await lake.get("/v1/reports/active-installs", params={"from": "2026-01-01", "to": "2026-06-30"},
                              headers={"Authorization": f"Bearer {await new_token(lake, 'analyst')}"})  # fmt: skip
        assert resp.status == 200, await resp.text()
        await _flush(lake)
    await assert_same_reports(embedded, lake)
