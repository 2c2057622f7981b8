"""serve, import, token and report against a lake with the same settings; no password or key in any output.

The settings come from the documented TELEMETRY_COLLECTOR_* variables (and flags), as an operator sets them.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.config import ENV_PREFIX
from tests.conftest import LakeServers
from tests.lake.cluster import Collector, lake_env, make_installs, run_cli
from tests.servers import S3_SECRET

pytestmark = [pytest.mark.lake, pytest.mark.slow]

PASSWORD = "pg-Secret-7f3a9"  # the test cluster trusts any password: this one must never be shown


def _with_password(env: dict[str, str]) -> dict[str, str]:
    key = ENV_PREFIX + "CATALOG"
    return {**env, key: env[key].replace("postgres@", f"postgres:{PASSWORD}@")}


def test_cli_token_import_and_report_work_against_a_lake(
    lake_servers: LakeServers, spawn: Callable[..., Collector], tmp_path: Path
) -> None:
    """token create/list/revoke, import (with duplicates) and report all take the lake settings."""
    env = _with_password(lake_env(lake_servers.config()))
    admin = run_cli(env, "token", "create", "--role", "admin")
    assert admin.returncode == 0, admin.stderr
    analyst = run_cli(env, "token", "create", "--role", "analyst")
    token_id = analyst.stderr.split("token ")[1].split(";")[0]
    listed = run_cli(env, "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert token_id in listed.stdout

    installs = make_installs(count=6, batches_each=3)
    files = tmp_path / "export"
    files.mkdir()
    for install in installs:
        for batch_id, body in install.bodies.items():
            (files / f"{batch_id}.json").write_bytes(body)
    first = run_cli(env, "import", str(files))
    assert first.returncode == 0, first.stderr
    assert "accepted          18" in first.stdout
    again = run_cli(env, "import", str(files))
    assert "duplicates        18" in again.stdout

    report = run_cli(env, "report", "active-installs", "--from", "2026-11-01", "--to", "2026-11-30",
                     "--interval", "month", "--format", "json")  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert [row["installs"] for row in json.loads(report.stdout)["rows"]] == [6]

    collector = spawn(env)  # a running collector sees what the CLI wrote
    token = analyst.stdout.strip()
    request = urllib.request.Request(
        f"{collector.url}/v1/reports/active-installs?from=2026-11-01&to=2026-11-30&interval=month",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # a local test server
        assert [row["installs"] for row in json.loads(resp.read())["rows"]] == [6]
    revoked = run_cli(env, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    for done in (admin, analyst, listed, first, again, report, revoked):
        assert PASSWORD not in done.stdout + done.stderr
        assert S3_SECRET not in done.stdout + done.stderr


def test_cli_lake_errors_name_the_part_and_show_no_credential(lake_servers: LakeServers) -> None:
    """A wrong catalog host, a missing setting or a bad S3 key: one line, exit 1 or 2, no password or key shown."""
    env = _with_password(lake_env(lake_servers.config()))
    wrong_host = {**env, ENV_PREFIX + "CATALOG": f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere"}
    done = run_cli(wrong_host, "token", "list")
    assert done.returncode == 2
    assert "cannot open the lake (postgresql://127.0.0.1:1/nowhere" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert PASSWORD not in done.stderr

    missing = {k: v for k, v in env.items() if k != ENV_PREFIX + "DATA_PATH"}
    done = run_cli(missing, "token", "list")
    assert (done.returncode, done.stderr.strip()) == (
        2, "telemetry-collector: data_path: required with store = ducklake (s3://bucket/prefix/ or a directory)"
    )  # fmt: skip

    # A wrong S3 key: a new lake cannot create its tables, an existing one cannot read its schema version, so
    # the collector does not start (one line, exit 1, the key not shown); a store that fails later is survived
    # (tests/lake/test_outage.py).
    bad_key = {**env, ENV_PREFIX + "S3_SECRET": "not-the-Secret-0000"}
    for _ in ("new lake", "existing lake"):
        done = run_cli(bad_key, "serve", "--port", "0", timeout_s=60)
        assert done.returncode == 1, done.stderr
        assert "cannot set up the lake" in done.stderr
        assert "object_store" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "not-the-Secret-0000" not in done.stderr
        assert PASSWORD not in done.stderr
        assert run_cli(env, "token", "list").returncode == 0  # creates the tables with the right key


def test_cli_serve_logs_no_credential_while_postgres_fails(lake_servers: LakeServers, tmp_path: Path) -> None:
    """Warnings logged while PostgreSQL is down quote its error without the password or the S3 key."""
    env = _with_password(lake_env(lake_servers.config(), retry_after_s="1"))
    collector = Collector(env).start()
    [install] = make_installs(count=1, batches_each=2)
    lake_servers.pg.stop("fast")
    try:
        body = next(iter(install.bodies.values()))
        request = urllib.request.Request(f"{collector.url}/v1/batches", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)  # a local test server
        assert refused.value.code == 503
        refused.value.close()  # an HTTPError holds the response's socket open
    finally:
        lake_servers.pg.start()
    code, err = collector.stop()
    assert code == 0, err
    assert PASSWORD not in err
    assert S3_SECRET not in err


@pytest.mark.parametrize("where", ["s3", "directory"])
def test_a_second_catalog_on_the_same_data_path_is_refused(
    lake_servers: LakeServers, tmp_path: Path, where: str
) -> None:
    """Maintenance deletes Parquet files its catalog does not list: a new catalog on a used data path must not start."""
    first = lake_servers.config()
    if where == "directory":
        first = dataclasses.replace(first, data_path=str(tmp_path / "lake"))
    env = lake_env(first)
    assert run_cli(env, "token", "list").returncode == 0  # the first catalog marks the path as its own
    assert run_cli(env, "token", "list").returncode == 0  # and finds its own marker again
    other = lake_servers.config()  # a new, empty catalog database
    stolen = {**lake_env(other), ENV_PREFIX + "DATA_PATH": first.data_path or ""}
    for command in (["token", "list"], ["serve", "--port", "0"]):
        done = run_cli(stolen, *command, timeout_s=60)
        assert done.returncode == 2, done.stderr
        path = (first.data_path or "").rstrip("/") + "/"
        assert done.stderr.startswith(f"telemetry-collector: data_path {path} belongs to another lake"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert run_cli(env, "token", "list").returncode == 0
    if where == "directory":
        assert (tmp_path / "lake" / "telemetry-lake-id").read_text().strip() in done.stderr
