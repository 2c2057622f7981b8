"""What ``telemetry-collector serve`` says once it listens, and what it takes back when it cannot listen.

Once listening, ``serve`` prints the dashboard's URL and, while the database holds no active token, how
to create the first one (nothing can read a report without one). When the port is taken, the database
file, its WAL and its spool that this start created are removed again, so a failed start leaves nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from collector.config import CollectorConfig
from collector.storage import Storage

__all__ = ["base_url", "new_paths", "remove_paths", "welcome_lines"]

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # noqa: S104  # compared, not bound


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens: a wildcard listen address becomes the loopback address."""
    shown = _WILDCARDS.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


def new_paths(config: CollectorConfig) -> list[Path]:
    """The local files and directories that opening ``config``'s store would create (none for a lake)."""
    if config.lake:
        return []
    db = config.db_path
    candidates = [db, db.with_name(db.name + ".wal"), config.spool_path]
    return [path for path in candidates if not path.exists()]


def remove_paths(paths: list[Path]) -> None:
    """Remove what :func:`new_paths` listed; call only after the store that created them is closed."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


async def welcome_lines(store: Storage, config: CollectorConfig, url: str) -> list[str]:
    """The lines ``serve`` prints after its listening line: the dashboard, and the first token if none exists."""
    lines = [f"telemetry-collector: dashboard at {url}/dashboard (reports need a token)"]
    try:
        rows = await store.read("SELECT count(*) FROM tokens WHERE revoked_at IS NULL")
    except Exception:  # noqa: BLE001  # only a hint: whatever failed (a lake part just went down), serving goes on
        return lines
    if rows and rows[0][0]:
        return lines
    if config.lake:
        # Every collector of a lake shares its catalog, and the token commands open it like they do.
        create = (
            "telemetry-collector token create --role admin  # with this collector's TELEMETRY_COLLECTOR_* lake settings"
        )
        lines += ["telemetry-collector: no tokens yet; create the first (admin) token with:", f"  {create}"]
    else:
        # DuckDB lets one process hold the file: the first token is written while no collector runs.
        lines += [
            "telemetry-collector: no tokens yet; to create the first (admin) token, stop this collector and run:",
            f"  telemetry-collector token create --role admin --db {config.db_path}",
            f"then start it again; later tokens: telemetry-collector token create --role analyst --url {url}"
            " --token ADMIN_TOKEN",
        ]
    return lines
