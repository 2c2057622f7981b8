"""The JSON Schemas (draft 2020-12) of batch formats 1 and 2, built from the catalogue.

They are written to ``schema/batch-v1.schema.json`` and ``schema/batch-v2.schema.json`` by
``python -m schema`` for agents written in other languages (format 2 is the one to write; format 1
describes batches of catalogue version 1 only). In format 2, which metrics a batch may hold depends
on its ``catalogue_version``: one ``if``/``then`` per metric added after version 1 or retired says so. It states everything a JSON Schema can: types, bounds, enums, patterns, unknown
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
        doc.update(
            description=f"{entry.description} {_INTEGER_RULE}", type="integer", minimum=entry.min, maximum=entry.max
        )
    elif entry.type == "enum":
        doc.update(type="string", enum=list(entry.values))
    else:
        doc.update(type="string", pattern=f"^(?:{entry.pattern})$")
    return doc


def _version_rules(catalogue: Catalogue) -> list[dict[str, Any]]:
    """Per metric not in every version: the ``catalogue_version`` values for which a snapshot must not hold it."""
    rules = []
    for key, entry in catalogue.metrics.items():
        ranges = []
        if entry.since > 1:
            ranges.append({"maximum": entry.since - 1})
        if entry.removed_in is not None:
            ranges.append({"minimum": entry.removed_in})
        for bounds in ranges:
            rules.append(
                {
                    "if": {"properties": {"catalogue_version": bounds}},
                    "then": {
                        "properties": {
                            "snapshots": {"items": {"properties": {"metrics": {"not": {"required": [key]}}}}}
                        }
                    },
                }
            )
    return rules


def batch_json_schema(catalogue: Catalogue = CATALOGUE, schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema document of a batch in format ``schema_version`` (1 or 2) under ``catalogue``."""
    if schema_version not in (1, 2):
        raise ValueError(f"no JSON Schema for format {schema_version}")
    header = catalogue.header
    metrics = catalogue.metrics_at(1) if schema_version == 1 else catalogue.metrics
    required = ["schema_version", "batch_id", "install_id", "product", "agent_version", "created_at", "snapshots"]
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://onprem-telemetry.invalid/schema/batch-v{schema_version}.schema.json",
        "title": f"onprem-telemetry batch, wire format v{schema_version}",
        "description": (
            f"Generated from catalogue version {catalogue.version} by `python -m schema`; do not edit. Integers"
            " are written without a fraction or exponent (`8`, never `8.0` or `8e0`) and no key appears twice in"
            " one object: the collector refuses both, which this schema cannot express."
            + (
                " Format 1 has no `catalogue_version`: it means catalogue version 1."
                if schema_version == 1
                else " A `catalogue_version` newer than this catalogue is accepted when every metric is known here."
            )
        ),
        "type": "object",
        "additionalProperties": False,
        "required": required if schema_version == 1 else [required[0], "catalogue_version", *required[1:]],
        "properties": {
            "schema_version": {"type": "integer", "const": schema_version, "description": _INTEGER_RULE},
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
                            "properties": {key: _value_schema(e) for key, e in metrics.items()},
                        },
                    },
                },
            },
        },
    }
    if schema_version >= 2:
        doc["properties"]["catalogue_version"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000,
            "description": f"The catalogue version the batch was built against. {_INTEGER_RULE}",
        }
        rules = _version_rules(catalogue)
        if rules:
            doc["allOf"] = rules
    return doc
