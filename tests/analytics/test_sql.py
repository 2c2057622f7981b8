"""The rollup's parameter passing (collector.reports.sql): named values, and lists as one JSON text."""

from __future__ import annotations

import datetime as dt
import uuid

import duckdb
import pytest

from collector.reports.sql import run, scalar


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def test_named_values_are_numbered_and_unused_ones_left_out(con: duckdb.DuckDBPyConnection) -> None:
    assert run(con, "SELECT $b - $a, $a", a=2, b=5, unused=9).fetchone() == (3, 2)
    assert scalar(con, "SELECT $ab || $a", a="x", ab="y") == "yx"  # $a does not match inside $ab


def test_lists_round_trip_through_their_casts(con: duckdb.DuckDBPyConnection) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    days = [dt.date(2026, 1, 1), dt.date.min, dt.date(2026, 12, 31)]
    rows = run(
        con,
        "SELECT unnest($i::UUID[]), unnest($d::DATE[]), unnest($p::VARCHAR[]), unnest($u::UUID[])",
        i=ids,
        d=days,
        p=["deploy-server", None, 'it\'s, "quoted"'],
        u=[uuid.UUID(x) for x in ids],
    ).fetchall()
    assert rows == [
        (uuid.UUID(ids[0]), days[0], "deploy-server", uuid.UUID(ids[0])),
        (uuid.UUID(ids[1]), days[1], None, uuid.UUID(ids[1])),
        (uuid.UUID(ids[2]), days[2], 'it\'s, "quoted"', uuid.UUID(ids[2])),
    ]
    assert scalar(con, "SELECT len($e::UUID[])", e=[]) == 0
    stamps = [dt.datetime(2026, 5, 7, 12, 30, 1, 250), dt.datetime(2026, 5, 7), None]
    assert [r[0] for r in run(con, "SELECT unnest($t::TIMESTAMP[])", t=stamps).fetchall()] == stamps
    # Used untyped, or beside a typed use, a list is a VARCHAR[].
    assert run(con, "SELECT $d, $d::DATE[]", d=days[:1]).fetchone() == (["2026-01-01"], days[:1])


def test_a_typed_list_is_parsed_straight_into_its_type() -> None:
    seen: list[str] = []

    class Recording:
        def execute(self, sql: str, params: list[object]) -> None:
            seen.append(sql)

    run(Recording(), "SELECT unnest($ids::UUID[]), unnest($days::DATE[]), $ids", ids=["a"], days=[dt.date.min])
    assert seen == [
        """SELECT unnest(from_json($1, '["UUID"]')), unnest(from_json($2, '["DATE"]')), """
        """from_json($1, '["VARCHAR"]')"""
    ]


def test_a_list_goes_to_duckdb_as_one_text_not_as_a_list_parameter() -> None:
    # DuckDB's Python binding converts a list parameter element by element holding the GIL (about 0.1 ms
    # each with DuckDB 1.5): a fold of 1,000 installs then held up ingest in the same process for seconds.
    seen: list[tuple[str, list[object]]] = []

    class Recording:
        def execute(self, sql: str, params: list[object]) -> None:
            seen.append((sql, params))

    run(Recording(), "SELECT unnest($ids::UUID[]) WHERE $n > 0", ids=["a", "b"], n=1)
    [(sql, params)] = seen
    assert params == ['["a","b"]', 1]
    assert all(not isinstance(p, list | tuple) for p in params)
    assert "from_json($1" in sql
