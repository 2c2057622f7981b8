"""A part of the lake goes down under load: 503 with Retry-After, /readyz names the part, nothing acknowledged is lost.

Everything recovers without restarting a collector once the part is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.conftest import LakeServers
from tests.lake.cluster import Collector, batch_ids, bodies_of, lake_env, make_installs, run_cli
from tests.servers import S3_SECRET

pytestmark = [pytest.mark.lake, pytest.mark.slow]

HEADERS = {"Content-Type": "application/json"}


async def _status(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


async def _until_ready(session: aiohttp.ClientSession, url: str, *, ready: bool, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, _, body = await _status(session, "GET", url + "/readyz")
        if (status == 200) == ready:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz did not turn {'ready' if ready else 'not ready'} within {timeout_s} s")


async def test_outage_postgres_restart_under_load_loses_no_acknowledged_batch(
    lake_servers: LakeServers, spawn: Callable[..., Collector]
) -> None:
    """PostgreSQL stops mid-load: 503 + Retry-After, /readyz names the catalog; after its restart every ack is held."""
    config = lake_servers.config()
    env = lake_env(config, retry_after_s="1", maintenance_interval_s="3600")
    token = run_cli(env, "token", "create", "--role", "analyst").stdout.strip()
    collectors = [spawn(env) for _ in range(2)]
    installs = make_installs(count=6, batches_each=30)
    work = list(bodies_of(installs))
    acked: set[str] = set()
    queue = list(reversed(work))
    outage = asyncio.Event()

    async def sender(session: aiohttp.ClientSession, n: int) -> None:
        while queue:
            _, _, body = queue.pop()
            for attempt in range(400):
                url = collectors[(n + attempt) % 2].url
                try:
                    status, headers, answer = await _status(session, "POST", url + "/v1/batches", data=body,
                                                            headers=HEADERS)  # fmt: skip
                except aiohttp.ClientError:
                    status, headers, answer = 0, {}, None
                if status == 200:
                    acked.add(answer["batch_id"])
                    break
                assert status == 503, (status, answer)
                assert headers.get("Retry-After") == "1"
                if answer["error"]["code"] == "unavailable":
                    outage.set()
                await asyncio.sleep(0.1)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        senders = [asyncio.create_task(sender(session, n)) for n in range(6)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(lake_servers.pg.stop, "immediate")
        body = await _until_ready(session, collectors[0].url, ready=False)
        assert body["error"] == {"code": "not_ready", "path": "catalog", "message": body["error"]["message"]}
        assert "PostgreSQL" in body["error"]["message"]
        status, headers, answer = await _status(
            session, "GET", collectors[1].url + "/v1/reports/active-installs",
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert status == 503, answer
        assert headers["Retry-After"] == "1"
        await asyncio.sleep(1.0)
        await asyncio.to_thread(lake_servers.pg.start)
        for collector in collectors:
            await _until_ready(session, collector.url, ready=True)
        await asyncio.gather(*senders)
        assert outage.is_set(), "ingest answered 503 unavailable while PostgreSQL was down"
        assert acked == {batch_id for _, batch_id, _ in work}
        for install in installs:
            proof = {"Authorization": f"Bearer {install.secret}"}
            async with session.get(f"{collectors[1].url}/v1/installs/{install.install_id}", headers=proof) as resp:
                assert sorted(batch_ids(await resp.read())) == sorted(install.bodies)


async def test_outage_object_store_down_then_back(lake_servers: LakeServers, spawn: Callable[..., Collector]) -> None:
    """The S3 server stops: /readyz names the object store, ingest gets 503; once it is back everything works."""
    config = lake_servers.config()
    env = lake_env(config, retry_after_s="2", maintenance_interval_s="3600")
    collector = spawn(env)
    [install] = make_installs(count=1, batches_each=3)
    bodies = list(install.bodies.values())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        status, _, answer = await _status(
            session, "POST", collector.url + "/v1/batches", data=bodies[0], headers=HEADERS
        )
        if status != 200:
            collector.stop()
            raise AssertionError(collector.log)
        lake_servers.s3.stop()
        try:
            body = await _until_ready(session, collector.url, ready=False)
            assert body["error"]["path"] == "object_store"
            status, headers, answer = await _status(
                session, "POST", collector.url + "/v1/batches", data=bodies[1], headers=HEADERS
            )
            assert (status, headers["Retry-After"], answer["error"]["code"]) == (503, "2", "unavailable")
        finally:
            lake_servers.s3.start()
        await _until_ready(session, collector.url, ready=True)
        for body_bytes in bodies[1:]:
            status, _, _ = await _status(session, "POST", collector.url + "/v1/batches", data=body_bytes,
                                         headers=HEADERS)  # fmt: skip
            assert status == 200
        proof = {"Authorization": f"Bearer {install.secret}"}
        async with session.get(f"{collector.url}/v1/installs/{install.install_id}", headers=proof) as resp:
            assert sorted(batch_ids(await resp.read())) == sorted(install.bodies)
    # The operator's log says when the part went down and when it came back, a line each (no traceback, no key).
    code, err = collector.stop()
    assert code == 0, err
    log = "\n".join(collector.log)
    assert "WARNING collector.storage.lake.health: the lake's object store is unavailable: " in log, log
    assert "the lake is ready again (object_store was unavailable)" in log, log
    assert "Traceback" not in log, log
    assert S3_SECRET not in log


async def test_a_lock_wait_that_times_out_is_busy_not_an_outage(
    lake_servers: LakeServers, spawn: Callable[..., Collector]
) -> None:
    """A commit that waits past lock_timeout for the write lock (held elsewhere) gets 503 busy; /readyz stays 200."""
    config = lake_servers.config()
    collector = spawn(lake_env(config))
    (install,) = make_installs(count=1, batches_each=2)
    first, second = list(install.bodies.values())
    assert config.catalog is not None
    with psycopg.connect(config.catalog, autocommit=True) as rival:
        rival.execute("SELECT pg_advisory_lock(%s, %s)", (0x7E1E, 1))  # the lake's WRITE lock (locks.WRITE)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            status, headers, body = await _status(session, "POST", collector.url + "/v1/batches", data=first,
                                                  headers=HEADERS)  # fmt: skip
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert body["error"]["message"] == "the lake is busy (a lock wait timed out)", body
            ready, _, _ = await _status(session, "GET", collector.url + "/readyz")
            assert ready == 200  # the catalog is up: nothing else is refused meanwhile
            rival.execute("SELECT pg_advisory_unlock(%s, %s)", (0x7E1E, 1))
            for body_bytes in (first, second):  # the agent's retry, then the next batch
                status, _, body = await _status(session, "POST", collector.url + "/v1/batches", data=body_bytes,
                                                headers=HEADERS)  # fmt: skip
                assert status == 200, body
    code, _ = collector.stop()
    assert code == 0
    log = "\n".join(collector.log)
    assert "is unavailable" not in log, log  # no part was reported down
    assert "lake group commit of 1 batch(es) failed: the lake is busy (a lock wait timed out)" in log, log
    assert "Traceback" not in log, log
