"""Data-subject requests and retention: access and erasure proven by the install secret; old data expires."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from collector import CollectorConfig, create_app
from collector.reports import rollup as reports_rollup
from collector.storage.retention import cutoff_day, purge
from collector.web.keys import STORE
from schema import new_secret
from tests.analytics.conftest import Client, load
from tests.analytics.fleet import NOW, Install, make_fleet

# Tables that name an install only through its batch ids.
_BY_BATCH = ("report_batches",)


async def _traces(client: Client, install: Install, batch_ids: list[str]) -> dict[str, int]:
    """Rows mentioning the install (its id, or one of its batch ids) in every table of the database."""
    store = client.app[STORE]
    found = {}
    tables = await store.read(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='main'"
    )
    columns: dict[str, list[str]] = {}
    for table, column in tables:
        columns.setdefault(table, []).append(column)
    for table, names in columns.items():
        text = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in names)
        needles = [install.install_id, *batch_ids]
        rows = await store.read(
            f"SELECT count(*) FROM {table} WHERE list_has_any(?, regexp_extract_all({text}, '[0-9a-f-]{{36}}'))",
            [needles],
        )
        found[table] = rows[0][0]
    return found


async def test_get_returns_everything_held(client: Client, loaded: list[Install]) -> None:
    """GET with the secret returns the install's batches, snapshots and rollup rows, and nothing of others."""
    install = loaded[5]
    await client.app[STORE].write(reports_rollup.refresh)
    resp = await client.get(f"/v1/installs/{install.install_id}", headers={"Authorization": f"Bearer {install.secret}"})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    held: dict[str, Any] = await resp.json()
    assert held["install_id"] == install.install_id
    assert [s["taken_at"] for s in held["snapshots"]] == [
        t.strftime("%Y-%m-%dT%H:00:00Z") for t, _, _ in install.snapshots
    ]
    assert [s["metrics"] for s in held["snapshots"]] == [m for _, _, m in install.snapshots]
    assert sum(b["snapshot_count"] for b in held["batches"]) == len(install.snapshots)
    assert sum(d["snapshots"] for d in held["report_days"]) == len(install.snapshots)
    assert {str(d["install_id"]) for d in held["report_days"]} == {install.install_id}


@pytest.mark.parametrize("which", ["missing", "wrong", "other-install", "malformed", "basic"])
async def test_wrong_secret_is_401_whether_or_not_the_install_exists(
    client: Client, loaded: list[Install], which: str
) -> None:
    """Without the right secret, an existing and an unknown install get the same 401 for GET and DELETE."""
    unknown = "9e2b4c1a-0000-4000-8000-000000000000"
    headers = {
        "missing": {},
        "wrong": {"Authorization": f"Bearer {new_secret()}"},
        "other-install": {"Authorization": f"Bearer {loaded[1].secret}"},
        "malformed": {"Authorization": "Bearer 1234"},
        "basic": {"Authorization": f"Basic {loaded[0].secret}"},
    }[which]
    answers = []
    for install_id in (loaded[0].install_id, unknown):
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"/v1/installs/{install_id}", headers=headers)
            answers.append((resp.status, (await resp.json())["error"]))
    assert {status for status, _ in answers} == {401}
    assert len({str(error) for _, error in answers}) == 1
    assert (await client.app[STORE].read("SELECT count(*) FROM snapshots"))[0][0] > 0


async def test_delete_leaves_no_trace_in_any_table(client: Client, loaded: list[Install]) -> None:
    """DELETE erases the install from every table (rollups included) and leaves the others untouched."""
    install, other = loaded[7], loaded[8]
    await client.app[STORE].write(reports_rollup.refresh)
    headers = {"Authorization": f"Bearer {install.secret}"}
    held = await client.get(f"/v1/installs/{install.install_id}", headers=headers)
    batch_ids = [b["batch_id"] for b in (await held.json())["batches"]]
    before = await _traces(client, install, batch_ids)
    assert before["snapshots"] == len(install.snapshots)
    assert before["report_days"] > 0
    assert before["report_batches"] == len(batch_ids)
    others_before = await _traces(client, other, [])

    resp = await client.delete(f"/v1/installs/{install.install_id}", headers=headers)
    assert resp.status == 200
    assert await resp.json() == {
        "install_id": install.install_id,
        "deleted": {"batches": len(batch_ids), "snapshots": len(install.snapshots)},
    }
    after = await _traces(client, install, batch_ids)
    assert after == dict.fromkeys(after, 0), after
    assert set(after) >= {"batches", "snapshots", "report_days", "report_batches", *_BY_BATCH}
    assert await _traces(client, other, []) == others_before

    # The erased batches are forgotten by the dedup index: sending one again stores it afresh.
    resp = await client.get(f"/v1/installs/{install.install_id}", headers=headers)
    assert await resp.json() == {"install_id": install.install_id, "batches": [], "snapshots": [], "report_days": []}
    await load(client, [install])
    resp = await client.get(f"/v1/installs/{install.install_id}", headers=headers)
    assert len((await resp.json())["snapshots"]) == len(install.snapshots)


async def test_retention_removes_old_raw_data_and_rollup_rows(client: Client, loaded: list[Install]) -> None:
    """A purge at a cutoff removes every snapshot, batch and rollup row dated before it, and keeps the rest."""
    store = client.app[STORE]
    cutoff = dt.date(2026, 6, 1)
    newer = sum(1 for i in loaded for t, _, _ in i.snapshots if t.date() >= cutoff)
    _, deleted = await store.write(lambda con: purge(con, cutoff))
    assert deleted == sum(len(i.snapshots) for i in loaded) - newer
    assert (await store.read("SELECT count(*) FROM snapshots"))[0][0] == newer
    assert (await store.read("SELECT count(*) FROM snapshots WHERE taken_at < '2026-06-01'"))[0][0] == 0
    assert (await store.read("SELECT count(*) FROM batches WHERE created_at < '2026-06-01'"))[0][0] == 0
    assert (await store.read("SELECT count(*) FROM report_days WHERE day < '2026-06-01'"))[0][0] == 0
    orphans = "SELECT count(*) FROM report_batches ANTI JOIN batches USING (batch_id)"
    assert (await store.read(orphans))[0][0] == 0
    assert cutoff_day(dt.datetime(2026, 6, 30, 12, tzinfo=dt.UTC), 29) == cutoff


async def test_retention_job_runs_on_the_schedule(aiohttp_client: Any, tmp_path: Path) -> None:
    """With retention_days=30 the background job deletes, soon after start-up, data older than 30 days."""
    config = CollectorConfig(
        db_path=tmp_path / "r.duckdb", load_interval_s=0.05, retention_days=30, retention_interval_s=1
    )
    client = await aiohttp_client(create_app(config, clock=lambda: NOW))
    await load(client, make_fleet()[:6])
    store = client.app[STORE]
    for _ in range(60):  # the job runs every second; the first pass may have run before the load
        if (await store.read("SELECT count(*) FROM snapshots WHERE taken_at < '2026-05-31'"))[0][0] == 0:
            break
        await asyncio.sleep(0.1)
    assert (await store.read("SELECT count(*) FROM snapshots WHERE taken_at < '2026-05-31'"))[0][0] == 0
    assert (await store.read("SELECT count(*) FROM snapshots"))[0][0] > 0
    assert (await store.read("SELECT count(*) FROM report_days WHERE day < '2026-05-31'"))[0][0] == 0
