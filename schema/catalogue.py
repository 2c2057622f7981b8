"""The policy catalogue (``catalogue.toml``) loaded into typed, validated entries.

Everything that may be collected, sent or stored is an :class:`Entry` here. Loading checks the
catalogue itself (every entry names a known clause, type, category and coarsening rule), so a bad
edit of the TOML fails at import time and in CI, not in production.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal

from ._fastcheck import compile_metrics_check
from .coarsen import RULES, is_sig2
from .errors import SchemaError

__all__ = ["CATALOGUE", "Catalogue", "Entry", "load_catalogue"]

EntryType = Literal["int", "enum", "pattern"]
_TYPES: Final = ("int", "enum", "pattern")
_KINDS: Final = ("gauge", "counter", "label")
_CATEGORIES: Final = ("usage", "host")
_KEY: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
# JSON numbers beyond 2**53 lose precision in many languages; the bounds stay below it.
_MAX_SAFE_INT: Final = 2**53 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One permitted value: a snapshot metric or a batch header field."""

    key: str
    type: EntryType
    unit: str
    kind: str
    description: str
    purpose: str
    category: str
    clause: str
    coarsening: str
    since: int
    min: int | None = None
    max: int | None = None
    values: tuple[str, ...] = ()
    pattern: str | None = None
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def column(self) -> str:
        """The SQL column name the collector stores this metric under (dots become underscores)."""
        return self.key.replace(".", "_")

    def check(self, value: object, path: str) -> None:
        """Raise :class:`SchemaError` at ``path`` unless ``value`` is allowed for this entry."""
        if self.type == "int":
            if type(value) is not int:
                raise SchemaError(path, "wrong_type", f"expected an integer, got {_json_type(value)}")
            assert self.min is not None
            assert self.max is not None
            if not self.min <= value <= self.max:
                raise SchemaError(path, "out_of_bounds", f"{value} is outside [{self.min}, {self.max}]")
            if self.coarsening == "round_sig2" and not is_sig2(value):
                raise SchemaError(path, "not_coarsened", f"{value} is not rounded to two significant digits")
        elif type(value) is not str:
            raise SchemaError(path, "wrong_type", f"expected a string, got {_json_type(value)}")
        elif self.type == "enum":
            if value not in self.values:
                raise SchemaError(path, "not_allowed", f"must be one of {', '.join(self.values)}")
        else:
            assert self.regex is not None
            if self.regex.fullmatch(value) is None:
                # The value is never echoed: it may be exactly the free text the policy forbids.
                raise SchemaError(path, "not_allowed", "does not match the permitted pattern")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The whole catalogue: version, privacy-policy clauses, header fields and snapshot metrics."""

    version: int
    clauses: Mapping[str, str]
    header: Mapping[str, Entry]
    metrics: Mapping[str, Entry]
    metrics_ok: Callable[[dict[str, Any]], bool] = field(default=lambda _: False, compare=False, repr=False)
    """Fast yes/no check of a snapshot's metrics object, generated from ``metrics`` (see ``_fastcheck``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics_ok", compile_metrics_check(self.metrics))

    def metric(self, key: str) -> Entry | None:
        """The snapshot metric named ``key``, or ``None`` when it is not permitted."""
        return self.metrics.get(key)


def _entry(raw: Mapping[str, Any], where: str, clauses: Mapping[str, str], version: int) -> Entry:
    def need(name: str, kind: type) -> Any:
        if name not in raw:
            raise SchemaError(f"{where}.{name}", "missing_field", "required")
        value = raw[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SchemaError(f"{where}.{name}", "wrong_type", f"must be {kind.__name__}")
        return value

    allowed = {"key", "type", "unit", "kind", "description", "purpose", "category", "clause", "coarsening",
               "since", "min", "max", "values", "pattern"}  # fmt: skip
    for name in raw:
        if name not in allowed:
            raise SchemaError(f"{where}.{name}", "unknown_field", "not a catalogue field")
    key = need("key", str)
    if not _KEY.fullmatch(key):
        raise SchemaError(f"{where}.key", "not_allowed", "must be dotted lowercase")
    where = f"{where}[{key}]"
    type_ = need("type", str)
    if type_ not in _TYPES:
        raise SchemaError(f"{where}.type", "not_allowed", f"must be one of {_TYPES}")
    kind = need("kind", str)
    if kind not in _KINDS:
        raise SchemaError(f"{where}.kind", "not_allowed", f"must be one of {_KINDS}")
    category = need("category", str)
    if category not in _CATEGORIES:
        raise SchemaError(f"{where}.category", "not_allowed", f"must be one of {_CATEGORIES}")
    clause = need("clause", str)
    if clause not in clauses:
        raise SchemaError(f"{where}.clause", "not_allowed", "names no clause of the privacy policy")
    coarsening = need("coarsening", str)
    if coarsening not in RULES:
        raise SchemaError(f"{where}.coarsening", "not_allowed", f"must be one of {sorted(RULES)}")
    since = need("since", int)
    if not 1 <= since <= version:
        raise SchemaError(f"{where}.since", "out_of_bounds", "must be a catalogue version up to this one")
    lo = hi = None
    values: tuple[str, ...] = ()
    pattern = regex = None
    if type_ == "int":
        lo, hi = need("min", int), need("max", int)
        if not -_MAX_SAFE_INT <= lo <= hi <= _MAX_SAFE_INT:
            raise SchemaError(f"{where}.max", "out_of_bounds", "needs min <= max within +-2**53")
    elif type_ == "enum":
        values = tuple(need("values", list))
        if not values or not all(_KEY.fullmatch(str(v)) for v in values):
            raise SchemaError(f"{where}.values", "not_allowed", "must be non-empty lowercase words")
    else:
        pattern = need("pattern", str)
        regex = re.compile(pattern)
        # A pattern that matches anything long is free text in disguise.
        if regex.fullmatch("x" * 200) or regex.fullmatch(" " * 200):
            raise SchemaError(f"{where}.pattern", "not_allowed", "too loose: would admit free text")
    return Entry(key=key, type=type_, unit=need("unit", str), kind=kind, description=need("description", str),
                 purpose=need("purpose", str), category=category, clause=clause, coarsening=coarsening,
                 since=since, min=lo, max=hi, values=values, pattern=pattern, regex=regex)  # fmt: skip


def load_catalogue(text: str) -> Catalogue:
    """Parse and check a catalogue document (the TOML text); raises :class:`SchemaError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError("", "invalid_toml", str(exc)) from None
    version = raw.get("catalogue_version")
    if type(version) is not int or version < 1:
        raise SchemaError("catalogue_version", "wrong_type", "must be a positive integer")
    clauses: dict[str, str] = {}
    for name, body in raw.get("clauses", {}).items():
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise SchemaError(f"clauses.{name}.text", "missing_field", "each clause needs its text")
        clauses[name] = body["text"]
    tables: dict[str, dict[str, Entry]] = {"header": {}, "metric": {}}
    for table, entries in tables.items():
        for i, item in enumerate(raw.get(table, [])):
            entry = _entry(item, f"{table}[{i}]", clauses, version)
            if entry.key in tables["header"] or entry.key in tables["metric"]:
                raise SchemaError(f"{table}[{i}].key", "duplicate", f"{entry.key} is listed twice")
            entries[entry.key] = entry
    unknown = set(raw) - {"catalogue_version", "clauses", "header", "metric"}
    if unknown:
        raise SchemaError(sorted(unknown)[0], "unknown_field", "not a catalogue section")
    return Catalogue(version=version, clauses=clauses, header=tables["header"], metrics=tables["metric"])


CATALOGUE: Final = load_catalogue(resources.files(__package__).joinpath("catalogue.toml").read_text("utf-8"))
"""The catalogue shipped with this release."""
