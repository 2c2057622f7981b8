"""The policy catalogue (``catalogue.toml``) loaded into typed, validated entries.

Everything that may be collected, sent or stored is an :class:`Entry` here. Loading checks the
catalogue itself (every entry names a known clause, type, category and coarsening rule), so a bad
edit of the TOML fails at import time and in CI, not in production.

The catalogue is versioned. A catalogue of version N describes every version up to N: each metric
says the version it appeared in (``since``) and, once it is no longer collected, the version that
retired it (``removed_in``). :meth:`Catalogue.metrics_at` gives the metrics a batch built against a
given version may hold, which is how a collector validates batches of older (and newer) agents.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from ._fastcheck import compile_metrics_check
from .coarsen import RULES, is_sig2
from .errors import SchemaError

__all__ = ["CATALOGUE", "Catalogue", "Entry", "build_catalogue", "catalogue_file", "load_catalogue", "read_catalogue"]

EntryType = Literal["int", "enum", "pattern"]
_TYPES: Final = ("int", "enum", "pattern")
_KINDS: Final = ("gauge", "counter", "label")
_CATEGORIES: Final = ("usage", "host")
_KEY: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
# The batch header fields the wire format needs: every catalogue must define them.
_HEADER_KEYS: Final = frozenset({"product.name", "product.version", "agent_version"})
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
    """The catalogue version this entry appeared in."""
    removed_in: int | None = None
    """The catalogue version that retired this metric (no longer collected from then on), or None."""
    min: int | None = None
    max: int | None = None
    values: tuple[str, ...] = ()
    pattern: str | None = None
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def column(self) -> str:
        """The SQL column name the collector stores this metric under (dots become underscores)."""
        return self.key.replace(".", "_")

    def active_at(self, version: int) -> bool:
        """Whether a batch built against catalogue ``version`` may hold this metric."""
        return self.since <= version and (self.removed_in is None or version < self.removed_in)

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
    """The whole catalogue: version, privacy-policy clauses, header fields and snapshot metrics.

    ``metrics`` holds every metric of every version up to :attr:`version`, retired ones included.
    """

    version: int
    clauses: Mapping[str, str]
    header: Mapping[str, Entry]
    metrics: Mapping[str, Entry]
    metrics_ok: Callable[[dict[str, Any]], bool] = field(default=lambda _: False, compare=False, repr=False)
    """Fast yes/no check of a snapshot's metrics object at :attr:`version` (see ``_fastcheck``)."""
    _at: dict[int, tuple[Mapping[str, Entry], Callable[[dict[str, Any]], bool]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics_ok", self.metrics_check(self.version))

    def metric(self, key: str) -> Entry | None:
        """The snapshot metric named ``key`` (of any version, retired or not), or ``None`` when unknown."""
        return self.metrics.get(key)

    def metrics_at(self, version: int) -> Mapping[str, Entry]:
        """The metrics a batch built against catalogue ``version`` may hold.

        For a version newer than this catalogue, the metrics of this catalogue's own version: what this
        catalogue knows of that version (a newer catalogue describes this one's versions unchanged).
        """
        return self._for(version)[0]

    def metrics_check(self, version: int) -> Callable[[dict[str, Any]], bool]:
        """The fast yes/no check of a snapshot's metrics object for a batch of catalogue ``version``."""
        return self._for(version)[1]

    def _for(self, version: int) -> tuple[Mapping[str, Entry], Callable[[dict[str, Any]], bool]]:
        version = min(version, self.version)
        found = self._at.get(version)
        if found is None:
            allowed = {key: e for key, e in self.metrics.items() if e.active_at(version)}
            # A handful of versions at most: one compiled check each, built on first use.
            found = self._at[version] = (allowed, compile_metrics_check(allowed))
        return found

    def added_in(self, version: int) -> list[Entry]:
        """The metrics that appeared in ``version``."""
        return [e for e in self.metrics.values() if e.since == version]

    def retired_in(self, version: int) -> list[Entry]:
        """The metrics that ``version`` retired."""
        return [e for e in self.metrics.values() if e.removed_in == version]


ENTRY_FIELDS: Final = (
    "key",
    "type",
    "unit",
    "kind",
    "description",
    "purpose",
    "category",
    "clause",
    "coarsening",
    "since",
    "removed_in",
    "min",
    "max",
    "values",
    "pattern",
)
"""The fields a catalogue entry may have (in a catalogue TOML file and in a policy document)."""


def _entry(raw: Mapping[str, Any], where: str, clauses: Mapping[str, str], version: int, *, header: bool) -> Entry:
    def need(name: str, kind: type) -> Any:
        if name not in raw:
            raise SchemaError(f"{where}.{name}", "missing_field", "required")
        value = raw[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SchemaError(f"{where}.{name}", "wrong_type", f"must be {kind.__name__}")
        return value

    for name in raw:
        if name not in ENTRY_FIELDS:
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
    removed_in = None
    if "removed_in" in raw:
        if header:
            raise SchemaError(f"{where}.removed_in", "not_allowed", "a batch header field cannot be retired")
        removed_in = need("removed_in", int)
        if not since < removed_in <= version:
            raise SchemaError(
                f"{where}.removed_in", "out_of_bounds", "must be a catalogue version after `since`, up to this one"
            )
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
    return Entry(
        key=key,
        type=type_,
        unit=need("unit", str),
        kind=kind,
        description=need("description", str),
        purpose=need("purpose", str),
        category=category,
        clause=clause,
        coarsening=coarsening,
        since=since,
        removed_in=removed_in,
        min=lo,
        max=hi,
        values=values,
        pattern=pattern,
        regex=regex,
    )


def load_catalogue(text: str) -> Catalogue:
    """Parse and check a catalogue document (the TOML text); raises :class:`SchemaError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError("", "invalid_toml", str(exc)) from None
    unknown = set(raw) - {"catalogue_version", "clauses", "header", "metric"}
    if unknown:
        raise SchemaError(sorted(unknown)[0], "unknown_field", "not a catalogue section")
    clauses = raw.get("clauses", {})
    if not isinstance(clauses, dict):
        raise SchemaError("clauses", "wrong_type", "must be a table of clauses")
    texts: dict[str, Any] = {}
    for name, body in clauses.items():
        texts[name] = body.get("text") if isinstance(body, dict) else None
    return build_catalogue(raw.get("catalogue_version"), texts, raw.get("header", []), raw.get("metric", []))


def build_catalogue(
    version: object, clauses: Mapping[str, object], header: object, metrics: object, *, metrics_name: str = "metric"
) -> Catalogue:
    """Check the parts of a catalogue (from its TOML, or from a policy document's JSON) and build it.

    ``metrics_name`` is what error paths call the list of metrics (``metric`` in TOML, ``metrics`` in JSON).
    """
    if type(version) is not int or version < 1:
        raise SchemaError("catalogue_version", "wrong_type", "must be a positive integer")
    texts: dict[str, str] = {}
    for name, text in clauses.items():
        if not isinstance(text, str):
            raise SchemaError(f"clauses.{name}.text", "missing_field", "each clause needs its text")
        texts[name] = text
    tables: dict[str, dict[str, Entry]] = {"header": {}, "metric": {}}
    for table, name, items in (("header", "header", header), ("metric", metrics_name, metrics)):
        if not isinstance(items, list):
            raise SchemaError(name, "wrong_type", "must be a list of entries")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise SchemaError(f"{name}[{i}]", "wrong_type", "must be a table of fields")
            entry = _entry(item, f"{name}[{i}]", texts, version, header=table == "header")
            if entry.key in tables["header"] or entry.key in tables["metric"]:
                raise SchemaError(f"{name}[{i}].key", "duplicate", f"{entry.key} is listed twice")
            tables[table][entry.key] = entry
    missing = sorted(_HEADER_KEYS - tables["header"].keys())
    if missing:
        raise SchemaError("header", "missing_field", f"needs the batch header field {missing[0]}")
    return Catalogue(version=version, clauses=texts, header=tables["header"], metrics=tables["metric"])


def read_catalogue(path: Path) -> Catalogue:
    """Load the catalogue file at ``path`` (a vendor's, given by the ``catalogue`` setting).

    Raises :class:`SchemaError` whose message starts with the file name (its ``path`` is the field's).
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SchemaError("", "unreadable", f"{path}: cannot read: {reason}") from None
    try:
        return load_catalogue(text)
    except SchemaError as exc:
        raise SchemaError(exc.path, exc.code, f"{path}: {exc.path or 'catalogue'}: {exc.message}") from None


def catalogue_file(path: Path | None) -> Catalogue:
    """The catalogue of the file at ``path``, or the packaged :data:`CATALOGUE` for None.

    What the ``catalogue`` setting of the agent and the collector reads. A file is read again only when its
    size or modification time changed; errors are those of :func:`read_catalogue`.
    """
    if path is None:
        return CATALOGUE
    try:
        info = path.stat()
    except OSError as exc:
        raise SchemaError("", "unreadable", f"{path}: cannot read: {exc.strerror or exc}") from None
    return _cached_file(str(path), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=16)
def _cached_file(path: str, _mtime_ns: int, _size: int) -> Catalogue:
    return read_catalogue(Path(path))


CATALOGUE: Final = load_catalogue(resources.files(__package__).joinpath("catalogue.toml").read_text("utf-8"))
"""The catalogue shipped with this release."""
