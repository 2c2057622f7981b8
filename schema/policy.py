"""The policy document: a catalogue as JSON, as ``GET /v1/policy`` serves it and ``policy import`` reads it.

The collector writes it with :func:`policy_document`; the agent reads one (fetched, or carried over to an
air-gapped install) with :func:`parse_policy` to learn which metrics that collector accepts. Reading is
strict about every field it knows (the result is a checked :class:`~schema.Catalogue`) and ignores
fields it does not know, so a document from a newer collector still reads: the agent only ever uses a
policy to leave metrics out, never to send more than its own catalogue allows.
"""

from __future__ import annotations

from typing import Any

from .batch import MAX_SNAPSHOTS, SUPPORTED_VERSIONS
from .catalogue import ENTRY_FIELDS, Catalogue, Entry, build_catalogue
from .errors import SchemaError

__all__ = ["parse_policy", "policy_document"]


def _entry_json(entry: Entry) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "key": entry.key,
        "type": entry.type,
        "unit": entry.unit,
        "kind": entry.kind,
        "description": entry.description,
        "purpose": entry.purpose,
        "category": entry.category,
        "clause": entry.clause,
        "coarsening": entry.coarsening,
        "since": entry.since,
        "removed_in": entry.removed_in,
    }
    if entry.type == "int":
        doc.update(min=entry.min, max=entry.max)
    elif entry.type == "enum":
        doc["values"] = list(entry.values)
    else:
        doc["pattern"] = entry.pattern
    return doc


def policy_document(catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue as a JSON object: every metric of every version, with ``since`` and ``removed_in``."""
    return {
        "catalogue_version": catalogue.version,
        "schema_versions": sorted(SUPPORTED_VERSIONS),
        "max_snapshots": MAX_SNAPSHOTS,
        "clauses": dict(catalogue.clauses),
        "header": [_entry_json(e) for e in catalogue.header.values()],
        "metrics": [_entry_json(e) for e in catalogue.metrics.values()],
    }


def _entries(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = doc.get(name)
    if not isinstance(items, list):
        raise SchemaError(name, "missing_field" if items is None else "wrong_type", "required list of entries")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SchemaError(f"{name}[{i}]", "wrong_type", "expected an object")
        # None is how JSON writes "not retired"; fields this reader does not know are a newer collector's.
        out.append({k: item[k] for k in ENTRY_FIELDS if k in item and item[k] is not None})
    return out


def parse_policy(doc: object) -> Catalogue:
    """The catalogue a policy document describes; raises :class:`SchemaError` naming the field."""
    if not isinstance(doc, dict):
        raise SchemaError("", "wrong_type", "a policy document is a JSON object")
    clauses = doc.get("clauses")
    if not isinstance(clauses, dict):
        raise SchemaError("clauses", "missing_field" if clauses is None else "wrong_type", "required object")
    return build_catalogue(
        doc.get("catalogue_version"), clauses, _entries(doc, "header"), _entries(doc, "metrics"), metrics_name="metrics"
    )
