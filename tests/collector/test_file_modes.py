"""Every file the collector creates is 0600 and every directory 0700, under the usual umask 022.

The commands run as real subprocesses started with umask 022 (what a shell or a service manager
usually passes down), and everything they leave under their data directory is checked: the DuckDB
file and its .wal, the spool directory, its lock and segments, backups.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.collector.conftest import BATCHES, batch_obj, canonical
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _modes(root: Path) -> dict[str, str]:
    """``{relative path: octal mode}`` of everything under ``root`` (itself excluded)."""
    found = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root)) + ("/" if path.is_dir() else "")] = oct(path.lstat().st_mode & 0o777)
    return found


def _loose(root: Path) -> dict[str, str]:
    return {name: mode for name, mode in _modes(root).items() if int(mode, 8) & 0o077}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, umask=0o022, check=False)  # fmt: skip


def test_files_modes_of_a_serving_collector_are_private(tmp_path: Path) -> None:
    """serve (umask 022): the database, its .wal, the spool directory, lock and segments are 0600/0700."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "t.duckdb"
    created = _run("token", "create", "--role", "admin", "--db", str(db))
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip()
    # A long load interval keeps the first segment open on disk while the files are looked at.
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", str(db), "--port", "0", "--load-interval-s", "60",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, umask=0o022,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        match = re.search(r"listening on (http://\S+)", proc.stdout.readline() if ready else "")
        assert match, "the collector did not start"
        request = urllib.request.Request(match[1] + BATCHES, data=canonical(batch_obj()),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with _OPENER.open(request, timeout=30) as resp:
            assert resp.status == 200
        # A write through the writer thread (a new token) puts a .wal beside the database.
        request = urllib.request.Request(match[1] + "/v1/tokens", data=b'{"role": "analyst"}',
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {admin}"})  # fmt: skip
        with _OPENER.open(request, timeout=30) as resp:
            assert resp.status == 201
        segments = list((data / "t.duckdb.spool").glob("*.ndjson"))
        assert segments, "the acknowledged batch waits in an open segment"
        names = set(_modes(data))
        assert {"t.duckdb", "t.duckdb.wal", "t.duckdb.spool/", "t.duckdb.spool/lock"} <= names
        assert _loose(data) == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _loose(data) == {}


def test_file_modes_of_import_token_and_backup_are_private(tmp_path: Path) -> None:
    """token create, import and backup (umask 022) create a database, spool and backup no one else can read."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "t.duckdb"
    assert _run("token", "create", "--role", "admin", "--db", str(db)).returncode == 0
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.json").write_bytes(canonical(batch_obj()))
    result = _run("import", str(export), "--db", str(data / "imported.duckdb"))
    assert result.returncode == 0, result.stderr
    assert {"t.duckdb", "imported.duckdb", "imported.duckdb.spool/"} <= set(_modes(data))
    assert _loose(data) == {}
    backups = data / "backups"
    backups.mkdir(mode=0o700)
    result = _run("backup", str(backups / "copy.duckdb"), "--db", str(data / "imported.duckdb"))
    assert result.returncode == 0, result.stderr
    assert "backups/copy.duckdb" in _modes(data)
    assert _loose(data) == {}
    assert os.stat(backups / "copy.duckdb").st_mode & 0o777 == 0o600
