"""A key twice in one JSON object is refused at any depth, with its path; anything else decodes as orjson does."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schema
from schema import SchemaError, decode_json
from tests.conftest import DATA

_KEYS = st.text(st.characters(codec="utf-8"), max_size=6)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(st.characters(codec="utf-8"), max_size=8)
_DOCS: st.SearchStrategy[Any] = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(_KEYS, c, max_size=4), max_leaves=20
)


def _escaped(key: str) -> str:
    """The same key spelled with every character as a \\u escape: another spelling, the same key."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key) + '"'


def _encode(value: Any, pretty: bool, escape: bool = False) -> str:
    # escape: every non-ASCII character as \\u, so the fast path sees backslashes.
    return json.dumps(value, ensure_ascii=escape, indent=1 if pretty else None)


def _with_duplicate(
    doc: Any, where: list[int], spelling: int, pretty: bool, escape: bool = False
) -> tuple[str, str] | None:
    """The text of ``doc`` with one object's first key written twice, and that key's expected path."""
    objects: list[tuple[list[str | int], dict[str, Any]]] = []

    def walk(value: Any, path: list[str | int]) -> None:
        if isinstance(value, dict):
            if value:
                objects.append((path, value))
            for k, v in value.items():
                walk(v, [*path, k])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*path, i])

    walk(doc, [])
    if not objects:
        return None
    path, target = objects[where[0] % len(objects)]
    key = next(iter(target))
    marker = "\x00dup\x00"
    target[marker] = None  # placeholder member, replaced by the second spelling of ``key`` below
    text = _encode(doc, pretty, escape)
    second = [json.dumps(key, ensure_ascii=False), _escaped(key), json.dumps(key)][spelling % 3]
    text = text.replace(json.dumps(marker), second, 1)
    expected = "".join(f"[{p}]" if isinstance(p, int) else f".{_named(p)}" for p in [*path, key])
    return text, expected.removeprefix(".")


def _named(key: str) -> str:
    """Keys are named in errors only when they look like identifiers (free text is never echoed)."""
    return key if len(key) <= 64 and re.fullmatch(r"[A-Za-z0-9_.-]+", key) else "<unknown>"


@settings(max_examples=400, deadline=None)
@given(doc=_DOCS, pretty=st.booleans(), escape=st.booleans())
def test_documents_without_duplicates_decode_exactly_as_orjson(doc: Any, pretty: bool, escape: bool) -> None:
    """No false alarm: any JSON without a repeated key (compact or indented, escaped or not) gives orjson's result."""
    text = _encode(doc, pretty, escape)
    assert decode_json(text.encode()) == orjson.loads(text)
    assert decode_json(text) == orjson.loads(text)


@settings(max_examples=400, deadline=None)
@given(doc=_DOCS, where=st.lists(st.integers(0, 100), min_size=1, max_size=1), spelling=st.integers(0, 2),
       pretty=st.booleans(), escape=st.booleans())  # fmt: skip
def test_a_repeated_key_is_refused_at_any_depth_with_its_path(
    doc: Any, where: list[int], spelling: int, pretty: bool, escape: bool
) -> None:
    """A key written twice in one object, verbatim or spelled with escapes ("a" and "\\u0061"), is refused."""
    made = _with_duplicate(doc, where, spelling, pretty, escape)
    if made is None:
        return
    text, path = made
    with pytest.raises(SchemaError) as info:
        decode_json(text.encode())
    assert (info.value.code, info.value.path) == ("duplicate_key", path)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": 1, "a": 1}', "a"),
        ('{"a": 1, "\\u0061": 2}', "a"),
        ('[{"x": [0, {"k": 1, "k": 2}]}]', "[0].x[1].k"),
        ('{"a": {"b": 1, "b": 2}, "c": 3}', "a.b"),
        ('{"a": [[{"q": 1}], [{"q": 1, "q": 2}]]}', "a[1][0].q"),
        ('{"s": "\\":", "s": 1}', "s"),  # a string holding '":' does not hide the repeat
        ('{"x": "\\u003a", "x": 2}', "x"),  # nor an escaped colon
        ('{"customer@example.com": 1, "customer@example.com": 2}', "<unknown>"),  # free text is not echoed
        ("[" * 300 + '{"d": 1, "d": 2}' + "]" * 300, "[0]" * 300 + ".d"),
    ],
)
def test_repeated_keys_named_by_path(text: str, path: str) -> None:
    """Hand-picked cases: escapes, nested lists, strings that look like syntax, deep nesting, free-text keys."""
    with pytest.raises(SchemaError) as info:
        decode_json(text.encode())
    assert (info.value.code, info.value.path) == ("duplicate_key", path)
    assert "customer@example.com" not in str(info.value)


@pytest.mark.parametrize("text", ['{"a": "\\":", "b": 1}', '{"k": "\\u003a:"}', "[" * 600 + "]" * 600, '"x"', "1"])
def test_no_false_alarm_on_documents_that_defeat_the_fast_path(text: str) -> None:
    """Escapes, quotes and colons inside strings, and nesting deeper than orjson re-encodes, are not repeats."""
    assert decode_json(text.encode()) == orjson.loads(text)


def test_invalid_json_is_invalid_json() -> None:
    """Malformed JSON keeps its own code."""
    for text in (b'{"a": 1,', b"\xff", b"[" * 2000 + b"]" * 2000):
        with pytest.raises(SchemaError) as info:
            decode_json(text)
        assert info.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda t: t.replace('"os.family":"linux"', '"os.family":"linux","os.family":"windows"', 1),
         "snapshots[0].metrics.os.family"),
        (lambda t: t.replace('"batch_id":', '"batch_id":"0b7e0c3a-52f4-4c55-8a0e-1d2c3b4a5f61","batch_id":', 1),
         "batch_id"),
        (lambda t: t.replace('"name":"deployserver"', '"name":"deployserver","n\\u0061me":"deployserver"', 1),
         "product.name"),
    ],
)  # fmt: skip
def test_parse_batch_refuses_a_batch_with_a_repeated_key(edit: Any, path: str) -> None:
    """The strict batch parser (agent outbox and collector alike) refuses repeats, even of identical values."""
    canonical = orjson.dumps(orjson.loads((DATA / "v1/valid/full-day.json").read_bytes())).decode()
    data = edit(canonical).encode()
    assert data != canonical.encode()
    assert orjson.loads(data)  # orjson alone would take the last value
    with pytest.raises(SchemaError) as info:
        schema.parse_batch(data)
    assert (info.value.code, info.value.path) == ("duplicate_key", path)
