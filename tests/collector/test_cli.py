"""telemetry-collector serve/import as real subprocesses: exit codes, one-line errors, the import summary."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from collector import CollectorConfig
from collector.config import ENV_PREFIX
from tests.collector.conftest import batch_obj, canonical, count_rows, start_server, stop_server
from tests.conftest import ROOT, load_golden


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_docs_describe_every_setting_and_env_var() -> None:
    """docs/collector.md names every CollectorConfig field and its TELEMETRY_COLLECTOR_ variable."""
    text = (ROOT / "docs/collector.md").read_text("utf-8")
    missing = [
        f.name
        for f in dataclasses.fields(CollectorConfig)
        if f"`{f.name}`" not in text or f"`{ENV_PREFIX}{f.name.upper()}`" not in text
    ]
    assert not missing


def test_cli_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    """A bad flag value is a one-line error naming the setting, exit 2, no traceback."""
    result = _cli("serve", "--db", str(tmp_path / "t.duckdb"), "--port", "abc")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_second_collector_on_the_same_file_fails_fast(tmp_path: Path) -> None:
    """While one collector serves a file, a second serve or import exits 1 at once with 'in use by another process'."""
    db = tmp_path / "t.duckdb"
    proc, _ = start_server(db)
    try:
        for args in (("serve", "--db", str(db), "--port", "0"), ("import", str(tmp_path), "--db", str(db))):
            result = _cli(*args)
            assert result.returncode == 1
            assert result.stderr.strip().startswith(
                f"telemetry-collector: database {db} is in use by another process ("
            )
    finally:
        code, _ = stop_server(proc)
    assert code == 0


def test_cli_import_stores_valid_files_and_reports_rejects(tmp_path: Path) -> None:
    """import stores plain and gzip'd batches once, counts duplicates, lists rejected files, and exits 2."""
    files = tmp_path / "export"
    files.mkdir()
    good = canonical(batch_obj())
    (files / "a.json").write_bytes(good)
    (files / "b.json.gz").write_bytes(gzip.compress(canonical(batch_obj())))
    (files / "c.json").write_bytes(good)  # the same batch again: a duplicate
    (files / "d.json").write_bytes(load_golden("v1/invalid/unknown-metric.json"))
    db = tmp_path / "t.duckdb"
    result = _cli("import", str(files), "--db", str(db))
    assert result.returncode == 2, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"{'accepted':<12}{2:>8}", f"{'duplicates':<12}{1:>8}", f"{'rejected':<12}{1:>8}"]
    assert "d.json: unknown_metric" in result.stdout
    assert count_rows(db) == 2
    again = _cli("import", str(files / "a.json"), "--db", str(db))
    assert again.returncode == 0
    assert count_rows(db) == 2
