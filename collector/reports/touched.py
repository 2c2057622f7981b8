"""The installs a change of ``report_days`` touches, as SQL: ``(install_id, from_day)`` pairs.

:mod:`~collector.reports.aggregates` (periods, first and last days) and :mod:`~collector.reports.groups`
(group counts) take back and put back what these installs contribute from each one's ``from_day`` on.
They reach DuckDB as list parameters, never as a work table: on a lake, a table's column statistics
would keep the ids that passed through it, erasure or not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["GAUGES", "TOUCHED", "TOUCHED_ROWS", "Touched", "parameters"]

Touched = Sequence[tuple[str, dt.date]]
"""``(install_id, from_day)`` pairs: the installs whose ``report_days`` change from ``from_day`` on."""

# The touched installs, from the list parameters of parameters().
# $earliest is the lowest period start any of them needs, as a constant so that scans skip old row groups.
# MATERIALIZED: otherwise the optimizer copies the 1,000-element list constants into every reference and
# works through each copy (a refresh's optimizer time went from about 50 ms to 37 ms with this).
TOUCHED_ROWS: Final = "SELECT unnest($installs::UUID[]) AS install_id, unnest($froms::DATE[]) AS from_day"
TOUCHED: Final = f"touched AS MATERIALIZED ({TOUCHED_ROWS})"
GAUGES: Final = "os_family, os_version, cpu_cores, memory_gib, disk_total_gib, disk_free_gib"


def parameters(touched: Touched, sign: int | None = None) -> dict[str, Any]:
    """The statements' named values for ``touched``: ``$installs``, ``$froms``, ``$earliest`` (the lowest
    start of a week or month holding a from_day), ``$earliest_day`` and, given, ``$sign``."""
    froms = [day for _, day in touched]
    # The lowest start of a week or a month holding a from_day (a week can begin in the previous month).
    first = min(froms)
    earliest = (
        first if first < dt.date(1, 1, 8) else min(first - dt.timedelta(days=first.weekday()), first.replace(day=1))
    )
    values: dict[str, Any] = {
        "installs": [i for i, _ in touched],
        "froms": froms,
        "earliest": earliest,
        "earliest_day": first,
    }
    if sign is not None:
        values["sign"] = sign
    return values
