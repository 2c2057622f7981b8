"""Shared fixtures: golden batches and paths. Fixtures used by one area stay next to its tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector import CollectorConfig
from tests.servers import S3_BUCKET, S3_KEY_ID, S3_SECRET, PostgresServer, SeaweedServer, lake_tools_missing

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def load_golden(name: str) -> bytes:
    """The bytes of a golden file under tests/data (e.g. ``v1/valid/full-day.json``)."""
    return (DATA / name).read_bytes()


@pytest.fixture
def golden_batch() -> dict[str, object]:
    """A valid 24-snapshot batch as a mutable JSON object."""
    obj = orjson.loads(load_golden("v1/valid/full-day.json"))
    assert isinstance(obj, dict)
    return obj


# -- the lake's servers (PostgreSQL + SeaweedFS), started once per session by the tests that need them --


@dataclass(frozen=True)
class LakeServers:
    """The running PostgreSQL and S3 servers; :meth:`config` gives each test a fresh database and prefix."""

    pg: PostgresServer
    s3: SeaweedServer

    def config(self, **changes: Any) -> CollectorConfig:
        """Settings of a collector on a new, empty lake (its own database and bucket prefix)."""
        name = "lake_" + uuid.uuid4().hex[:12]
        return CollectorConfig(
            store="ducklake",
            catalog=self.pg.create_database(name),
            data_path=f"s3://{S3_BUCKET}/{name}/",
            s3_endpoint=self.s3.endpoint,
            s3_key_id=S3_KEY_ID,
            s3_secret=S3_SECRET,
            **changes,
        )


@pytest.fixture(scope="session")
def lake_servers() -> Iterator[LakeServers]:
    """PostgreSQL and SeaweedFS on 127.0.0.1; skipped where they or the DuckDB extensions are missing.

    .ci/run sets TELEMETRY_LAKE_TESTS=1 in the virtualenv that has the [lake] extra: there a missing
    part fails instead of skipping, so CI can never pass the lake suite by skipping it.
    """
    reason = lake_tools_missing()
    if reason:
        if os.environ.get("TELEMETRY_LAKE_TESTS") == "1":
            pytest.fail(f"the lake suite cannot run: {reason}")
        pytest.skip(f"lake suite skipped: {reason}")
    pg, s3 = PostgresServer(), SeaweedServer()
    try:
        pg.start()
        s3.start()
        yield LakeServers(pg=pg, s3=s3)
    finally:
        s3.destroy()
        pg.destroy()
