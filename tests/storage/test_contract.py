"""One contract for the storage interface, run on both backends: the embedded file and a real DuckLake.

The lake runs on a real PostgreSQL catalog and a real S3 server (SeaweedFS); see tests/servers.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from collector import CollectorConfig
from collector.errors import ConflictError
from collector.reports import ReportParams, run_report
from collector.storage import Receipt, Storage, create_storage, open_storage
from collector.storage.retention import cutoff_day
from collector.storage.tokens import create_token, list_tokens, revoke_token
from collector.web.ingest import check_batch
from schema import CATALOGUE, Batch, Catalogue, read_catalogue
from tests.collector.conftest import batch_obj, canonical
from tests.conftest import DATA

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(params=["duckdb", pytest.param("ducklake", marks=pytest.mark.lake)])
def make_config(request: pytest.FixtureRequest, tmp_path: Any) -> Callable[..., CollectorConfig]:
    """Settings for a fresh store of each backend (the lake: its own database and bucket prefix)."""
    if request.param == "duckdb":
        return lambda **changes: CollectorConfig(db_path=tmp_path / "t.duckdb", load_interval_s=0.05, **changes)
    servers = request.getfixturevalue("lake_servers")
    config = servers.config(maintenance_interval_s=3600)
    return lambda **changes: CollectorConfig(**{**_fields(config), **changes})


def _fields(config: CollectorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@pytest.fixture
async def store(make_config: Callable[..., CollectorConfig]) -> AsyncIterator[Storage]:
    """A started store of the backend under test, with the clock at NOW."""
    backend = create_storage(make_config(), clock=lambda: NOW)
    await backend.start()
    yield backend
    await backend.stop()


def _parsed(obj: dict[str, Any], catalogue: Catalogue = CATALOGUE) -> tuple[Batch, Any, str, int]:
    body = canonical(obj, catalogue)
    batch, parsed = check_batch(body, now=NOW, max_future_s=10**9, catalogue=catalogue)
    return batch, parsed, hashlib.sha256(body).hexdigest(), len(body)


async def _ingest(store: Storage, obj: dict[str, Any], catalogue: Catalogue = CATALOGUE) -> Receipt:
    return await store.ingest(*_parsed(obj, catalogue))


async def _count(store: Storage, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
    rows = await store.read(f"SELECT count(*) FROM {table} {where}", params)
    return int(rows[0][0])


async def _settle(store: Storage) -> None:
    # Embedded: acknowledged batches reach the tables after the spool loads; the lake commits before answering.
    await store.sync()


async def test_contract_ingest_stores_once_and_answers_duplicates_and_conflicts(store: Storage) -> None:
    """A new batch is stored; the same bytes again are a duplicate; the same id with other bytes is a 409."""
    obj = batch_obj()
    first = await _ingest(store, obj)
    assert first.duplicate is False
    assert first.snapshots == 24
    assert (await _ingest(store, obj)).duplicate is True
    other = dict(obj, agent_version="9.9.9")
    with pytest.raises(ConflictError):
        await _ingest(store, other)
    await _settle(store)
    assert await _count(store, "batches") == 1
    assert await _count(store, "snapshots") == 24


async def test_contract_concurrent_copies_of_one_batch_store_once(store: Storage) -> None:
    """Ten concurrent copies of one batch, among other batches: one is new, nine are duplicates, one row set."""
    obj = batch_obj()
    others = [batch_obj() for _ in range(20)]
    results = await asyncio.gather(*[_ingest(store, obj) for _ in range(10)], *[_ingest(store, o) for o in others])
    assert sum(not r.duplicate for r in results[:10]) == 1
    assert all(not r.duplicate for r in results[10:])
    await _settle(store)
    assert await _count(store, "batches", "WHERE batch_id = ?", (obj["batch_id"],)) == 1
    assert await _count(store, "snapshots") == 21 * 24


async def test_contract_tokens_write_read_and_roll_back(store: Storage) -> None:
    """write() runs in one transaction: tokens created, listed and revoked; a failing job leaves nothing."""
    token_id, _token = await store.write(lambda con: create_token(con, "analyst", NOW))
    assert [t["token_id"] for t in await store.write(list_tokens)] == [token_id]

    def boom(con: Any) -> None:
        create_token(con, "admin", NOW)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.write(boom)
    assert await store.write(lambda con: revoke_token(con, token_id, NOW)) is True
    tokens = await store.write(list_tokens)
    assert len(tokens) == 1
    assert tokens[0]["revoked_at"] is not None


async def test_contract_rollup_and_reports_answer_from_stored_batches(store: Storage) -> None:
    """After a refresh, active-installs counts every install that sent a batch, on either backend."""
    installs = [batch_obj(install_id=f"00000000-0000-4000-8000-{n:012d}") for n in range(7)]
    for obj in installs:
        await _ingest(store, obj)
    await _settle(store)
    assert await store.refresh_rollup() == 7
    assert await store.refresh_rollup() == 0
    params = ReportParams(date_from=dt.date(2026, 11, 1), date_to=dt.date(2026, 11, 30), interval="month")
    result = await run_report("active-installs", params, fetch=store.read, min_group_size=5, lost_after_days=30,
                              today=NOW.date())  # fmt: skip
    assert [row["installs"] for row in result.rows] == [7]


async def test_contract_install_data_and_erasure_cover_every_table(store: Storage) -> None:
    """install_data holds every batch of the install; erase_install leaves no row of it, and it may send again."""
    install = "00000000-0000-4000-8000-00000000abcd"
    mine = [batch_obj(install_id=install) for _ in range(3)]
    for obj in [*mine, batch_obj()]:
        await _ingest(store, obj)
    await _settle(store)
    await store.refresh_rollup()
    data = await store.install_data(install)
    assert {b["batch_id"] for b in data["batches"]} == {o["batch_id"] for o in mine}
    assert len(data["snapshots"]) == 72
    assert data["report_days"]
    assert await store.erase_install(install) == (3, 72)
    for table in ("batches", "snapshots", "report_days"):
        assert await _count(store, table, "WHERE install_id = ?", (install,)) == 0, table
    assert await _count(store, "batches") == 1
    again = await _ingest(store, mine[0])
    assert again.duplicate is False  # erased means forgotten: the same batch is new again


V2_PATH = DATA / "catalogues" / "v2.toml"


def v2_batch_obj(install_id: str) -> dict[str, Any]:
    """A batch built against catalogue version 2: usage.environments in every snapshot, host.disk.free_gib retired."""
    obj = batch_obj(install_id=install_id, schema_version=2, catalogue_version=2)
    for n, snap in enumerate(obj["snapshots"]):
        snap["metrics"].pop("host.disk.free_gib", None)
        snap["metrics"]["usage.environments"] = 3 + n % 2
    return obj


async def test_contract_metrics_of_a_newer_catalogue_are_stored_shown_and_erased(
    make_config: Callable[..., CollectorConfig],
) -> None:
    """A metric without a typed column (added in catalogue version 2) is stored, answered to the data subject
    beside the typed ones, and erased and expired with them; batches keep their catalogue version."""
    v2 = read_catalogue(V2_PATH)
    store = create_storage(make_config(catalogue=V2_PATH), clock=lambda: NOW)
    await store.start()
    try:
        install = "00000000-0000-4000-8000-00000000beef"
        old, new = batch_obj(install_id=install), v2_batch_obj(install)
        await _ingest(store, old, v2)
        await _ingest(store, new, v2)
        await _settle(store)
        data = await store.install_data(install)
        versions = {b["batch_id"]: b["catalogue_version"] for b in data["batches"]}
        assert versions == {old["batch_id"]: 1, new["batch_id"]: 2}
        by_batch = {s["batch_id"]: s for s in data["snapshots"] if s["taken_at"] == new["snapshots"][1]["taken_at"]}
        assert by_batch[new["batch_id"]]["metrics"] == new["snapshots"][1]["metrics"]
        assert by_batch[old["batch_id"]]["metrics"] == old["snapshots"][1]["metrics"]
        assert await _count(store, "snapshot_values", "WHERE install_id = ?", (install,)) == 24
        assert await store.erase_install(install) == (2, 48)
        assert await _count(store, "snapshot_values") == 0
        await _ingest(store, new, v2)  # erased means forgotten: stored again, then expired by retention
        await _settle(store)
        assert await _count(store, "snapshot_values") == 24
        assert await store.purge(dt.date(2026, 11, 30)) == (1, 24)
        assert await _count(store, "snapshot_values") == 0
    finally:
        await store.stop()


async def test_contract_purge_deletes_what_is_older_than_the_cutoff(store: Storage) -> None:
    """Retention removes batches and snapshots dated before the cutoff day and keeps the rest."""
    await _ingest(store, batch_obj())
    await _settle(store)
    assert await store.purge(cutoff_day(NOW, 400)) == (0, 0)
    assert await store.purge(dt.date(2027, 1, 1)) == (1, 24)
    assert await _count(store, "snapshots") == 0


def test_contract_offline_import_dedups_within_a_run_and_against_the_store(
    make_config: Callable[..., CollectorConfig],
) -> None:
    """import_batch/commit_staged: new batches stored, repeats in one run and against the store are duplicates."""
    config = make_config()
    a, b = batch_obj(), batch_obj()
    with open_storage(config, clock=lambda: NOW) as store:
        staged: list[Any] = []
        assert store.import_batch(*_parsed(a), staged) is None
        assert store.import_batch(*_parsed(a), staged) is not None  # a repeat within the run
        outcomes = store.commit_staged(staged)
        assert [o.duplicate for o in outcomes if isinstance(o, Receipt)] == [False]
    with open_storage(config, clock=lambda: NOW) as store:
        staged = []
        known = store.import_batch(*_parsed(a), staged)
        if known is None:  # the lake decides at commit time
            [outcome] = store.commit_staged(staged)
            assert isinstance(outcome, Receipt)
            assert outcome.duplicate
        else:
            assert known.duplicate
        staged = []
        assert store.import_batch(*_parsed(b), staged) is None
        assert [o.duplicate for o in store.commit_staged(staged) if isinstance(o, Receipt)] == [False]
        assert store.read_sync("SELECT count(*) FROM batches") == [(2,)]


def test_contract_batches_older_than_the_dedup_window_are_found_in_the_tables(
    make_config: Callable[..., CollectorConfig],
) -> None:
    """A batch created before the dedup window is still a duplicate (or a 409) when it comes again."""
    late = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)  # the golden batch is from 2026-11: far outside 35 days
    config = make_config()
    obj = batch_obj()
    with open_storage(config, clock=lambda: late) as store:
        staged: list[Any] = []
        assert store.import_batch(*_parsed(obj), staged) is None
        store.commit_staged(staged)
    with open_storage(config, clock=lambda: late) as store:
        staged = []
        batch, parsed, sha, size = _parsed(obj)
        known = store.import_batch(batch, parsed, sha, size, staged)
        outcome = known if known is not None else store.commit_staged(staged)[0]
        assert isinstance(outcome, Receipt)
        assert outcome.duplicate
        staged = []
        try:
            known = store.import_batch(batch, parsed, "0" * 64, size, staged)
        except ConflictError:
            return
        assert known is None
        assert isinstance(store.commit_staged(staged)[0], ConflictError)


async def test_contract_health_is_ready_when_serving(store: Storage) -> None:
    """A started store reports ready."""
    assert store.health().ready
