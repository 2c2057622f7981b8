"""The golden batches of every wire format: the parser and that format's JSON Schema agree on every example.

A folder per format (tests/data/v1, v2); a new format adds a folder and never edits an older one's batches.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

import schema
from tests.conftest import DATA

FORMATS = ("v1", "v2")
VALID = sorted(p for f in FORMATS for p in (DATA / f / "valid").glob("*.json"))
EXPECTED: dict[tuple[str, str], dict[str, object]] = {
    (f, name): e
    for f in FORMATS
    for name, e in orjson.loads((DATA / f / "invalid" / "expected.json").read_bytes()).items()
}
VALIDATORS = {
    f: jsonschema.Draft202012Validator(
        orjson.loads((Path(schema.__file__).parent / f"batch-{f}.schema.json").read_bytes())
    )
    for f in FORMATS
}


def _id(item: object) -> str:
    if isinstance(item, Path):
        return f"{item.parent.parent.name}/{item.name}"
    assert isinstance(item, tuple)
    return "/".join(item)


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_parser_accepts_valid_golden(path: Path) -> None:
    """Every valid golden batch parses, and the JSON Schema of its format accepts it too."""
    data = path.read_bytes()
    batch = schema.parse_batch(data)
    assert batch.snapshots
    assert f"v{batch.schema_version}" == path.parent.parent.name
    VALIDATORS[path.parent.parent.name].validate(orjson.loads(data))


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_canonical_encoding_round_trips(path: Path) -> None:
    """Encoding a parsed batch gives bytes that parse back to the same batch, and are stable."""
    batch = schema.parse_batch(path.read_bytes())
    data = schema.encode_batch(batch)
    assert schema.parse_batch(data) == batch
    assert schema.encode_batch(schema.parse_batch(data)) == data
    assert b" " not in data.replace(b"Ubuntu 22.04", b"").replace(b"Windows Server 2022", b"")


def test_format_1_batches_mean_catalogue_version_1() -> None:
    """A format 1 batch (no catalogue_version) is read as catalogue version 1 and re-encoded without the field."""
    data = (DATA / "v1" / "valid" / "full-day.json").read_bytes()
    batch = schema.parse_batch(data)
    assert (batch.schema_version, batch.catalogue_version) == (1, 1)
    assert b"catalogue_version" not in schema.encode_batch(batch)


def test_format_2_batch_records_its_catalogue_version() -> None:
    """A format 2 batch keeps the catalogue version it was built against, newer than this catalogue or not."""
    batch = schema.parse_batch((DATA / "v2" / "valid" / "newer-catalogue.json").read_bytes())
    assert (batch.schema_version, batch.catalogue_version) == (2, 7)
    assert b'"catalogue_version":7' in schema.encode_batch(batch)


@pytest.mark.parametrize("item", sorted(EXPECTED), ids=_id)
def test_parser_rejects_invalid_golden_with_path(item: tuple[str, str]) -> None:
    """Every invalid golden batch is refused with the expected code and JSON path."""
    data = (DATA / item[0] / "invalid" / item[1]).read_bytes()
    expected = EXPECTED[item]
    with pytest.raises(schema.SchemaError) as info:
        schema.parse_batch(data)
    assert (info.value.code, info.value.path) == (expected["code"], expected["path"])


@pytest.mark.parametrize(
    "item", sorted(i for i, e in EXPECTED.items() if e["json_schema_rejects"] is not None), ids=_id
)
def test_json_schema_agrees_on_invalid_golden(item: tuple[str, str]) -> None:
    """The JSON Schema rejects what it can express; the rest is documented as parser-only."""
    obj = orjson.loads((DATA / item[0] / "invalid" / item[1]).read_bytes())
    assert VALIDATORS[item[0]].is_valid(obj) is not EXPECTED[item]["json_schema_rejects"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_invalid_file_has_an_expectation(fmt: str) -> None:
    """No golden file is left without the error it must give."""
    files = {p.name for p in (DATA / fmt / "invalid").glob("*.json")} - {"expected.json"}
    assert files == {name for f, name in EXPECTED if f == fmt}


def test_free_text_is_never_echoed_in_errors() -> None:
    """A rejected value is not repeated in the error: it may be the very text the policy forbids."""
    data = (DATA / "v1" / "invalid" / "free-text-os-version.json").read_bytes()
    with pytest.raises(schema.SchemaError) as info:
        schema.parse_batch(data)
    assert "corp.example" not in str(info.value)
