"""Property tests: any batch the catalogue permits round-trips through the canonical encoder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import schema
from schema import CATALOGUE

START = datetime(2026, 1, 1, tzinfo=UTC)


def _value(entry: schema.Entry) -> st.SearchStrategy[int | str]:
    if entry.type == "int":
        assert entry.min is not None
        assert entry.max is not None
        ints = st.integers(entry.min, entry.max)
        return ints.map(schema.round_sig2) if entry.coarsening == "round_sig2" else ints
    if entry.type == "enum":
        return st.sampled_from(entry.values)
    return st.sampled_from(["Ubuntu 22.04", "Windows Server 2022", "Debian 12", "macOS 14.5"])


metrics: st.SearchStrategy[dict[str, int | str]] = st.fixed_dictionaries(
    {}, optional={k: _value(e) for k, e in CATALOGUE.metrics.items()}
)


@st.composite
def batches(draw: st.DrawFn) -> schema.Batch:
    hours = sorted(draw(st.sets(st.integers(0, 2000), min_size=1, max_size=30)))
    snaps = tuple(
        schema.Snapshot(taken_at=schema.format_hour(START + timedelta(hours=h)), metrics=draw(metrics)) for h in hours
    )
    return schema.Batch(
        batch_id=str(draw(st.uuids(version=4))),
        install_id=schema.install_id_from_secret(draw(st.binary(min_size=32, max_size=32)).hex()),
        product=schema.Product(name="deployserver", version=draw(st.sampled_from(["1.0", "4.2.1", "5.0.0-rc2"]))),
        agent_version="0.1.0",
        created_at=schema.format_hour(START + timedelta(hours=hours[-1] + draw(st.integers(0, 48)))),
        snapshots=snaps,
    )


@settings(max_examples=200, deadline=None)
@given(batches())
def test_encode_parse_round_trip(batch: schema.Batch) -> None:
    """parse(encode(b)) == b, and encoding is deterministic."""
    data = schema.encode_batch(batch)
    assert schema.parse_batch(data) == batch
    assert schema.encode_batch(schema.parse_batch(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4)))  # fmt: skip
def test_parser_never_raises_anything_but_schema_error(obj: object) -> None:
    """Arbitrary JSON never crashes the parser: it is a batch or a SchemaError."""
    try:
        schema.parse_batch_obj(obj)
    except schema.SchemaError as exc:
        error = exc
    else:  # pragma: no cover - random JSON is never a valid batch
        raise AssertionError("random JSON parsed as a batch")
    assert error.code


_any_value = st.one_of(
    st.integers(-(2**60), 2**60), st.booleans(), st.floats(allow_nan=False), st.none(),
    st.sampled_from(["linux", "solaris", "Ubuntu 22.04", "Ubuntu 22.04.3", "", "x" * 50]),
    st.integers(0, 5000), st.lists(st.integers(), max_size=2),
)  # fmt: skip
_any_key = st.sampled_from([*CATALOGUE.metrics, "customer_email", "os", "usage"])


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(_any_key, _any_value, max_size=10))
def test_fast_metrics_check_agrees_with_entry_check(metrics: dict[str, object]) -> None:
    """The generated hot-path check says yes exactly when every key is permitted and Entry.check passes."""
    try:
        for key, value in metrics.items():
            entry = CATALOGUE.metric(key)
            if entry is None:
                raise schema.SchemaError(key, "unknown_metric", "")
            entry.check(value, key)
    except schema.SchemaError:
        expected = False
    else:
        expected = True
    assert CATALOGUE.metrics_ok(metrics) is expected


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 10**12))
def test_is_sig2_is_round_sig2_fixed_point(value: int) -> None:
    """The hot-path coarseness test agrees with the coarsening rule itself."""
    from schema.coarsen import is_sig2

    assert is_sig2(value) is (schema.round_sig2(value) == value)
