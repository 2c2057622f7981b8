"""The JSON Schema (draft 2020-12) of batch format v1, built from the catalogue.

It is written to ``schema/batch-v1.schema.json`` by ``python -m schema`` for agents written in
other languages. It states everything a JSON Schema can: types, bounds, enums, patterns, unknown
keys. Five rules need more than a schema and are enforced by :func:`schema.parse_batch` only:
snapshots in strictly increasing hours, none after ``created_at``, values rounded to two
significant digits where the catalogue says ``round_sig2``, no key twice in one object, and
integers written without a fraction or exponent (JSON Schema's ``integer`` also matches ``1.0``
and ``1e0``, which the collector refuses with ``wrong_type``; the descriptions say so instead).
"""

from __future__ import annotations

from typing import Any

from .batch import MAX_SNAPSHOTS, SCHEMA_VERSION
from .catalogue import CATALOGUE, Catalogue, Entry

__all__ = ["batch_json_schema"]

_HOUR = "^20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:00:00Z$"
_INTEGER_RULE = (
    "Written as a JSON integer, without a fraction or exponent (`8`, never `8.0` or `8e0`): the collector"
    " refuses the others with `wrong_type`, although a JSON Schema validator cannot tell them apart."
)
# Said in the description of every integer: the one place a JSON Schema can carry the rule.


def _value_schema(entry: Entry) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": entry.description}
    if entry.type == "int":
        doc.update(description=f"{entry.description} {_INTEGER_RULE}", type="integer", minimum=entry.min,
                   maximum=entry.max)  # fmt: skip
    elif entry.type == "enum":
        doc.update(type="string", enum=list(entry.values))
    else:
        doc.update(type="string", pattern=f"^(?:{entry.pattern})$")
    return doc


def batch_json_schema(catalogue: Catalogue = CATALOGUE) -> dict[str, Any]:
    """The JSON Schema document of a v1 batch under ``catalogue``."""
    header = catalogue.header
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://onprem-telemetry.invalid/schema/batch-v1.schema.json",
        "title": "onprem-telemetry batch, wire format v1",
        "description": (
            f"Generated from catalogue version {catalogue.version} by `python -m schema`; do not edit. Integers"
            " are written without a fraction or exponent (`8`, never `8.0` or `8e0`) and no key appears twice in"
            " one object: the collector refuses both, which this schema cannot express."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": [
            "schema_version",
            "batch_id",
            "install_id",
            "product",
            "agent_version",
            "created_at",
            "snapshots",
        ],
        "properties": {
            "schema_version": {"type": "integer", "const": SCHEMA_VERSION, "description": _INTEGER_RULE},
            "batch_id": {
                "type": "string",
                "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
            },
            "install_id": {
                "type": "string",
                "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            },
            "product": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "version"],
                "properties": {
                    "name": _value_schema(header["product.name"]),
                    "version": _value_schema(header["product.version"]),
                },
            },
            "agent_version": _value_schema(header["agent_version"]),
            "created_at": {"type": "string", "pattern": _HOUR},
            "snapshots": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SNAPSHOTS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["taken_at", "metrics"],
                    "properties": {
                        "taken_at": {"type": "string", "pattern": _HOUR},
                        "metrics": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {key: _value_schema(e) for key, e in catalogue.metrics.items()},
                        },
                    },
                },
            },
        },
    }
