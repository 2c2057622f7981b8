"""Usage provider, kind *command*: print the product's counts as one JSON object and exit 0.

The agent runs it without a shell, with a timeout (``usage.timeout_s``)::

    [usage]
    command = ["/opt/deployserver/venv/bin/python", "/opt/deployserver/usage_command.py", "/var/lib/deployserver/app.db"]

This stand-in product keeps its data in SQLite, in two tables (a real product asks its own database, in its
own layout: only the two counts matter)::

    CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE deployments (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects (id),
                              finished_at TEXT NOT NULL);

``python usage_command.py --create-demo PATH`` makes such a database with a few rows, to try the provider
without the product. On failure it prints one line to stderr and exits 1: the agent shows that line as the
reason the snapshot has no usage counts.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

SCHEMA = """
CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE deployments (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects (id),
                          finished_at TEXT NOT NULL);
"""


def counts(db_path: str) -> dict[str, int]:
    """Current number of projects and the cumulative number of deployments (never names or ids)."""
    # Read-only: the provider must never change the product's data (and must not create a missing file).
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        projects = con.execute("SELECT count(*) FROM projects").fetchone()[0]
        deployments = con.execute("SELECT count(*) FROM deployments").fetchone()[0]
    finally:
        con.close()
    return {"projects": int(projects), "deployments": int(deployments)}


def create_demo(db_path: Path, *, projects: int = 4, deployments: int = 57) -> None:
    """A database in the layout above with ``projects`` projects and ``deployments`` deployments."""
    con = sqlite3.connect(db_path)
    try:
        with con:
            con.executescript(SCHEMA)
            con.executemany("INSERT INTO projects (name) VALUES (?)", [(f"project-{n}",) for n in range(projects)])
            con.executemany(
                "INSERT INTO deployments (project_id, finished_at) VALUES (?, ?)",
                [(1 + n % projects, "2026-11-28T10:00:00Z") for n in range(deployments)],
            )
    finally:
        con.close()


def main(argv: list[str]) -> int:
    """Print the counts; exit 1 (the agent then leaves the usage metrics out of this snapshot) on failure."""
    if len(argv) == 3 and argv[1] == "--create-demo":
        try:
            create_demo(Path(argv[2]))
        except sqlite3.Error as exc:
            print(f"usage_command.py: cannot create {argv[2]}: {exc}", file=sys.stderr)
            return 1
        print(f"created {argv[2]}: 4 projects, 57 deployments")
        return 0
    if len(argv) != 2:
        print("usage: usage_command.py DATABASE  |  usage_command.py --create-demo DATABASE", file=sys.stderr)
        return 2
    try:
        print(json.dumps(counts(argv[1])))
    except sqlite3.Error as exc:
        print(f"usage_command.py: {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
