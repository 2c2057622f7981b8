"""Batch wire formats 1 and 2: typed values, the strict parser, and the canonical encoder.

A batch is UTF-8 JSON::

    {"schema_version": 2, "catalogue_version": 1, "batch_id": "<uuid4>", "install_id": "<uuid>",
     "product": {"name": "deployserver", "version": "4.2.1"}, "agent_version": "0.1.0",
     "created_at": "2026-11-29T03:00:00Z",
     "snapshots": [{"taken_at": "2026-11-29T02:00:00Z", "metrics": {"os.family": "linux", ...}}]}

Format 2 adds ``catalogue_version``, the catalogue version the agent built the batch against; format 1
is the same without it, and means catalogue version 1. A batch's metrics are checked against what its
catalogue version allowed (:meth:`schema.Catalogue.metrics_at`): a metric retired later is still
accepted in a batch of an earlier version, and a batch of a version newer than the catalogue at hand
is accepted when every key in it is known to that catalogue.

The parser accepts nothing the catalogue does not permit and names the JSON path of the first
problem. The encoder is canonical (sorted keys, no spaces): the same batch always gives the same
bytes, which is what the agent seals, shows in ``preview`` and sends, byte for byte, on every retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from .catalogue import CATALOGUE, Catalogue
from .errors import SchemaError
from .strict_json import decode_json, safe_name

__all__ = [
    "MAX_SNAPSHOTS",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "Batch",
    "Product",
    "Snapshot",
    "encode_batch",
    "format_hour",
    "format_instant",
    "parse_batch",
    "parse_batch_obj",
    "parse_hour",
]

SCHEMA_VERSION: Final = 2
"""The wire format this release writes: 2, which records ``catalogue_version``."""
SUPPORTED_VERSIONS: Final = frozenset({1, 2})
"""The wire formats this release reads. Format 1 batches (sealed before format 2) stay valid forever."""
MAX_SNAPSHOTS: Final = 744
"""At most one snapshot per hour for 31 days: the longest batch period the agent allows."""

_V1_KEYS: Final = frozenset(
    {"schema_version", "batch_id", "install_id", "product", "agent_version", "created_at", "snapshots"}
)
_TOP_KEYS: Final = {1: _V1_KEYS, 2: _V1_KEYS | {"catalogue_version"}}
_MAX_CATALOGUE_VERSION: Final = 1_000_000  # far beyond any real release train; keeps the column an INTEGER
_PRODUCT_KEYS: Final = frozenset({"name", "version"})
_SNAPSHOT_KEYS: Final = frozenset({"taken_at", "metrics"})
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID4: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_HOUR: Final = re.compile(r"(20[0-9]{2})-([01][0-9])-([0-3][0-9])T([0-2][0-9]):00:00Z")
# Parsed hours, memoised: a fleet's batches share the same few hundred hour strings.
_HOUR_CACHE: dict[str, datetime] = {}
_HOUR_CACHE_MAX: Final = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """The product that sends the batch."""

    name: str
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The permitted metrics read at one moment, truncated to the hour."""

    taken_at: str
    metrics: Mapping[str, int | str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A sealed batch: everything one install sends in one request."""

    batch_id: str
    install_id: str
    product: Product
    agent_version: str
    created_at: str
    snapshots: tuple[Snapshot, ...]
    schema_version: int = SCHEMA_VERSION
    catalogue_version: int = 1
    """The catalogue version the batch was built against (always 1 in format 1, which cannot say)."""

    def __post_init__(self) -> None:
        if self.schema_version == 1 and self.catalogue_version != 1:
            raise ValueError("a format 1 batch cannot record a catalogue version other than 1")

    def to_obj(self) -> dict[str, Any]:
        """The JSON object of this batch."""
        obj: dict[str, Any] = {"schema_version": self.schema_version}
        if self.schema_version >= 2:
            obj["catalogue_version"] = self.catalogue_version
        obj |= {
            "batch_id": self.batch_id,
            "install_id": self.install_id,
            "product": {"name": self.product.name, "version": self.product.version},
            "agent_version": self.agent_version,
            "created_at": self.created_at,
            "snapshots": [{"taken_at": s.taken_at, "metrics": dict(s.metrics)} for s in self.snapshots],
        }
        return obj


def _explain_metrics(catalogue: Catalogue, version: int, metrics: dict[str, Any], i: int) -> None:
    """Raise the precise error for a metrics object the fast check refused (batch of catalogue ``version``)."""
    allowed = catalogue.metrics_at(version)
    for key, value in metrics.items():
        entry = allowed.get(key)
        if entry is None:
            _refuse_key(catalogue, version, key, f"snapshots[{i}].metrics")
        else:
            entry.check(value, f"snapshots[{i}].metrics.{key}")
    raise AssertionError("the fast metrics check and Entry.check disagree")  # pragma: no cover


def _refuse_key(catalogue: Catalogue, version: int, key: str, where: str) -> None:
    entry = catalogue.metric(key)
    if entry is None:
        path = f"{where}.{key if safe_name(key) else '<unknown>'}"
        if version > catalogue.version:
            raise SchemaError(
                path,
                "unknown_metric",
                f"not in catalogue version {catalogue.version} (the newest known "
                f"here; the batch was built against version {version})",
            )
        raise SchemaError(path, "unknown_metric", "not in the policy catalogue")
    path = f"{where}.{key}"
    if entry.removed_in is not None and entry.removed_in <= version:
        raise SchemaError(
            path,
            "retired_metric",
            f"retired in catalogue version {entry.removed_in}; the batch was built against version {version}",
        )
    raise SchemaError(
        path, "metric_not_in_version", f"added in catalogue version {entry.since}, after the batch's version {version}"
    )


def _new_snapshot(taken_at: str, metrics: Mapping[str, int | str]) -> Snapshot:
    # Bypasses the frozen dataclass __init__ (object.__setattr__ per field): the values are already checked.
    snap = object.__new__(Snapshot)
    object.__setattr__(snap, "taken_at", taken_at)
    object.__setattr__(snap, "metrics", metrics)
    return snap


def format_hour(moment: datetime) -> str:
    """A timestamp truncated to the hour, in UTC, as the wire format writes it."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def format_instant(moment: datetime) -> str:
    """A moment in UTC to the whole second, ``YYYY-MM-DDTHH:MM:SSZ``: how agent and collector write times
    that are not hours (attempts, approvals, token dates). A naive ``moment`` is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_hour(text: object, path: str) -> datetime:
    """Parse a wire timestamp (``YYYY-MM-DDTHH:00:00Z``) or raise :class:`SchemaError` at ``path``."""
    if type(text) is not str:
        raise SchemaError(path, "wrong_type", "expected a timestamp string")
    cached = _HOUR_CACHE.get(text)
    if cached is not None:
        return cached
    match = _HOUR.fullmatch(text)
    if match is None:
        raise SchemaError(path, "bad_timestamp", "must be UTC truncated to the hour: YYYY-MM-DDTHH:00:00Z")
    try:
        year, month, day, hour = (int(g) for g in match.groups())
        moment = datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        raise SchemaError(path, "bad_timestamp", "not a real date and hour") from None
    if len(_HOUR_CACHE) >= _HOUR_CACHE_MAX:
        _HOUR_CACHE.clear()
    _HOUR_CACHE[text] = moment
    return moment


def encode_batch(batch: Batch) -> bytes:
    """The canonical bytes of a batch: UTF-8 JSON, keys sorted, no insignificant white space."""
    return orjson.dumps(batch.to_obj(), option=orjson.OPT_SORT_KEYS)


def parse_batch(data: bytes | str, *, catalogue: Catalogue = CATALOGUE) -> Batch:
    """Decode and check a batch document; raises :class:`SchemaError`.

    Codes ``invalid_json`` (not JSON) and ``duplicate_key`` (a key twice in one object, see
    :func:`schema.decode_json`) come before any check of the batch format.
    """
    return parse_batch_obj(decode_json(data), catalogue=catalogue)


def _expect_object(value: object, path: str, keys: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict:
        raise SchemaError(path, "wrong_type", "expected an object")
    if value.keys() != keys:
        for key in value:
            if key not in keys:
                return _unknown(path, key)
        missing = sorted(keys - value.keys())[0]
        raise SchemaError(_join(path, missing), "missing_field", "required")
    return value


def _unknown(path: str, key: str) -> dict[str, Any]:
    # The key is not echoed when it looks like free text: only a short identifier-like name is named.
    raise SchemaError(_join(path, key if safe_name(key) else "<unknown>"), "unknown_field", "not allowed here")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_batch_obj(obj: object, *, catalogue: Catalogue = CATALOGUE) -> Batch:
    """Check an already-decoded JSON object against its format (1 or 2) and the catalogue; return the batch."""
    if type(obj) is not dict:
        raise SchemaError("", "wrong_type", "a batch is a JSON object")
    version = obj.get("schema_version")
    if type(version) is not int:
        raise SchemaError("schema_version", "missing_field" if version is None else "wrong_type", "required integer")
    if version not in SUPPORTED_VERSIONS:
        raise SchemaError(
            "schema_version",
            "unsupported_version",
            f"version {version} is not supported (supported: {sorted(SUPPORTED_VERSIONS)})",
        )
    top = _expect_object(obj, "", _TOP_KEYS[version])
    catalogue_version = top.get("catalogue_version", 1)
    if type(catalogue_version) is not int or not 1 <= catalogue_version <= _MAX_CATALOGUE_VERSION:
        raise SchemaError(
            "catalogue_version",
            "wrong_type" if type(catalogue_version) is not int else "out_of_bounds",
            f"must be an integer from 1 to {_MAX_CATALOGUE_VERSION}",
        )
    batch_id = top["batch_id"]
    if type(batch_id) is not str or _UUID4.fullmatch(batch_id) is None:
        raise SchemaError("batch_id", "bad_id", "must be a lowercase UUID version 4")
    install_id = top["install_id"]
    if type(install_id) is not str or _UUID.fullmatch(install_id) is None:
        raise SchemaError("install_id", "bad_id", "must be a lowercase UUID")
    product = _expect_object(top["product"], "product", _PRODUCT_KEYS)
    header = catalogue.header
    header["product.name"].check(product["name"], "product.name")
    header["product.version"].check(product["version"], "product.version")
    header["agent_version"].check(top["agent_version"], "agent_version")
    created_at = top["created_at"]
    created = parse_hour(created_at, "created_at")
    snapshots = top["snapshots"]
    if type(snapshots) is not list:
        raise SchemaError("snapshots", "wrong_type", "expected an array")
    if not snapshots:
        raise SchemaError("snapshots", "empty", "a batch holds at least one snapshot")
    if len(snapshots) > MAX_SNAPSHOTS:
        raise SchemaError("snapshots", "too_many_snapshots", f"at most {MAX_SNAPSHOTS} snapshots per batch")
    metrics_ok = catalogue.metrics_check(catalogue_version)
    parsed: list[Snapshot] = []
    previous: datetime | None = None
    # The hot path of ingest (~200 values per batch): no path strings are built unless something is wrong.
    for i, raw in enumerate(snapshots):
        if type(raw) is not dict or raw.keys() != _SNAPSHOT_KEYS:
            _expect_object(raw, f"snapshots[{i}]", _SNAPSHOT_KEYS)
        taken_at = raw["taken_at"]
        taken = _HOUR_CACHE.get(taken_at) if type(taken_at) is str else None
        if taken is None:
            taken = parse_hour(taken_at, f"snapshots[{i}].taken_at")
        if (previous is not None and taken <= previous) or taken > created:
            reason = (
                "taken after the batch was created"
                if taken > created
                else "snapshots must be in strictly increasing hours"
            )
            raise SchemaError(f"snapshots[{i}].taken_at", "out_of_order", reason)
        previous = taken
        metrics = raw["metrics"]
        if type(metrics) is not dict:
            raise SchemaError(f"snapshots[{i}].metrics", "wrong_type", "expected an object")
        if not metrics_ok(metrics):
            _explain_metrics(catalogue, catalogue_version, metrics, i)
        parsed.append(_new_snapshot(taken_at, metrics))
    return Batch(
        schema_version=version,
        catalogue_version=catalogue_version,
        batch_id=batch_id,
        install_id=install_id,
        product=Product(name=product["name"], version=product["version"]),
        agent_version=top["agent_version"],
        created_at=created_at,
        snapshots=tuple(parsed),
    )
