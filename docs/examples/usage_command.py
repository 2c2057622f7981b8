"""Usage provider, kind *command*: print the product's counts as one JSON object and exit 0.

The agent runs it without a shell, with a timeout (``usage.timeout_s``)::

    [usage]
    command = ["/opt/deployserver/venv/bin/python", "/opt/deployserver/usage_command.py", "/var/lib/deployserver/app.db"]

This stand-in product keeps its projects and deployments in SQLite; a real one asks its own database.
"""

from __future__ import annotations

import json
import sqlite3
import sys


def counts(db_path: str) -> dict[str, int]:
    """Current number of projects and the cumulative number of deployments (never names or ids)."""
    # Read-only: the provider must never change the product's data.
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        projects = con.execute("SELECT count(*) FROM projects").fetchone()[0]
        deployments = con.execute("SELECT count(*) FROM deployments").fetchone()[0]
    return {"projects": int(projects), "deployments": int(deployments)}


def main(argv: list[str]) -> int:
    """Print the counts; exit 1 (the agent then leaves the usage metrics out of this snapshot) on failure."""
    if len(argv) != 2:
        print("usage: usage_command.py DATABASE", file=sys.stderr)
        return 2
    try:
        print(json.dumps(counts(argv[1])))
    except sqlite3.Error as exc:
        print(f"usage_command.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
