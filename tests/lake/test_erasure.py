"""Erasure on the lake is physical: after DELETE /v1/installs/ID, no object in the bucket and no catalog row holds it.

The scan reads every object under the lake's prefix (Parquet rows, Parquet statistics and raw bytes) and
every table of every schema in the catalog database, and first proves it can find ids that were not erased.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest

from collector.storage.lake.connect import LakeSettings, open_duckdb
from tests.conftest import LakeServers
from tests.lake.cluster import Collector, FleetInstall, lake_env, make_installs, run_cli

pytestmark = [pytest.mark.lake, pytest.mark.slow]

HEADERS = {"Content-Type": "application/json"}


def _objects_holding(con: Any, prefix: str, needle: str) -> list[str]:
    """Objects under ``prefix`` whose rows, statistics or bytes contain the id ``needle``."""
    raw = (needle.encode(), uuid.UUID(needle).bytes)
    hits = []
    for (path,) in con.execute("SELECT file FROM glob(?)", [prefix + "**"]).fetchall():
        try:
            data = con.execute("SELECT content FROM read_blob(?)", [path]).fetchone()[0]
            found = any(form in data for form in raw)
            if path.endswith(".parquet"):
                rows = con.execute("SELECT count(*) FROM read_parquet(?) t WHERE CAST(t AS VARCHAR) LIKE ?",
                                   [path, f"%{needle}%"]).fetchone()[0]  # fmt: skip
                stats = con.execute(
                    "SELECT count(*) FROM parquet_metadata(?) WHERE CAST(stats_min AS VARCHAR) LIKE ?"
                    " OR CAST(stats_max AS VARCHAR) LIKE ?",
                    [path, f"%{needle}%", f"%{needle}%"],
                ).fetchone()[0]
                found = found or rows > 0 or stats > 0
        except duckdb.HTTPException as exc:
            if "404" not in str(exc):
                raise
            continue  # maintenance deleted it between the listing and the read: it holds nothing any more
        if found:
            hits.append(path)
    return hits


def _catalog_rows_holding(servers: LakeServers, dbname: str, *needles: str) -> list[str]:
    """Tables of the catalog database (every schema) with a row whose text holds one of ``needles``."""
    tables = servers.pg.psql(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
        dbname,
    ).split()
    assert len(tables) > 20, tables  # DuckLake's catalog tables, ours, and the inlined data
    pattern = "|".join(needles)  # ids are hex and dashes: nothing to escape in a regular expression
    scan = " UNION ALL ".join(f"(SELECT '{t}' FROM {t} x WHERE x::text ~ '{pattern}' LIMIT 1)" for t in tables)
    return servers.pg.psql(scan, dbname).split()


async def _post_one_by_one(session: aiohttp.ClientSession, url: str, installs: list[FleetInstall]) -> None:
    # One small commit each: inlined into the catalog.
    for install in installs:
        for body in install.bodies.values():
            async with session.post(url + "/v1/batches", data=body, headers=HEADERS) as resp:
                assert resp.status == 200, await resp.text()


async def test_erasure_leaves_no_row_in_any_object_or_catalog_table(
    lake_servers: LakeServers, spawn: Callable[..., Collector], tmp_path: Path
) -> None:
    """Rows in big and small Parquet files, rollup rows, statistics and claims of the erased install are all gone."""
    config = lake_servers.config()
    dbname = config.catalog.rsplit("/", 1)[1] if config.catalog else ""
    # A pass every 4 s (the erasure is due at once): the small files of the last posts are not merged yet.
    env = lake_env(config, maintenance_interval_s="4", erasure_max_hours="0.0005")
    collector = spawn(env)
    parquet_installs = make_installs(count=6, batches_each=10, snapshots_each=24)
    small_installs = make_installs(count=3, batches_each=2)
    victim, survivor = parquet_installs[0], parquet_installs[1]
    small_victim = small_installs[2]  # its rows are in small files of their own, not yet merged, at the erasure
    token = run_cli(env, "token", "create", "--role", "analyst").stdout.strip()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        exported = tmp_path / "exported"
        exported.mkdir()
        for install in parquet_installs:
            for batch_id, body in install.bodies.items():
                (exported / f"{batch_id}.json").write_bytes(body)
        imported = run_cli(env, "import", str(exported))  # one group commit of 1,440 snapshots: Parquet
        assert imported.returncode == 0, imported.stderr
        await _post_one_by_one(session, collector.url, [victim, *small_installs])  # the victim again: duplicates
        url = f"{collector.url}/v1/reports/active-installs?from=2026-11-01&to=2026-11-30&interval=month"
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200  # folds every batch into the rollup (report_days holds install ids)
        settings = LakeSettings.from_config(config)
        con = open_duckdb(settings)
        try:
            assert _objects_holding(con, settings.data_path, survivor.install_id), "the scan finds ids"
            assert _objects_holding(con, settings.data_path, victim.install_id)
            assert _objects_holding(con, settings.data_path, small_victim.install_id)
            for erased, batches, snapshots in ((victim, 10, 240), (small_victim, 2, 4)):
                proof = {"Authorization": f"Bearer {erased.secret}"}
                async with session.delete(f"{collector.url}/v1/installs/{erased.install_id}", headers=proof) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["deleted"] == {"batches": batches, "snapshots": snapshots}
                async with session.get(f"{collector.url}/v1/installs/{erased.install_id}", headers=proof) as resp:
                    assert (await resp.json())["batches"] == []  # unreadable at once
            deadline = time.monotonic() + 60
            while lake_servers.pg.psql("SELECT count(*) FROM telemetry_collector.erasures", dbname) != "0":
                assert time.monotonic() < deadline, "the erasure did not become physical within 60 s"
                await asyncio.sleep(0.5)
            for erased in (victim, small_victim):
                assert _objects_holding(con, settings.data_path, erased.install_id) == []
                ids = [erased.install_id, *erased.bodies]  # its batch ids too: claims, report_batches, statistics
                assert _catalog_rows_holding(lake_servers, dbname, *ids) == []
            assert _objects_holding(con, settings.data_path, survivor.install_id)
            assert _objects_holding(con, settings.data_path, small_installs[0].install_id)
        finally:
            con.close()


_KILLED_COMMIT = """
import dataclasses, hashlib, json, pathlib, sys, tempfile, time
import orjson
from collector.storage.base import spool_line
from collector.storage.lake.connect import LakeSettings, open_duckdb
from collector.storage.rows import insert_lines
import datetime as dt
settings = LakeSettings(**json.loads(sys.stdin.readline()))
bodies = json.loads(sys.stdin.readline())
con = open_duckdb(settings)
path = pathlib.Path(tempfile.mkdtemp()) / "group.ndjson"
now = dt.datetime.now(dt.UTC)
lines = [spool_line(now, hashlib.sha256(b.encode()).hexdigest(), len(b), orjson.loads(b)) for b in bodies]
path.write_bytes(b"".join(lines))
con.execute("BEGIN")
insert_lines(con, path)  # what a group commit writes before it takes the write lock: Parquet on the object store
print("written", flush=True)
time.sleep(600)
"""


async def test_erasure_removes_the_files_of_a_commit_killed_before_it_committed(
    lake_servers: LakeServers, spawn: Callable[..., Collector]
) -> None:
    """A collector killed after writing a group's Parquet files and before committing leaves files no snapshot knows.

    The agent retries and its batches are stored; after the install is erased, the orphaned files that held
    its rows must be gone too (maintenance deletes orphaned files while no commit is writing).
    """
    config = lake_servers.config()
    dbname = config.catalog.rsplit("/", 1)[1] if config.catalog else ""
    env = lake_env(config, maintenance_interval_s="4", erasure_max_hours="0.0005")
    collector = spawn(env)
    victim, survivor = make_installs(count=2, batches_each=3, snapshots_each=24)
    settings = LakeSettings.from_config(config)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_COMMIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        child.stdin.write(json.dumps(dataclasses.asdict(settings)) + "\n")
        child.stdin.write(json.dumps([body.decode() for body in victim.bodies.values()]) + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "written"
    finally:
        child.kill()  # SIGKILL: after the group's files are written, before its commit
        child.wait()
        child.stdin.close()
        child.stdout.close()
    con = open_duckdb(settings)
    try:
        orphaned = _objects_holding(con, settings.data_path, victim.install_id)
        assert orphaned, "the killed commit left its files on the object store"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await _post_one_by_one(session, collector.url, [victim, survivor])  # the agent's retry is stored
            proof = {"Authorization": f"Bearer {victim.secret}"}
            async with session.delete(f"{collector.url}/v1/installs/{victim.install_id}", headers=proof) as resp:
                assert resp.status == 200
                assert (await resp.json())["deleted"] == {"batches": 3, "snapshots": 72}
        deadline = time.monotonic() + 60
        while lake_servers.pg.psql("SELECT count(*) FROM telemetry_collector.erasures", dbname) != "0":
            assert time.monotonic() < deadline, "the erasure did not become physical within 60 s"
            await asyncio.sleep(0.5)
        assert _objects_holding(con, settings.data_path, victim.install_id) == []
        assert _objects_holding(con, settings.data_path, survivor.install_id)
    finally:
        con.close()
