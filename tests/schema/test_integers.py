"""Integers are written without a fraction or exponent, and the generated documents say so.

JSON Schema cannot tell ``1`` from ``1.0`` (both are the integer 1 to it), so a validator in another
language accepts ``1.0`` or ``1e0`` where the collector answers 422 ``wrong_type``. The schema's
descriptions and the metric dictionary state the rule; the golden files show both sides of the gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import schema
from tests.conftest import ROOT

RULE = "without a fraction or exponent"


def _integer_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "integer" or isinstance(node.get("const"), int):
            yield path, node
        for key, value in node.items():
            yield from _integer_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integer_nodes(value, f"{path}/{i}")


@pytest.mark.parametrize("fmt", [1, 2])
def test_json_schema_describes_every_integer_as_written_without_fraction_or_exponent(fmt: int) -> None:
    """Each integer in batch-v1/v2.schema.json (schema_version, catalogue_version, every integer metric) states the rule."""
    doc = orjson.loads((Path(schema.__file__).parent / f"batch-v{fmt}.schema.json").read_bytes())
    nodes = list(_integer_nodes(doc))
    assert len(nodes) >= fmt + sum(e.type == "int" for e in schema.CATALOGUE.metrics.values())
    for path, node in nodes:
        assert RULE in node.get("description", ""), path
    assert RULE in doc["description"]


def test_metric_dictionary_states_the_rule() -> None:
    """docs/metrics.md says how integers are written."""
    assert RULE in (ROOT / "docs" / "metrics.md").read_text("utf-8")
