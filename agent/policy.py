"""The policy gate: every raw reading is mapped to a catalogue metric, coarsened and checked, or dropped.

Nothing reaches a snapshot without passing :func:`admit`. Dropped readings are reported by reason;
the value is never kept, and the key only when it is a short identifier (it might be free text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from schema import CATALOGUE, SchemaError, coarsen

__all__ = ["DROP_REASONS", "Admitted", "admit", "safe_key"]

DROP_REASONS: Final = ("not_in_catalogue", "disabled", "invalid_value")
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def safe_key(key: str) -> str:
    """The key itself when it is a short identifier, else ``<other>`` (a long key may be free text)."""
    return key if _SAFE_KEY.fullmatch(key) else "<other>"


@dataclass(slots=True)
class Admitted:
    """The metrics that passed, and ``(reason, safe key)`` for each reading that did not."""

    metrics: dict[str, int | str] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)


def _catalogue_key(key: str, *, from_provider: bool) -> str | None:
    if not from_provider:
        return key if key in CATALOGUE.metrics else None
    # A provider may say "projects" for "usage.projects"; it may only speak for usage metrics.
    full = key if key.startswith("usage.") else f"usage.{key}"
    entry = CATALOGUE.metrics.get(full)
    return full if entry is not None and entry.category == "usage" else None


def admit(
    raw: Mapping[str, object], *, disabled: frozenset[str], from_provider: bool, into: Admitted | None = None
) -> Admitted:
    """Coarsen and check each reading against the catalogue; collect what passes into ``into``."""
    out = into if into is not None else Admitted()
    for key, value in raw.items():
        full = _catalogue_key(key, from_provider=from_provider)
        if full is None:
            out.dropped.append(("not_in_catalogue", safe_key(key)))
            continue
        if full in disabled:
            out.dropped.append(("disabled", full))
            continue
        entry = CATALOGUE.metrics[full]
        if isinstance(value, bool):  # JSON true is not the number 1
            out.dropped.append(("invalid_value", full))
            continue
        try:
            coarse = coarsen(entry.coarsening, value)
            entry.check(coarse, full)
        except (SchemaError, TypeError, ValueError):
            out.dropped.append(("invalid_value", full))
            continue
        assert isinstance(coarse, int | str)
        out.metrics[full] = coarse
    return out
