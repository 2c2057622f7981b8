"""POST /v1/batches end to end: receipts, durability, dedup and conflicts, against a real server and DuckDB file."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import duckdb
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from collector import CollectorConfig
from collector.web.keys import STORE
from tests.collector.conftest import BATCHES, batch_obj, canonical, count_rows, gz, json_headers


async def test_ingest_acknowledged_batch_is_in_the_file_after_stop(
    collector: TestClient[Any, Any], config: CollectorConfig
) -> None:
    """A 200 receipt means the batch and its snapshots are in the DuckDB file once the server has stopped."""
    obj = batch_obj()
    body = canonical(obj)
    resp = await collector.post(BATCHES, data=gz(body), headers=json_headers(gzipped=True))
    assert resp.status == 200
    receipt = await resp.json()
    assert receipt == {
        "batch_id": obj["batch_id"],
        "sha256": hashlib.sha256(body).hexdigest(),
        "snapshots": 24,
        "duplicate": False,
    }
    await collector.close()
    with duckdb.connect(str(config.db_path), read_only=True) as con:
        row = con.execute(
            "SELECT CAST(batch_id AS VARCHAR), sha256, body_bytes, snapshot_count, created_at, received_at FROM batches"
        ).fetchall()
        assert len(row) == 1
        assert row[0][:4] == (obj["batch_id"], receipt["sha256"], len(body), 24)
        assert row[0][5].minute == 0
        assert row[0][5].second == 0
        snaps = con.execute(
            "SELECT taken_at, os_family, os_version, host_cpu_usage_pct, usage_deployments FROM snapshots"
            " ORDER BY taken_at"
        ).fetchall()
    assert len(snaps) == 24
    first = obj["snapshots"][0]
    assert snaps[0][0].strftime("%Y-%m-%dT%H:00:00Z") == first["taken_at"]
    assert snaps[0][1] == first["metrics"].get("os.family")
    assert snaps[0][4] == first["metrics"].get("usage.deployments")
    assert not list(config.spool_path.glob("*.ndjson")), "the spool is empty after a clean stop"


async def test_ingest_plain_and_gzip_of_the_same_bytes_are_one_batch(collector: TestClient[Any, Any]) -> None:
    """The receipt's sha256 is over the decompressed bytes, so a gzip and a plain copy are duplicates."""
    body = canonical(batch_obj())
    first = await collector.post(BATCHES, data=gz(body), headers=json_headers(gzipped=True))
    second = await collector.post(BATCHES, data=body, headers=json_headers())
    assert (first.status, second.status) == (200, 200)
    assert (await first.json())["duplicate"] is False
    again = await second.json()
    assert again["duplicate"] is True
    assert again["sha256"] == hashlib.sha256(body).hexdigest()


async def test_ingest_concurrent_duplicates_store_once(
    collector: TestClient[Any, Any], config: CollectorConfig
) -> None:
    """Twenty concurrent posts of one batch give one duplicate=false, nineteen duplicate=true, one stored row."""
    body = gz(canonical(batch_obj()))
    responses = await asyncio.gather(
        *(collector.post(BATCHES, data=body, headers=json_headers(gzipped=True)) for _ in range(20))
    )
    assert [r.status for r in responses] == [200] * 20
    flags = sorted([(await r.json())["duplicate"] for r in responses])
    assert flags == [False] + [True] * 19
    await collector.close()
    assert count_rows(config.db_path) == 1
    assert count_rows(config.db_path, "snapshots") == 24


async def test_ingest_same_id_different_bytes_is_a_conflict(
    collector: TestClient[Any, Any], config: CollectorConfig
) -> None:
    """The same batch_id with different content is a 409 batch_conflict, and only the first copy is kept."""
    obj = batch_obj()
    resp = await collector.post(BATCHES, data=canonical(obj), headers=json_headers())
    assert resp.status == 200
    obj["agent_version"] = "0.1.1"
    resp = await collector.post(BATCHES, data=canonical(obj), headers=json_headers())
    assert resp.status == 409
    assert await resp.json() == {
        "error": {
            "code": "batch_conflict",
            "message": "this batch_id was already stored with different content",
            "path": "batch_id",
        }
    }
    await collector.close()
    assert count_rows(config.db_path) == 1


async def test_ingest_dedup_survives_a_restart(aiohttp_client: Any, config: CollectorConfig) -> None:
    """After a restart, the index is refilled from DuckDB: a resend is a duplicate and a changed copy a 409."""
    from collector import create_app

    obj = batch_obj()
    first = await aiohttp_client(create_app(config))
    assert (await first.post(BATCHES, data=canonical(obj), headers=json_headers())).status == 200
    await first.close()
    second = await aiohttp_client(create_app(config))
    resp = await second.post(BATCHES, data=canonical(obj), headers=json_headers())
    assert (await resp.json())["duplicate"] is True
    obj["agent_version"] = "9.9.9"
    assert (await second.post(BATCHES, data=canonical(obj), headers=json_headers())).status == 409
    await second.close()
    assert count_rows(config.db_path) == 1


async def test_store_sync_makes_acknowledged_batches_readable(collector: TestClient[Any, Any]) -> None:
    """store.sync() returns once every acknowledged batch is in the tables, without waiting for the timer."""
    store = collector.app[STORE]
    bodies = [gz(canonical(batch_obj())) for _ in range(30)]
    responses = await asyncio.gather(
        *(collector.post(BATCHES, data=b, headers=json_headers(gzipped=True)) for b in bodies)
    )
    assert all(r.status == 200 for r in responses)
    await store.sync()
    assert await store.read("SELECT count(*), sum(snapshot_count) FROM batches") == [(30, 720)]
    assert store.pending_batches == 0


async def test_ingest_metrics_count_accepted_duplicates_and_rejections(collector: TestClient[Any, Any]) -> None:
    """/metrics counts stored batches, snapshots, duplicates and rejections by code, in Prometheus text."""
    body = canonical(batch_obj())
    for _ in range(2):
        await collector.post(BATCHES, data=body, headers=json_headers())
    await collector.post(BATCHES, data=b"{", headers=json_headers())
    resp = await collector.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    # Read back as a scraper does (prometheus_client writes a count as 1.0, which means 1 in the format).
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }
    assert samples[("telemetry_batches_accepted_total", ())] == 1
    assert samples[("telemetry_snapshots_accepted_total", ())] == 24
    assert samples[("telemetry_batches_duplicate_total", ())] == 1
    assert samples[("telemetry_batches_rejected_total", (("code", "invalid_json"),))] == 1
    assert samples[("telemetry_ingest_duration_seconds_count", ())] == 3
    assert ("telemetry_pending_batches", ()) in samples
    assert ("telemetry_writer_queue_depth", ()) in samples


async def test_acknowledgement_does_not_wait_for_the_default_executor(collector: TestClient[Any, Any]) -> None:
    """With every thread of the default executor busy, a batch is still fsync'd and acknowledged."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait) for _ in range(64)]  # more than its max_workers
    try:
        resp = await asyncio.wait_for(
            collector.post(BATCHES, data=canonical(batch_obj()), headers=json_headers()), timeout=30
        )
        assert resp.status == 200
    finally:
        release.set()
        await asyncio.gather(*blockers)
