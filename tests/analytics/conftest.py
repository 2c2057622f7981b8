"""Fixtures for analytics tests: a real collector with a fixed clock, tokens, and a fleet loaded through ingest."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig, create_app
from collector.storage.tokens import create_token
from collector.web.keys import STORE, TOKENS
from tests.analytics.fleet import NOW, Install, batches, make_fleet

Client = TestClient[Any, Any]


@pytest.fixture
def config(tmp_path: Path) -> CollectorConfig:
    """Settings over a fresh database file, loading the spool often."""
    return CollectorConfig(db_path=tmp_path / "t.duckdb", load_interval_s=0.05)


@pytest.fixture
async def client(aiohttp_client: Callable[..., Any], config: CollectorConfig) -> Client:
    """A real collector on 127.0.0.1 whose clock reads fleet.NOW."""
    result: Client = await aiohttp_client(create_app(config, clock=lambda: NOW))
    return result


async def new_token(client: Client, role: str) -> str:
    """Create a token in the running collector's database; return it."""
    store = client.app[STORE]
    _, token = await store.write(lambda con: create_token(con, role, NOW))
    client.app[TOKENS].invalidate()  # as the collector does after creating one itself
    return str(token)


@pytest.fixture
async def analyst(client: Client) -> dict[str, str]:
    """Authorization headers with a fresh analyst token."""
    return {"Authorization": f"Bearer {await new_token(client, 'analyst')}"}


@pytest.fixture
def fleet() -> list[Install]:
    """The synthetic fleet (not yet sent)."""
    return make_fleet()


async def post(client: Client, bodies: Iterable[bytes]) -> int:
    """POST each batch body through the real ingest path (each one acknowledged); return how many, then
    wait until they are in the tables."""
    sent = 0
    for body in bodies:
        resp = await client.post("/v1/batches", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 200, await resp.text()
        sent += 1
    await client.app[STORE].sync()
    return sent


async def load(client: Client, installs: list[Install]) -> int:
    """POST every batch of ``installs`` through the real ingest path, then wait until they are in the tables."""
    return await post(client, (body for install in installs for body in batches(install)))


@pytest.fixture
async def loaded(client: Client, fleet: list[Install]) -> list[Install]:
    """The fleet, loaded into the collector."""
    await load(client, fleet)
    return fleet
