"""Fixtures for collector tests: a real app on 127.0.0.1 over a real DuckDB file, and batch factories."""

from __future__ import annotations

import copy
import gzip
import re
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig, create_app
from schema import CATALOGUE, Catalogue, encode_batch, parse_batch_obj
from tests.conftest import ROOT, load_golden

BATCHES = "/v1/batches"


def batch_obj(**changes: Any) -> dict[str, Any]:
    """A valid 24-snapshot batch object with a fresh batch_id, with top-level ``changes`` applied."""
    obj: dict[str, Any] = orjson.loads(load_golden("v1/valid/full-day.json"))
    obj["batch_id"] = str(uuid.uuid4())
    obj.update(copy.deepcopy(changes))
    return obj


def canonical(obj: dict[str, Any], catalogue: Catalogue = CATALOGUE) -> bytes:
    """The canonical bytes of a batch object, as the agent sends them (checked against ``catalogue``)."""
    return encode_batch(parse_batch_obj(obj, catalogue=catalogue))


def gz(data: bytes) -> bytes:
    """Gzip ``data`` as the agent does."""
    return gzip.compress(data, compresslevel=6)


def json_headers(gzipped: bool = False) -> dict[str, str]:
    """Request headers for a batch post."""
    headers = {"Content-Type": "application/json"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers


def count_rows(db_path: Path, table: str = "batches") -> int:
    """Rows in ``table`` of a closed database file, opened read-only."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def config(tmp_path: Path) -> CollectorConfig:
    """Settings for a collector over a fresh database file in tmp_path."""
    return CollectorConfig(db_path=tmp_path / "t.duckdb", load_interval_s=0.1)


@pytest.fixture
async def collector(aiohttp_client: Callable[..., Any], config: CollectorConfig) -> TestClient[Any, Any]:
    """A real collector on 127.0.0.1 (ephemeral port) backed by a real DuckDB file."""
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    return client


def start_server(db_path: Path, *args: str, timeout_s: float = 20.0) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m collector serve`` on an ephemeral port; return the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", str(db_path), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"collector did not start: {line!r} {err!r}")
    return proc, match.group(1)


def stop_server(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> tuple[int, str]:
    """SIGTERM the collector and wait; return its exit code and stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err
