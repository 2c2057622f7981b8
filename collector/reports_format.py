"""Rendering report rows as CSV and as a text table for people (used by the API and the CLI)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

__all__ = ["result_csv", "result_table"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _numeric(text: str) -> bool:
    return text.lstrip("<-").replace(".", "", 1).isdigit()


def result_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """CSV text: a header line, then one line per row; suppressed values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    return out.getvalue()


def result_table(columns: Sequence[str], rows: Sequence[dict[str, Any]], note: str, min_group_size: int) -> str:
    """An aligned table; a suppressed value shows as ``<k``, and the suppression note follows it."""
    shown = [c for c in columns if c != "suppressed"]
    body = [
        [f"<{min_group_size}" if row.get(c) is None and row.get("suppressed") else _cell(row.get(c)) for c in shown]
        for row in rows
    ]
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        cells = [v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(line, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    if not body:
        lines.append("(no data in this range)")
    lines.append(note)
    return "\n".join(lines) + "\n"
