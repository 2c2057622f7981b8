"""On a lake there is no database file to copy: backup refuses, naming what to back up instead."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LakeServers
from tests.lake.cluster import Collector, lake_env, run_cli

pytestmark = [pytest.mark.lake, pytest.mark.slow]


def test_backup_on_a_lake_answers_409_and_the_command_exits_2(
    lake_servers: LakeServers, spawn: Callable[..., Collector], tmp_path: Path
) -> None:
    """POST /v1/admin/backup on a lake collector is 409 backup_unsupported; backup --url exits 2, writes nothing."""
    env = lake_env(lake_servers.config())
    admin = run_cli(env, "token", "create", "--role", "admin").stdout.strip()
    collector = spawn(env)
    request = urllib.request.Request(f"{collector.url}/v1/admin/backup", data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # a local test server
    assert refused.value.code == 409
    error = json.loads(refused.value.read())["error"]
    refused.value.close()
    assert error["code"] == "backup_unsupported"
    assert "PostgreSQL and the object store" in error["message"]
    done = run_cli(env, "backup", str(tmp_path / "copy.duckdb"), "--url", collector.url, "--token", admin)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("telemetry-collector: HTTP 409: this collector stores into a lake")
    assert not (tmp_path / "copy.duckdb").exists()
