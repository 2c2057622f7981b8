"""The real agent CLI (subprocesses) delivers to a real collector process, and `forget` leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DATA
from tests.e2e.collector_proc import RunningCollector, running_collector

pytestmark = pytest.mark.slow


def _agent_env(state: Path, endpoint: str, usage: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_") and k != "DO_NOT_TRACK"}
    env.update({
        "TELEMETRY_ENDPOINT": endpoint,
        "TELEMETRY_CONSENT": "auto",
        "TELEMETRY_STATE_DIR": str(state),
        "TELEMETRY_PRODUCT_NAME": "deployserver",
        "TELEMETRY_PRODUCT_VERSION": "4.2.1",
        "TELEMETRY_USAGE_FILE": str(usage),
        "TELEMETRY_AGENT_FAKE_HOST": str(DATA / "psutil" / "linux-debian12.json"),
    })  # fmt: skip
    return env


def _agent(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--json", *args], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout) if done.stdout.strip() else None


def _active_installs(collector: RunningCollector, expected: int) -> int:
    # An acknowledged batch reaches the reports after the next spool load (load_interval_s).
    installs = 0
    for _ in range(100):
        rows = collector.get("/v1/reports/active-installs?interval=day")["rows"]
        installs = rows[-1]["installs"] or 0
        if installs == expected:
            break
        time.sleep(0.1)
    return installs


def test_agent_cli_delivers_and_forget_erases(tmp_path: Path) -> None:
    """Two installs collect, seal and send over HTTP; reports and `remote` show them; `forget` erases one entirely."""
    usage = tmp_path / "usage.json"
    usage.write_text('{"projects": 7, "deployments": 1234, "customer_email": "x@example.com"}')
    # min_group_size 1: with two installs every group would otherwise be suppressed.
    with running_collector(tmp_path, env={"TELEMETRY_COLLECTOR_MIN_GROUP_SIZE": "1"}) as collector:
        envs = [_agent_env(tmp_path / f"install-{n}", collector.url, usage) for n in range(2)]
        for env in envs:
            _agent(env, "collect")
            _agent(env, "seal")
            sent = _agent(env, "send")
            assert [r["outcome"] for r in sent["results"]] == ["delivered"]
        assert _active_installs(collector, 2) == 2

        held = _agent(envs[0], "remote")
        old_id = held["install_id"]
        assert len(held["batches"]) == 1
        [snapshot] = held["snapshots"]
        assert snapshot["metrics"]["usage.projects"] == 7
        assert snapshot["metrics"]["os.version"] == "Debian 12"
        assert "customer_email" not in orjson.dumps(held).decode()  # the policy gate dropped it

        forgotten = _agent(envs[0], "forget", "--yes")
        assert forgotten["deleted"] == {"batches": 1, "snapshots": 1}
        assert forgotten["new_install_id"] != old_id
        after = _agent(envs[0], "remote")
        assert after["install_id"] == forgotten["new_install_id"]
        assert (after["batches"], after["snapshots"], after["report_days"]) == ([], [], [])
        assert _active_installs(collector, 1) == 1
        other = _agent(envs[1], "remote")
        assert len(other["snapshots"]) == 1

    # Nothing about the erased install is left in any table of the database file.
    import duckdb

    con = duckdb.connect(str(collector.db), read_only=True)
    try:
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            columns = [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]
            if "install_id" in columns:
                rows = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST(install_id AS VARCHAR) = ?', [old_id])
                assert rows.fetchone() == (0,), table
    finally:
        con.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_agent_cli_fails_over_to_the_second_collector_of_a_pair(tmp_path: Path) -> None:
    """`TELEMETRY_ENDPOINT` lists a dead collector then a real one: the batch goes to the real one at once."""
    usage = tmp_path / "usage.json"
    usage.write_text('{"projects": 7, "deployments": 1234}')
    dead = f"127.0.0.1:{_closed_port()}"
    with running_collector(tmp_path) as collector:
        env = _agent_env(tmp_path / "install", f"http://{dead},{collector.url}", usage)
        env["TELEMETRY_BACKOFF_BASE_S"] = "600"  # a backoff would stall the send: failover must not wait
        _agent(env, "collect")
        _agent(env, "seal")
        sent = _agent(env, "send")
        assert [r["outcome"] for r in sent["results"]] == ["delivered"]
        live = collector.url.removeprefix("http://")
        history = _agent(env, "history")
        assert [(h["endpoint"], h["outcome"], h["wait_s"]) for h in history] == [
            (dead, "retry", 0.0),
            (live, "delivered", None),
        ]
        status = _agent(env, "status")
        assert status["endpoint"] == collector.url
        assert _agent(env, "remote")["install_id"] == status["install_id"]
