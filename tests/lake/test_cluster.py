"""Three collectors on one lake under concurrent load, SIGKILLed in turn: nothing acknowledged is lost or doubled."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from tests.conftest import LakeServers
from tests.lake.cluster import (
    Collector,
    FleetInstall,
    batch_ids,
    bodies_of,
    lake_env,
    make_installs,
    run_cli,
    stopped_logs,
)

pytestmark = [pytest.mark.lake, pytest.mark.slow]

HEADERS = {"Content-Type": "application/json"}


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> str | None:
    """POST a batch; the batch_id of a 200 receipt, or None for any failure (503, reset, refused)."""
    try:
        async with session.post(url + "/v1/batches", data=body, headers=HEADERS) as resp:
            if resp.status == 200:
                return str((await resp.json())["batch_id"])
            assert resp.status == 503, (resp.status, await resp.text())
    except (TimeoutError, aiohttp.ClientError):
        pass  # a collector killed mid-request: the sender retries elsewhere
    return None


async def test_cluster_survives_sigkills_and_stores_every_batch_once(
    lake_servers: LakeServers, spawn: Callable[..., Collector]
) -> None:
    """Batches spread over 3 collectors, one SIGKILLed every ~1.5 s and restarted; retries go to another collector.

    Every acknowledged batch is then held exactly once, as asked of a collector that did not acknowledge it,
    in the data-subject answer and in the reports; copies sent to two collectors at once are stored once.
    """
    config = lake_servers.config()
    env = lake_env(config, maintenance_interval_s="2", retry_after_s="1")
    collectors = [spawn(env) for _ in range(3)]
    installs = make_installs(count=12, batches_each=40)
    work = list(bodies_of(installs))
    random.Random(7).shuffle(work)
    acked: dict[str, int] = {}  # batch_id -> index of the collector that acknowledged it
    pending = asyncio.Queue[tuple[FleetInstall, str, bytes]]()
    for item in work:
        pending.put_nowait(item)
    rng = random.Random(11)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not pending.empty():
            _, batch_id, body = pending.get_nowait()
            first = rng.randrange(3)
            for attempt in range(60):  # an agent's retries, to the next collector each time
                target = (first + attempt) % 3
                if collectors[target].proc is None:
                    continue
                if rng.random() < 0.1:
                    # the same bytes to two collectors at the same moment (a retry after a lost answer)
                    other = (target + 1) % 3
                    if collectors[other].proc is not None:
                        results = await asyncio.gather(
                            _post(session, collectors[target].url, body), _post(session, collectors[other].url, body)
                        )
                        if results[0] or results[1]:
                            acked[batch_id] = target if results[0] else other
                            break
                        continue
                if await _post(session, collectors[target].url, body):
                    acked[batch_id] = target
                    break
                await asyncio.sleep(0.2)

    async def killer() -> None:
        for round_ in range(6):
            await asyncio.sleep(1.5)
            victim = collectors[round_ % 3]
            victim.kill()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(victim.start)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        chaos = asyncio.create_task(killer())
        await asyncio.gather(*(sender(session) for _ in range(12)))
        await chaos
        assert len(acked) == len(work), "every batch was acknowledged in the end (the senders retry)"

        # Ask every collector, including ones that did not acknowledge a batch: exactly once, nothing extra.
        for install in installs:
            proof = {"Authorization": f"Bearer {install.secret}"}
            for n, collector in enumerate(collectors):
                async with session.get(f"{collector.url}/v1/installs/{install.install_id}", headers=proof) as resp:
                    assert resp.status == 200
                    document = await resp.read()
                assert sorted(batch_ids(document)) == sorted(install.bodies), f"collector {n}, {install.install_id}"
                assert len(orjson.loads(document)["snapshots"]) == 2 * len(install.bodies)

        # The reports agree, from every collector: 12 installs active on each of the fleet's 5 days.
        token = run_cli(env, "token", "create", "--role", "analyst").stdout.strip()
        for collector in collectors:
            url = f"{collector.url}/v1/reports/active-installs?from=2026-11-01&to=2026-11-05&interval=day"
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, f"{await resp.text()}\n{stopped_logs(collectors)}"
                rows = (await resp.json())["rows"]
            assert [row["installs"] for row in rows] == [12] * 5
    for collector in collectors:
        code, err = collector.stop()
        assert code == 0, err
    logs = "\n".join("\n".join(c.log) for c in collectors)
    assert "Traceback" not in logs, logs[-3000:]
