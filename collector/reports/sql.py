"""Running the rollup's SQL: parameters named ``$name`` in the text, for the reader, numbered for DuckDB."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["run", "scalar"]


def _numbered(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    # DuckDB takes $1, $2, ... and rejects values a statement does not use.
    names = [name for name in values if re.search(rf"\${name}\b", sql)]
    for n, name in enumerate(names, 1):
        sql = re.sub(rf"\${name}\b", f"${n}", sql)
    return sql, [values[name] for name in names]


def run(con: Any, sql: str, **values: Any) -> Any:
    """Execute ``sql`` on ``con`` with the named values; returns the cursor."""
    text, params = _numbered(sql, values)
    return con.execute(text, params)


def scalar(con: Any, sql: str, **values: Any) -> Any:
    """The first column of the first row of ``sql`` (None without a row)."""
    row = run(con, sql, **values).fetchone()
    return row[0] if row else None
