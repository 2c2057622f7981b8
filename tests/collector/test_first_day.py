"""A vendor's first day with ``serve``, ``token`` and ``import``, as real subprocesses: what they say and leave."""

from __future__ import annotations

import asyncio
import gzip
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.collector.conftest import batch_obj, canonical, count_rows, start_server, stop_server
from tests.conftest import ROOT, load_golden

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, cwd=ROOT, timeout=90
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM the collector; its exit code and what it printed on stdout after the listening line."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.send_signal(signal.SIGTERM)
    # Through the same text stream start_server read from: its buffer may hold the lines after the first.
    out = proc.stdout.read()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_serve_prints_the_dashboard_and_how_to_create_the_first_token(tmp_path: Path) -> None:
    """On an empty database serve names the dashboard and the token step; with a token, only the dashboard."""
    db = tmp_path / "t.duckdb"
    proc, url = start_server(db)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as found:
            opener.open(f"{url}/", timeout=10)
        found.value.close()
        assert (found.value.code, found.value.headers["Location"]) == (302, "/dashboard")
    finally:
        code, out = _stop(proc)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"telemetry-collector: dashboard at {url}/dashboard (reports need a token)"
    assert "no tokens yet" in lines[1]
    assert lines[2].strip() == f"telemetry-collector token create --role admin --db {db}"

    created = _cli("token", "create", "--role", "admin", "--db", str(db))
    assert created.returncode == 0, created.stderr
    proc, url = start_server(db)
    code, out = _stop(proc)
    assert code == 0
    assert out.splitlines() == [f"telemetry-collector: dashboard at {url}/dashboard (reports need a token)"]


def test_serve_on_a_taken_port_leaves_no_new_database(tmp_path: Path) -> None:
    """serve exits 1 when its port is taken, and removes the database, WAL and spool that this start created."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _cli("serve", "--db", str(tmp_path / "new.duckdb"), "--port", port)
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []

        existing = tmp_path / "old.duckdb"
        assert _cli("token", "create", "--role", "admin", "--db", str(existing)).returncode == 0
        before = sorted(p.name for p in tmp_path.iterdir())
        assert _cli("serve", "--db", str(existing), "--port", port).returncode == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # what was there stays


def test_commands_on_a_database_a_collector_holds_say_to_use_url(tmp_path: Path) -> None:
    """token create and import --db on a held file exit 1 with one line saying to use --url (or stop the collector)."""
    db = tmp_path / "t.duckdb"
    proc, _ = start_server(db)
    try:
        held = f"telemetry-collector: database {db} is in use by another process"
        token = _cli("token", "create", "--role", "admin", "--db", str(db))
        assert token.returncode == 1
        assert token.stderr.strip() == (
            f"{held} (a running collector holds it: go through it with --url URL --token ADMIN_TOKEN"
            " (an admin token), or stop the collector first)"
        )
        imported = _cli("import", str(tmp_path), "--db", str(db))
        assert imported.returncode == 1
        assert imported.stderr.strip() == (
            f"{held} (a running collector holds it: import through it with --url URL (e.g. http://127.0.0.1:8080),"
            " or stop it first)"
        )
    finally:
        code, _ = stop_server(proc)
    assert code == 0


def test_import_url_posts_each_file_to_a_running_collector(tmp_path: Path) -> None:
    """import --url stores plain and gzip'd files through POST /v1/batches, counts duplicates and lists rejects."""
    files = tmp_path / "export"
    files.mkdir()
    good = canonical(batch_obj())
    (files / "a.json").write_bytes(good)
    (files / "b.json.gz").write_bytes(gzip.compress(canonical(batch_obj())))
    (files / "c.json").write_bytes(good)
    (files / "d.json").write_bytes(load_golden("v1/invalid/unknown-metric.json"))
    db = tmp_path / "t.duckdb"
    proc, url = start_server(db)
    try:
        done = _cli("import", "--url", url, str(files))
        assert done.returncode == 2, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:3] == [f"{'accepted':<12}{2:>8}", f"{'duplicates':<12}{1:>8}", f"{'rejected':<12}{1:>8}"]
        assert "d.json: unknown_metric: HTTP 422:" in done.stdout
        again = _cli("import", "--url", url, str(files / "a.json"))
        assert again.returncode == 0
        assert again.stdout.splitlines()[:2] == [f"{'accepted':<12}{0:>8}", f"{'duplicates':<12}{1:>8}"]
    finally:
        code, _ = stop_server(proc)
    assert code == 0
    assert count_rows(db) == 2
    gone = _cli("import", "--url", url, str(files / "a.json"))
    assert gone.returncode == 1
    assert f"cannot reach {url}/v1/batches" in gone.stderr


async def test_import_url_retries_a_busy_collector(tmp_path: Path) -> None:
    """A 503 with Retry-After is retried like the agent does; the batch is then stored once."""
    answers = [web.json_response({"error": {"code": "overloaded", "message": "busy", "path": ""}}, status=503,
                                 headers={"Retry-After": "1"})]  # fmt: skip
    seen: list[bytes] = []

    async def batches(request: web.Request) -> web.Response:
        seen.append(await request.read())
        if answers:
            return answers.pop()
        receipt = {"batch_id": "x", "sha256": "0" * 64, "snapshots": 24, "duplicate": False}
        return web.json_response(receipt)

    app = web.Application()
    app.router.add_post("/v1/batches", batches)
    body = canonical(batch_obj())
    (tmp_path / "a.json").write_bytes(body)
    async with TestServer(app, host="127.0.0.1") as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "import", "--url", str(server.make_url("/")), str(tmp_path / "a.json"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[0] == f"{'accepted':<12}{1:>8}"
    assert seen == [body, body]


@pytest.mark.parametrize("flag", ["--host", "--port"])
def test_import_takes_no_listen_settings(tmp_path: Path, flag: str) -> None:
    """import and copy-to-lake do not listen, so --host and --port are refused instead of ignored."""
    for command in (["import", str(tmp_path)], ["copy-to-lake"]):
        done = _cli(*command, flag, "1")
        assert done.returncode == 2
        assert f"unrecognized arguments: {flag} 1" in done.stderr


def test_import_url_and_db_are_exclusive(tmp_path: Path) -> None:
    """Naming both a running collector and a database file is a usage error."""
    done = _cli("import", "--url", "http://127.0.0.1:9", "--db", str(tmp_path / "t.duckdb"), str(tmp_path))
    assert done.returncode == 2
    assert "not both" in done.stderr
