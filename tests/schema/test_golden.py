"""The golden batches: the parser and the JSON Schema agree on every valid and invalid example."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

import schema
from tests.conftest import DATA

VALID = sorted((DATA / "v1" / "valid").glob("*.json"))
EXPECTED: dict[str, dict[str, object]] = orjson.loads((DATA / "v1" / "invalid" / "expected.json").read_bytes())
VALIDATOR = jsonschema.Draft202012Validator(
    orjson.loads((Path(schema.__file__).parent / "batch-v1.schema.json").read_bytes())
)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_parser_accepts_valid_golden(path: Path) -> None:
    """Every valid golden batch parses, and the JSON Schema accepts it too."""
    data = path.read_bytes()
    batch = schema.parse_batch(data)
    assert batch.snapshots
    VALIDATOR.validate(orjson.loads(data))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_canonical_encoding_round_trips(path: Path) -> None:
    """Encoding a parsed batch gives bytes that parse back to the same batch, and are stable."""
    batch = schema.parse_batch(path.read_bytes())
    data = schema.encode_batch(batch)
    assert schema.parse_batch(data) == batch
    assert schema.encode_batch(schema.parse_batch(data)) == data
    assert b" " not in data.replace(b"Ubuntu 22.04", b"").replace(b"Windows Server 2022", b"")


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=str)
def test_parser_rejects_invalid_golden_with_path(name: str) -> None:
    """Every invalid golden batch is refused with the expected code and JSON path."""
    data = (DATA / "v1" / "invalid" / name).read_bytes()
    expected = EXPECTED[name]
    with pytest.raises(schema.SchemaError) as info:
        schema.parse_batch(data)
    assert (info.value.code, info.value.path) == (expected["code"], expected["path"])


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e["json_schema_rejects"] is not None))
def test_json_schema_agrees_on_invalid_golden(name: str) -> None:
    """The JSON Schema rejects what it can express; the rest is documented as parser-only."""
    obj = orjson.loads((DATA / "v1" / "invalid" / name).read_bytes())
    assert VALIDATOR.is_valid(obj) is not EXPECTED[name]["json_schema_rejects"]


def test_every_invalid_file_has_an_expectation() -> None:
    """No golden file is left without the error it must give."""
    files = {p.name for p in (DATA / "v1" / "invalid").glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED)


def test_free_text_is_never_echoed_in_errors() -> None:
    """A rejected value is not repeated in the error: it may be the very text the policy forbids."""
    data = (DATA / "v1" / "invalid" / "free-text-os-version.json").read_bytes()
    with pytest.raises(schema.SchemaError) as info:
        schema.parse_batch(data)
    assert "corp.example" not in str(info.value)
