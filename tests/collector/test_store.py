"""The embedded store on a real DuckDB file: migrations, spool replay after crashes, a database held elsewhere.

What both backends promise (dedup, tokens, erasure, import) is in tests/storage/test_contract.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from collector import CollectorConfig, ConfigError
from collector.storage.embedded.spool import segment_name
from collector.storage.embedded.store import EmbeddedStore as Store
from collector.storage.migrations import migrations
from tests.collector.conftest import batch_obj, canonical


def _line(obj: dict[str, Any]) -> bytes:
    body = canonical(obj)
    line = {"received_at": "2026-11-29T05:00:00Z", "sha256": hashlib.sha256(body).hexdigest(),
            "body_bytes": len(body), "batch": orjson.loads(body)}  # fmt: skip
    return orjson.dumps(line) + b"\n"


def test_store_open_applies_migrations_once(config: CollectorConfig) -> None:
    """Every sql/NNN_*.sql file is recorded in schema_migrations, and reopening applies nothing again."""
    with Store.open(config):
        pass
    with Store.open(config) as store:
        rows = store.read_sync("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in migrations()]
    assert rows[0] == (1, "001_initial.sql")


def test_store_replay_loads_segments_and_drops_a_torn_last_line(config: CollectorConfig) -> None:
    """A segment left by a crash is loaded on open, without its torn (never acknowledged) last line."""
    with Store.open(config):
        pass
    spool = config.spool_path
    a, b = batch_obj(), batch_obj()
    torn = _line(batch_obj())[:-40]
    (spool / segment_name(7)).write_bytes(_line(a) + _line(b) + torn)
    with Store.open(config) as store:
        ids = {r[0] for r in store.read_sync("SELECT CAST(batch_id AS VARCHAR) FROM batches")}
        assert ids == {a["batch_id"], b["batch_id"]}
        assert store.read_sync("SELECT count(*) FROM snapshots") == [(48,)]
    assert not (spool / segment_name(7)).exists()


def test_store_replay_skips_a_segment_already_loaded(config: CollectorConfig) -> None:
    """A segment committed but not yet deleted when the process died is deleted on open, not loaded twice."""
    obj = batch_obj()
    with Store.open(config) as store:
        staged = [_line(obj)]
        store.commit_staged(staged)
        name = store.read_sync("SELECT max(name) FROM loaded_segments")[0][0]
    (config.spool_path / name).write_bytes(_line(obj))  # as if the unlink never happened
    with Store.open(config) as store:
        assert store.read_sync("SELECT count(*) FROM batches") == [(1,)]
    assert not (config.spool_path / name).exists()


def test_store_second_open_of_the_same_spool_fails_fast(config: CollectorConfig) -> None:
    """Opening a database whose spool another Store holds raises a one-line ConfigError naming the problem."""
    with Store.open(config), pytest.raises(ConfigError, match="in use by another process"), Store.open(config):
        pass


def test_store_open_reports_a_database_held_by_another_process(config: CollectorConfig, tmp_path: Path) -> None:
    """DuckDB's lock error from another process becomes 'database ... is in use by another process'."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys; c=duckdb.connect({str(config.db_path)!r}); print('ok', flush=True);"
         " sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(ConfigError, match=r"^database .* is in use by another process$"), Store.open(config):
            pass
    finally:
        holder.communicate("")
    with duckdb.connect(str(config.db_path)) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
