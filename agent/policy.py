"""The policy gate: every raw reading is mapped to a catalogue metric, coarsened and checked, or dropped.

Nothing reaches a snapshot without passing :func:`admit`. Dropped readings are reported by reason;
the value is never kept, and the key only when it is a short identifier (it might be free text).
Which catalogue metrics are collected now (not disabled, not retired, approved, accepted by the
collector) is decided by :mod:`agent.metrics`; this gate only enforces it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from schema import Catalogue, SchemaError, coarsen

__all__ = ["DROP_REASONS", "Admitted", "DropReason", "admit", "safe_key"]

DropReason = Literal["not_in_catalogue", "disabled", "invalid_value", "awaiting_approval", "not_accepted", "retired"]
DROP_REASONS: Final[tuple[DropReason, ...]] = (
    "not_in_catalogue",
    "disabled",
    "invalid_value",
    "awaiting_approval",
    "not_accepted",
    "retired",
)
"""Why a reading was left out: not a catalogue metric, in ``disabled_metrics``, a value the catalogue refuses,
added after the consented catalogue version and not approved, not accepted by the collector, retired."""
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def safe_key(key: str) -> str:
    """The key itself when it is a short identifier, else ``<other>`` (a long key may be free text)."""
    return key if _SAFE_KEY.fullmatch(key) else "<other>"


@dataclass(slots=True)
class Admitted:
    """The metrics that passed, and ``(reason, safe key)`` for each reading that did not."""

    metrics: dict[str, int | str] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)


def _catalogue_key(catalogue: Catalogue, key: str, *, from_provider: bool) -> str | None:
    if not from_provider:
        return key if key in catalogue.metrics else None
    # A provider may say "projects" for "usage.projects"; it may only speak for usage metrics.
    full = key if key.startswith("usage.") else f"usage.{key}"
    entry = catalogue.metrics.get(full)
    return full if entry is not None and entry.category == "usage" else None


def admit(
    raw: Mapping[str, object],
    *,
    catalogue: Catalogue,
    blocked: Mapping[str, DropReason],
    from_provider: bool,
    into: Admitted | None = None,
) -> Admitted:
    """Coarsen and check each reading against ``catalogue``; collect what passes into ``into``.

    ``blocked`` maps the catalogue metrics that are not collected now to the reason (see :data:`DROP_REASONS`).
    """
    out = into if into is not None else Admitted()
    for key, value in raw.items():
        full = _catalogue_key(catalogue, key, from_provider=from_provider)
        if full is None:
            out.dropped.append(("not_in_catalogue", safe_key(key)))
            continue
        reason = blocked.get(full)
        if reason is not None:
            out.dropped.append((reason, full))
            continue
        entry = catalogue.metrics[full]
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
