"""The collector's `catalogue` setting: older batches are checked by what their version allowed, newer ones
are accepted when every key is known, and GET /v1/policy serves the catalogue in force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig, create_app
from collector.cli.import_files import import_files
from collector.errors import ConfigError
from schema import parse_policy, read_catalogue
from tests.collector.conftest import BATCHES, batch_obj, canonical, count_rows, json_headers
from tests.conftest import DATA, ROOT

V2_PATH = DATA / "catalogues" / "v2.toml"
V2 = read_catalogue(V2_PATH)


def _v2_batch(**metrics: int) -> dict[str, Any]:
    obj = batch_obj(schema_version=2, catalogue_version=2)
    for snap in obj["snapshots"]:
        snap["metrics"].pop("host.disk.free_gib", None)
        snap["metrics"].update(metrics)
    return obj


@pytest.fixture
async def collector_v2(aiohttp_client: Any, tmp_path: Path) -> TestClient[Any, Any]:
    """A real collector whose catalogue is the version-2 fixture."""
    config = CollectorConfig(db_path=tmp_path / "v2.duckdb", load_interval_s=0.1, catalogue=V2_PATH)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    return client


async def test_policy_serves_the_configured_catalogue(collector_v2: TestClient[Any, Any]) -> None:
    """GET /v1/policy is the catalogue in force, with since and removed_in, readable back as that catalogue."""
    doc = await (await collector_v2.get("/v1/policy")).json()
    assert doc["catalogue_version"] == 2
    assert doc["schema_versions"] == [1, 2]
    by_key = {m["key"]: m for m in doc["metrics"]}
    assert by_key["host.disk.free_gib"]["removed_in"] == 2
    assert by_key["usage.environments"]["since"] == 2
    assert dict(parse_policy(doc).metrics) == dict(V2.metrics)


async def test_packaged_policy_is_version_1(collector: TestClient[Any, Any]) -> None:
    """Without the setting the packaged catalogue (version 1) is served."""
    doc = await (await collector.get("/v1/policy")).json()
    assert doc["catalogue_version"] == 1
    assert all(m["removed_in"] is None for m in doc["metrics"])


async def test_older_batch_with_a_metric_retired_since_is_accepted(collector_v2: TestClient[Any, Any]) -> None:
    """A format-1 batch (catalogue version 1) with host.disk.free_gib goes into a version-2 collector."""
    obj = batch_obj()
    assert "host.disk.free_gib" in obj["snapshots"][0]["metrics"]
    resp = await collector_v2.post(BATCHES, data=canonical(obj), headers=json_headers())
    assert resp.status == 200, await resp.text()


async def test_batch_of_this_version_may_not_hold_a_retired_metric(collector_v2: TestClient[Any, Any]) -> None:
    """A version-2 batch holding what version 2 retired is a 422 naming the metric."""
    obj = _v2_batch()
    obj["snapshots"][3]["metrics"]["host.disk.free_gib"] = 120
    resp = await collector_v2.post(BATCHES, data=orjson.dumps(obj), headers=json_headers())
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["path"]) == ("retired_metric", "snapshots[3].metrics.host.disk.free_gib")


async def test_newer_batch_with_known_keys_is_accepted(collector: TestClient[Any, Any]) -> None:
    """A version-1 collector takes a version-2 batch that holds only metrics it knows."""
    resp = await collector.post(BATCHES, data=canonical(_v2_batch()), headers=json_headers())
    assert resp.status == 200, await resp.text()


async def test_newer_batch_with_an_unknown_key_is_refused_naming_the_collector_version(
    collector: TestClient[Any, Any],
) -> None:
    """A version-1 collector answers a version-2 batch holding usage.environments with a 422 naming version 1."""
    body = canonical(_v2_batch(**{"usage.environments": 3}), V2)
    resp = await collector.post(BATCHES, data=body, headers=json_headers())
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["path"]) == ("unknown_metric", "snapshots[0].metrics.usage.environments")
    assert "catalogue version 1" in error["message"]


def test_offline_import_validates_against_the_configured_catalogue(tmp_path: Path) -> None:
    """`import` with catalogue = v2 stores a version-2 batch that the packaged catalogue would refuse."""
    path = tmp_path / "batch.json"
    path.write_bytes(canonical(_v2_batch(**{"usage.environments": 4}), V2))
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        assert import_files(CollectorConfig(db_path=tmp_path / "p.duckdb"), [str(path)], out=f) == 2
        assert import_files(CollectorConfig(db_path=tmp_path / "v2.duckdb", catalogue=V2_PATH), [str(path)], out=f) == 0
    assert count_rows(tmp_path / "v2.duckdb", "snapshot_values") == 24


def test_catalogue_setting_errors_name_the_setting(tmp_path: Path) -> None:
    """A missing or broken file, or a metric that cannot fit its stored column, is a ConfigError on `catalogue`."""
    with pytest.raises(ConfigError) as info:
        CollectorConfig(catalogue=tmp_path / "missing.toml")
    assert info.value.path == "catalogue"
    broken = tmp_path / "broken.toml"
    broken.write_text(V2_PATH.read_text().replace('clause = "usage-environments"', 'clause = "marketing"'))
    with pytest.raises(ConfigError, match="names no clause"):
        CollectorConfig(catalogue=broken)
    misfit = tmp_path / "misfit.toml"
    text = (ROOT / "schema" / "catalogue.toml").read_text()
    # An INTEGER column holds at most 2**31 - 1.
    misfit.write_text(text.replace("min = 1\nmax = 4096\n", "min = 1\nmax = 4096000000\n"))
    with pytest.raises(ConfigError, match=r"host\.cpu\.logical_cores does not fit"):
        create_app(CollectorConfig(db_path=tmp_path / "m.duckdb", catalogue=misfit))


def test_cli_bad_catalogue_is_one_line_exit_2(tmp_path: Path) -> None:
    """`serve --catalogue MISSING` exits 2 with one line naming the setting and the file."""
    missing = tmp_path / "missing.toml"
    result = subprocess.run([sys.executable, "-m", "collector", "serve", "--db", str(tmp_path / "t.duckdb"),
                             "--catalogue", str(missing)], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "catalogue" in result.stderr
    assert str(missing) in result.stderr
