"""SIGKILL of the collector under concurrent load loses no acknowledged batch and stores none twice."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import duckdb
import pytest

from tests.collector.conftest import BATCHES, batch_obj, canonical, gz, json_headers, start_server, stop_server

pytestmark = pytest.mark.slow


async def _load(url: str, bodies: dict[str, bytes], acked: set[str], tried: set[str], stop_after_s: float) -> None:
    """Post unique batches (and resends of acknowledged ones) from 16 connections until the server dies."""
    deadline = time.monotonic() + stop_after_s
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                if i % 5 == 0 and acked:
                    batch_id = next(iter(acked))  # a retry of something already stored
                else:
                    obj = batch_obj()
                    batch_id = obj["batch_id"]
                    bodies[batch_id] = gz(canonical(obj))
                tried.add(batch_id)
                try:
                    async with session.post(
                        url + BATCHES, data=bodies[batch_id], headers=json_headers(gzipped=True)
                    ) as resp:
                        if resp.status == 200:
                            acked.add((await resp.json())["batch_id"])
                except aiohttp.ClientError:
                    return  # the server is gone

        await asyncio.gather(*(worker(n) for n in range(16)))


async def test_sigkill_during_load_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    """Two SIGKILLs mid-load, restarts and resends: every acknowledged batch_id is in the file exactly once."""
    db = tmp_path / "t.duckdb"
    bodies: dict[str, bytes] = {}
    acked: set[str] = set()
    tried: set[str] = set()
    for _ in range(2):
        proc, url = start_server(db, "--load-interval-s", "0.05", "--log-level", "warning")
        load = asyncio.create_task(_load(url, bodies, acked, tried, stop_after_s=10))
        await asyncio.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        await load
    assert len(acked) > 50, "the load reached the server"
    # Restart: the spool is replayed. Resend everything ever tried, as agents would retry.
    proc, url = start_server(db, "--log-level", "warning")
    async with aiohttp.ClientSession() as session:
        for batch_id in sorted(tried):
            async with session.post(url + BATCHES, data=bodies[batch_id], headers=json_headers(gzipped=True)) as resp:
                assert resp.status == 200
                receipt = await resp.json()
                if batch_id in acked:
                    assert receipt["duplicate"] is True, "an acknowledged batch survived the kill"
    code, err = stop_server(proc)
    assert code == 0, err
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT CAST(batch_id AS VARCHAR), count(*) FROM batches GROUP BY ALL").fetchall()
        snapshots = con.execute("SELECT count(*) FROM snapshots").fetchone()
    stored = dict(rows)
    assert set(stored) == tried
    assert set(stored.values()) == {1}, "no batch stored twice"
    assert snapshots == (24 * len(tried),)
