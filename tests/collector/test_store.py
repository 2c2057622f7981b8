"""The Store on a real DuckDB file: migrations, spool replay after crashes, dedup of old batches, the API others use."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from collector import CollectorConfig, ConfigError, create_app
from collector.errors import ConflictError
from collector.ingest import check_batch
from collector.loader import migrations
from collector.spool import segment_name
from collector.store import Store
from tests.collector.conftest import BATCHES, batch_obj, canonical, count_rows, json_headers


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


def test_store_write_commits_or_rolls_back(config: CollectorConfig) -> None:
    """write_sync runs fn in one transaction: a failure leaves nothing behind, success is visible to reads."""

    def ok(con: Any) -> int:
        con.execute("INSERT INTO tokens VALUES ('t1', 'analyst', 'x', now()::TIMESTAMP, NULL)")
        return 1

    def boom(con: Any) -> None:
        con.execute("INSERT INTO tokens VALUES ('t2', 'analyst', 'y', now()::TIMESTAMP, NULL)")
        raise RuntimeError("boom")

    with Store.open(config) as store:
        assert store.write_sync(ok) == 1
        with pytest.raises(RuntimeError):
            store.write_sync(boom)
        names, rows = store.read_columns_sync("SELECT token_id, role FROM tokens")
    assert names == ["token_id", "role"]
    assert rows == [("t1", "analyst")]


def test_store_dedups_batches_older_than_the_window_through_duckdb(config: CollectorConfig) -> None:
    """A batch created before the dedup window is not in memory after a restart but is still found in DuckDB."""
    late = datetime(2027, 6, 1, tzinfo=UTC)  # the golden batch is from 2026-11: far outside 35 days
    obj = batch_obj()
    body = canonical(obj)
    sha = hashlib.sha256(body).hexdigest()
    with Store.open(config, clock=lambda: late) as store:
        batch, parsed = check_batch(body, now=late, max_future_s=0)
        staged: list[bytes] = []
        assert store.import_batch(batch, parsed, sha, len(body), staged).duplicate is False
        store.commit_staged(staged)
    with Store.open(config, clock=lambda: late) as store:
        assert store.dedup_entries == 0
        staged = []
        assert store.import_batch(batch, parsed, sha, len(body), staged).duplicate is True
        with pytest.raises(ConflictError):
            store.import_batch(batch, parsed, "0" * 64, len(body), staged)
        assert staged == []


async def test_store_forget_batch_ids_lets_a_deleted_batch_be_stored_again(aiohttp_client: Any, tmp_path: Path) -> None:
    """After a data-subject deletion and forget_batch_ids, the same batch is stored anew (not a duplicate)."""
    config = CollectorConfig(db_path=tmp_path / "t.duckdb")
    client = await aiohttp_client(create_app(config))
    from collector.keys import STORE

    store = client.app[STORE]
    body = canonical(batch_obj())
    assert (await (await client.post(BATCHES, data=body, headers=json_headers())).json())["duplicate"] is False
    await store.sync()
    batch_id = orjson.loads(body)["batch_id"]
    await store.write(lambda con: con.execute("DELETE FROM batches WHERE batch_id = ?", [batch_id]))
    store.forget_batch_ids([batch_id])
    assert (await (await client.post(BATCHES, data=body, headers=json_headers())).json())["duplicate"] is False
    await client.close()
    assert count_rows(config.db_path) == 1


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
