"""Rendering report rows as CSV and as a text table for people (used by the API and the CLI)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["range_line", "result_csv", "result_table"]


_ADVERB = {"day": "daily", "week": "weekly", "month": "monthly"}


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


def _table_cell(row: dict[str, Any], column: str, min_group_size: int) -> str:
    if column == "partial":
        return f"{row['days_elapsed']} of {row['days_total']} days" if row.get("partial") else ""
    if row.get(column) is None and row.get("suppressed"):
        return f"<{min_group_size}"
    return _cell(row.get(column))


def result_table(columns: Sequence[str], rows: Sequence[dict[str, Any]], note: str, min_group_size: int) -> str:
    """An aligned table; a suppressed value shows as ``<k``, and the suppression note (if any) follows it.

    The period columns (``partial``, ``days_elapsed``, ``days_total``) become one ``partial`` column, e.g.
    ``2 of 7 days``, shown only when some period is partial.
    """
    any_partial = any(row.get("partial") for row in rows)
    shown = [
        c for c in columns if c not in ("suppressed", "days_elapsed", "days_total") and (c != "partial" or any_partial)
    ]
    body = [[_table_cell(row, c, min_group_size) for c in shown] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        cells = [v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(line, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    if not body:
        lines.append("(no data in this range)")
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n"


def range_line(answer: Mapping[str, Any]) -> str:
    """The heading of a report answer (its JSON form): title, interval, range, product, and what is partial.

    A range that ends after today says so, with how much of the current period has passed, so a short
    last period is not read as a collapse.
    """
    interval, today = answer["interval"], answer.get("today")
    line = f"{answer['title']}, {_ADVERB.get(interval, interval)}, {answer['from']} to {answer['to']}"
    partial = [row for row in answer["rows"] if row.get("partial") and row.get("days_elapsed")]
    if today and partial:
        last = partial[-1]
        line += (
            f" (today is {today}: the {interval} from {last['period']} is partial,"
            f" {last['days_elapsed']} of {last['days_total']} days)"
        )
    elif today and answer["to"] > today:
        line += f" (today is {today})"
    return line + (f", product {answer['product']}" if answer["product"] else ", all products")
