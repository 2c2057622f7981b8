"""The ``token`` and ``report`` commands as real subprocesses, on a database file and through a running collector."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analytics import fleet as f
from tests.collector.conftest import start_server, stop_server
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
RANGE = ["--from", "2026-05-01", "--to", "2026-06-30"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m collector ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database file holding the test fleet, stored with the offline ``import`` command."""
    files = tmp_path / "batches"
    files.mkdir()
    for n, body in enumerate(body for install in f.make_fleet() for body in f.batches(install)):
        (files / f"{n:04}.json").write_bytes(body)
    path = tmp_path / "cli.duckdb"
    done = cli("import", "--db", str(path), str(files))
    assert done.returncode == 0, done.stderr
    return path


def test_token_commands_on_a_database_file(tmp_path: Path) -> None:
    """token create prints the token once (stdout), list shows ids and roles only, revoke takes the id."""
    path = str(tmp_path / "t.duckdb")
    created = cli("token", "create", "--role", "analyst", "--db", path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    token_id = token.split("_")[1]
    assert token_id in created.stderr
    listed = cli("token", "list", "--db", path)
    assert token_id in listed.stdout
    assert "analyst" in listed.stdout
    assert token not in listed.stdout
    assert cli("token", "revoke", token_id, "--db", path).returncode == 0
    again = cli("token", "revoke", token_id, "--db", path)
    assert again.returncode == 2
    assert "no active token" in again.stderr
    assert cli("token", "create", "--role", "root", "--db", path).returncode == 2


def test_token_create_takes_a_label_and_list_shows_it_with_the_last_use(tmp_path: Path) -> None:
    """token create --label stores what the token is for; token list shows label and last use ("-" until used)."""
    path = str(tmp_path / "t.duckdb")
    created = cli("token", "create", "--role", "analyst", "--label", "pm dashboard", "--db", path)
    assert created.returncode == 0, created.stderr
    listed = cli("token", "list", "--db", path).stdout
    header, _, row = listed.splitlines()[:3]
    assert header.split() == ["token_id", "role", "label", "created_at", "last_used_on", "revoked_at"]
    assert "pm dashboard" in row
    bad = cli("token", "create", "--role", "analyst", "--label", "x;y", "--db", path)
    assert bad.returncode == 2
    assert "label" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_report_from_a_database_file(db: Path) -> None:
    """report --db prints a table by default, and JSON/CSV whose rows match the Python computation."""
    table = cli("report", "active-installs", "--db", str(db), *RANGE)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split() == ["period", "installs"]
    assert "fewer than 5 installs" in table.stdout

    answer = json.loads(cli("report", "active-installs", "--db", str(db), *RANGE, "--format", "json").stdout)
    expected = f.active(f.make_fleet(), "week")
    assert {r["period"]: r["installs"] for r in answer["rows"] if r["installs"]} == {
        p.isoformat(): n for p, n in expected.items() if n >= f.K
    }
    done = cli("report", "versions", "--db", str(db), *RANGE, "--interval", "month", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["group"] for r in rows} == {"deployserver 4.2.0", "deployserver 4.3.0", "(other)"}
    assert "merged into '(other)'" in done.stderr
    quiet = cli("report", "active-installs", "--db", str(db), *RANGE, "--interval", "month")
    assert "fewer than" not in quiet.stdout  # nothing suppressed: no note
    assert (
        cli("report", "active-installs", "--db", str(db), *RANGE, "--format", "csv", "--interval", "month").stderr == ""
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "versions", "--from", "2026-02-30"], "from: expected a date"),
        (["report", "versions", "--product", "No Such"], "product"),
        (["report", "raw"], "invalid choice"),
        (["report", "versions", "--interval", "year"], "invalid choice"),
        (["report", "versions"], "does not exist"),
    ],
)
def test_report_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    """A bad report name, date, product, interval or database path exits 2 with a one-line message, no traceback."""
    done = cli(*args, "--db", str(tmp_path / "none.duckdb"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_report_through_a_running_collector(db: Path) -> None:
    """report --url gives the same rows as --db; a wrong token exits 2, an unreachable collector 1, a held file 1."""
    offline = json.loads(cli("report", "deployments", "--db", str(db), *RANGE, "--format", "json").stdout)
    token = cli("token", "create", "--role", "analyst", "--db", str(db)).stdout.strip()
    proc, url = start_server(db)
    try:
        online = cli("report", "deployments", "--url", url, "--token", token, *RANGE, "--format", "json")
        assert online.returncode == 0, online.stderr
        assert json.loads(online.stdout)["rows"] == offline["rows"]
        env = {"TELEMETRY_TOKEN": token, "PATH": "/usr/bin:/bin"}
        as_csv = cli("report", "deployments", "--url", url, *RANGE, "--format", "csv", env=env)
        assert as_csv.returncode == 0, as_csv.stderr
        assert len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == len(offline["rows"])
        assert as_csv.stderr.startswith("Periods of fewer than 5 installs: ")
        table = cli("report", "deployments", "--url", url, "--token", token, *RANGE)
        assert "p50" in table.stdout

        wrong = cli("report", "deployments", "--url", url, "--token", "tct_00000000_" + "A" * 43)
        assert wrong.returncode == 2
        assert "HTTP 401" in wrong.stderr
        held = cli("report", "deployments", "--db", str(db))
        assert held.returncode == 1
        assert "in use" in held.stderr
    finally:
        code, _ = stop_server(proc)
    assert code == 0
    gone = cli("report", "deployments", "--url", url, "--token", token)
    assert gone.returncode == 1
    assert "cannot reach" in gone.stderr


def test_report_table_marks_the_partial_period(db: Path) -> None:
    """Today's week is partial: the heading says how much of it has passed, and so does its row."""
    today = dt.datetime.now(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday())
    elapsed = today.weekday() + 1
    done = cli("report", "active-installs", "--db", str(db), "--from", (monday - dt.timedelta(days=7)).isoformat())
    assert done.returncode == 0, done.stderr
    heading, header, _, *rows = done.stdout.splitlines()
    sunday = monday + dt.timedelta(days=6)
    assert heading == (
        f"Active installs, weekly, {monday - dt.timedelta(days=7)} to {sunday} (today is {today}: the week from"
        f" {monday} is partial, {elapsed} of 7 days), all products"
    )
    assert header.split() == ["period", "installs", "partial"]
    assert rows[-1].split() == [monday.isoformat(), "0", str(elapsed), "of", "7", "days"]
    answer = json.loads(cli("report", "active-installs", "--db", str(db), "--format", "json").stdout)
    assert answer["today"] == today.isoformat()
    assert answer["rows"][-1] == {"period": monday.isoformat(), "installs": 0, "suppressed": False, "partial": True,
                                  "days_elapsed": elapsed, "days_total": 7}  # fmt: skip


def test_report_for_a_product_without_data_exits_2(db: Path) -> None:
    """--product nosuch is a usage error (exit 2, one line), over --db and through --url alike."""
    done = cli("report", "versions", "--db", str(db), "--product", "nosuch")
    assert done.returncode == 2
    assert (
        done.stderr == "telemetry-collector: product: no such product: no install of 'nosuch' has sent data"
        " (GET /v1/reports lists the products)\n"
    )
    token = cli("token", "create", "--role", "analyst", "--db", str(db)).stdout.strip()
    proc, url = start_server(db)
    try:
        online = cli("report", "versions", "--url", url, "--token", token, "--product", "nosuch")
        assert online.returncode == 2
        assert "HTTP 404: no such product" in online.stderr
    finally:
        code, _ = stop_server(proc)
    assert code == 0
