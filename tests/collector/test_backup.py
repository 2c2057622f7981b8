"""telemetry-collector backup: a consistent copy of a serving collector's database, and what restoring it gives.

Real processes throughout: the collector serves a real DuckDB file, the backup command runs beside it,
and the restored copy is served by a second collector, which must answer exactly as the first did.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from collector import CollectorConfig, open_storage
from collector.reports import INTERVALS, REPORTS
from collector.storage.tokens import create_token
from tests.analytics.fleet import Install, batches, make_fleet
from tests.collector.conftest import BATCHES, start_server, stop_server
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(url: str, *, bearer: str = "", body: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with _OPENER.open(request, timeout=60) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _cli(*args: str, token: str = "") -> subprocess.Popen[str]:
    env = {"TELEMETRY_TOKEN": token, "PATH": "/usr/bin:/bin", "no_proxy": "*"}
    return subprocess.Popen([sys.executable, "-m", "collector", "backup", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)  # fmt: skip


def _tokens(db: Path) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC)
    with open_storage(CollectorConfig(db_path=db)) as store:
        _, admin = store.write_sync(lambda con: create_token(con, "admin", now))
        _, analyst = store.write_sync(lambda con: create_token(con, "analyst", now))
    return admin, analyst


def _every_answer(url: str, analyst: str, admin: str, fleet: list[Install]) -> dict[str, Any]:
    """Every report for every interval (all products, and each product), the report list, tokens, one install."""
    answers: dict[str, Any] = {"list": _call(f"{url}/v1/reports", bearer=analyst)}
    for name in REPORTS:
        for interval in INTERVALS:
            for product in ("", "deployserver", "buildfarm"):
                query = {"from": "2026-05-01", "to": "2026-06-30", "interval": interval, "product": product}
                path = f"/v1/reports/{name}?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
                answers[path] = _call(url + path, bearer=analyst)
                assert answers[path][0] == 200, answers[path]
    status, listed = _call(f"{url}/v1/tokens", bearer=admin)
    # last_used_on is recorded in the background once a day per token, so whether this run's first use of a
    # token shows yet is a race, on either collector: the rest of each token is compared.
    answers["tokens"] = status, [{k: v for k, v in t.items() if k != "last_used_on"} for t in listed["tokens"]]
    answers["install"] = _call(f"{url}/v1/installs/{fleet[3].install_id}", bearer=fleet[3].secret)
    return answers


def test_backup_of_a_serving_collector_answers_every_report_as_the_original(tmp_path: Path) -> None:
    """A backup made while the collector serves (and answers posts) restores to a collector with the same answers."""
    db = tmp_path / "original.duckdb"
    admin, analyst = _tokens(db)
    fleet = make_fleet()
    bodies = [body for install in fleet for body in batches(install)]
    # Every report of every interval and product, twice: more than one token may ask a minute by default.
    proc, url = start_server(
        db, "--load-interval-s", "0.1", "--log-level", "warning", "--max-reports-per-min", "100000"
    )
    try:
        for body in bodies:
            assert _call(url + BATCHES, body=body)[0] == 200
        target = tmp_path / "copies" / "backup.duckdb"
        target.parent.mkdir()
        backup = _cli(str(target), "--url", url, token=admin)
        during: list[tuple[int, Any]] = []
        while backup.poll() is None:  # the collector keeps answering while the copy is made
            during.append(_call(url + BATCHES, body=bodies[len(during) % len(bodies)]))
        _, err = backup.communicate()
        assert backup.returncode == 0, err
        assert all(status == 200 and answer["duplicate"] for status, answer in during)
        assert f"backup written to {target}: {len(bodies)} batches" in err
        assert target.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in target.parent.iterdir()] == ["backup.duckdb"]  # no partial file left behind
        original = _every_answer(url, analyst, admin, fleet)
    finally:
        code, err = stop_server(proc)
    assert code == 0, err

    restored = tmp_path / "restored.duckdb"
    shutil.copy(target, restored)  # the documented restore: the backup in place of the database file
    proc, url = start_server(restored, "--log-level", "warning", "--max-reports-per-min", "100000")
    try:
        again = _every_answer(url, analyst, admin, fleet)
    finally:
        code, err = stop_server(proc)
    assert code == 0, err
    assert again == original
    with duckdb.connect(str(restored), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (len(bodies),)


def test_backup_needs_an_admin_token_and_a_new_file(tmp_path: Path) -> None:
    """An analyst token is refused (403, exit 2); an existing PATH is never overwritten (exit 2)."""
    db = tmp_path / "t.duckdb"
    admin, analyst = _tokens(db)
    proc, url = start_server(db, "--log-level", "warning")
    try:
        refused = _cli(str(tmp_path / "b.duckdb"), "--url", url, token=analyst)
        _, err = refused.communicate(timeout=60)
        assert (refused.returncode, err.strip()) == (2, "telemetry-collector: HTTP 403: this needs an admin token")
        existing = tmp_path / "exists.duckdb"
        existing.write_bytes(b"keep me")
        kept = _cli(str(existing), "--url", url, token=admin)
        _, err = kept.communicate(timeout=60)
        assert kept.returncode == 2
        assert err.strip() == f"telemetry-collector: {existing} exists: a backup is always written to a new file"
        assert existing.read_bytes() == b"keep me"
        assert not (tmp_path / "b.duckdb").exists()
    finally:
        code, _ = stop_server(proc)
    assert code == 0


def test_backup_of_a_stopped_collector_copies_its_file(tmp_path: Path) -> None:
    """--db copies a database no collector holds (spool replayed first); a held one is refused with a hint."""
    db = tmp_path / "t.duckdb"
    _tokens(db)
    done = _cli(str(tmp_path / "copy.duckdb"), "--db", str(db))
    _, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    with duckdb.connect(str(tmp_path / "copy.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM tokens").fetchone() == (2,)
    proc, _ = start_server(db, "--log-level", "warning")
    try:
        held = _cli(str(tmp_path / "other.duckdb"), "--db", str(db))
        _, err = held.communicate(timeout=60)
        assert held.returncode == 1
        assert err.strip() == (f"telemetry-collector: database {db} is in use by another process (a running"
                               " collector holds it: back it up through it with --url URL)")  # fmt: skip
    finally:
        code, _ = stop_server(proc)
    assert code == 0
