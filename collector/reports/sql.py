"""Running the rollup's SQL: parameters named ``$name`` in the text, for the reader, numbered for DuckDB.

A list value (``$installs::UUID[]``) goes to DuckDB as one JSON text, parsed in SQL: DuckDB's Python
binding converts a list parameter element by element, holding the GIL, at about 0.1 ms per element with
DuckDB 1.5 (it tries to import numpy and pandas for each one when they are not installed). A fold of
1,000 installs passes some 30 such lists: about 3 s during which ingest in the same process waited.
As JSON text the same lists cost a few ms in all. Elements are strings, dates, UUIDs or None. A list
placeholder written with its element type (``$ids::UUID[]``) is parsed straight into that type; that
saves a VARCHAR[] and its cast (about 0.5 ms for 1,000 UUIDs, and a refresh passes some 30 lists).
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

__all__ = ["run", "scalar"]

_AS_LIST: Final = """from_json(${n}, '["{type}"]')"""
"""A list parameter's placeholder: its JSON text parsed into a list of ``type`` (VARCHAR when not written)."""


def _numbered(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    # DuckDB takes $1, $2, ... and rejects values a statement does not use.
    names = [name for name in values if re.search(rf"\${name}\b", sql)]
    params: list[Any] = []
    for n, name in enumerate(names, 1):
        value = values[name]
        if isinstance(value, list | tuple):
            value = orjson.dumps(value).decode()
            # `$name::TYPE[]` (a bare type name) becomes one typed parse; any other use parses VARCHARs.
            sql = re.sub(rf"\${name}::([A-Z]+)\[\]", lambda m: _AS_LIST.format(n=n, type=m[1]), sql)  # noqa: B023
            placeholder = _AS_LIST.format(n=n, type="VARCHAR")
        else:
            placeholder = f"${n}"
        sql = re.sub(rf"\${name}\b", lambda _: placeholder, sql)  # noqa: B023 (used at once)
        params.append(value)
    return sql, params


def run(con: Any, sql: str, **values: Any) -> Any:
    """Execute ``sql`` on ``con`` with the named values; returns the cursor."""
    text, params = _numbered(sql, values)
    return con.execute(text, params)


def scalar(con: Any, sql: str, **values: Any) -> Any:
    """The first column of the first row of ``sql`` (None without a row)."""
    row = run(con, sql, **values).fetchone()
    return row[0] if row else None
