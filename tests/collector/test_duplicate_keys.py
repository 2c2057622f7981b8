"""A batch with a key twice is refused by ingest and by `telemetry-collector import`, naming the key's path.

Two parsers reading the same bytes must not see two meanings: orjson keeps the last value of a repeated
key, another language's parser may keep the first, and the admin approved the bytes, not either reading.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig
from tests.collector.conftest import BATCHES, batch_obj, canonical, count_rows, json_headers
from tests.conftest import ROOT


def _repeat(edit: str) -> tuple[bytes, str]:
    """A canonical batch with one key repeated (``edit`` says where), and the path the error must name."""
    data = canonical(batch_obj()).decode()
    if edit == "metric":
        changed = data.replace('"os.family":"linux"', '"os.family":"windows","os.family":"linux"', 1)
        path = "snapshots[0].metrics.os.family"
    elif edit == "batch_id":
        batch_id = orjson.loads(data)["batch_id"]
        changed = data.replace(f'"batch_id":"{batch_id}"', f'"batch_id":"{batch_id}","batch_id":"{batch_id}"', 1)
        path = "batch_id"
    else:  # the same key spelled with an escape, deep inside
        changed = data.replace('"usage.projects":', '"usage.projects":7,"usage.pr\\u006fjects":', 1)
        path = "snapshots[0].metrics.usage.projects"
    assert changed != data
    return changed.encode(), path


@pytest.mark.parametrize("edit", ["metric", "batch_id", "escaped"])
async def test_ingest_refuses_a_repeated_key(
    edit: str, collector: TestClient[Any, Any], config: CollectorConfig
) -> None:
    """400 duplicate_key with the path of the repeated key; nothing is stored."""
    body, path = _repeat(edit)
    resp = await collector.post(BATCHES, data=body, headers=json_headers())
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert (error["code"], error["path"]) == ("duplicate_key", path)
    await collector.close()
    assert count_rows(config.db_path) == 0


def test_import_refuses_a_repeated_key(tmp_path: Path) -> None:
    """The offline import path (collector.web.ingest.check_batch) refuses the file with the same code and path."""
    files = tmp_path / "export"
    files.mkdir()
    body, path = _repeat("metric")
    (files / "repeated.json").write_bytes(body)
    (files / "good.json").write_bytes(canonical(batch_obj()))
    db = tmp_path / "t.duckdb"
    result = subprocess.run([sys.executable, "-m", "collector", "import", str(files), "--db", str(db)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "repeated.json: duplicate_key: " in result.stdout
    assert f"at {path}" in result.stdout
    assert count_rows(db) == 1
