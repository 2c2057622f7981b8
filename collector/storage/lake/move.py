"""Moving in: copy an embedded database into a lake (``telemetry-collector copy-to-lake``).

The embedded file is opened first as its own collector would (a spool left by a crash is loaded), then
attached read-only to the lake's DuckDB; batches, their snapshots and the tokens the lake does not hold
yet are copied in ONE lake transaction under the write and rollup locks, their dedup claims are written,
and the report rollup is folded. Running it again copies nothing twice, so an interrupted move can
simply be run again; collectors may serve from the lake meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from collector.config import CollectorConfig
from collector.storage.embedded.store import EmbeddedStore

from . import claims, locks
from .commit import Session, transaction
from .store import LakeStore

__all__ = ["Copied", "copy_into_lake"]

_CLAIM_CHUNK: Final = 50_000

_NEW_BATCHES: Final = "SELECT batch_id FROM embedded.main.batches ANTI JOIN lake.main.batches USING (batch_id)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Copied:
    """What one move copied (rows the lake already held are skipped)."""

    batches: int
    snapshots: int
    tokens: int
    skipped_batches: int
    folded: int
    """Batches folded into the report rollup afterwards."""


def copy_into_lake(embedded: CollectorConfig, lake: CollectorConfig, *, say: Callable[[str], None]) -> Copied:
    """Copy ``embedded.db_path`` into the lake of ``lake``; ``say`` receives one progress line per step."""
    say(f"opening {embedded.db_path} (loading any spool left behind)")
    with EmbeddedStore.open(embedded):
        pass  # replays the spool and proves no collector holds the file; closed again before the copy
    say(f"opening the {lake.where}")
    with LakeStore.open(lake) as store:
        window_start = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=lake.dedup_window_days)
        copied = store.run_on_writer(lambda session: _copy(session, str(embedded.db_path.resolve()), window_start, say))
        say("folding the copied batches into the report rollup")
        folded = store.refresh_rollup_sync()
    return Copied(folded=folded, **copied)


def _copy(session: Session, path: str, window_start: dt.datetime, say: Callable[[str], None]) -> dict[str, int]:
    duck, pg = session.duck, session.pg()
    duck.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS embedded (READ_ONLY)")
    try:
        with locks.advisory(pg, locks.ROLLUP), locks.advisory(pg, locks.WRITE):
            total = _scalar(duck, "SELECT count(*) FROM embedded.main.batches")
            say(f"copying: the embedded database holds {total} batches")
            counts = transaction(session, locks.WRITE, lambda con: _copy_rows(con, window_start))
            rows = counts.pop("claims")
            for start in range(0, len(rows), _CLAIM_CHUNK):
                claims.mark_stored(pg, rows[start : start + _CLAIM_CHUNK])
            say(f"copied {counts['batches']} batches, {counts['snapshots']} snapshots, {counts['tokens']} tokens")
            return {**counts, "skipped_batches": total - counts["batches"]}
    finally:
        duck.execute("DETACH embedded")


def _copy_rows(con: Any, window_start: dt.datetime) -> dict[str, Any]:
    # Snapshots first: the anti-join against the lake's batches still sees only what it held before.
    new = con.execute(
        f"SELECT CAST(b.batch_id AS VARCHAR), b.sha256, b.created_at FROM embedded.main.batches b"
        f" WHERE b.batch_id IN ({_NEW_BATCHES})"
    ).fetchall()
    snapshots = _scalar(
        con,
        f"INSERT INTO lake.main.snapshots BY NAME SELECT * FROM embedded.main.snapshots"
        f" WHERE batch_id IN ({_NEW_BATCHES})",
    )
    _scalar(
        con,
        f"INSERT INTO lake.main.snapshot_values BY NAME SELECT * FROM embedded.main.snapshot_values"
        f" WHERE batch_id IN ({_NEW_BATCHES})",
    )
    batches = _scalar(
        con,
        f"INSERT INTO lake.main.batches BY NAME SELECT * FROM embedded.main.batches WHERE batch_id IN ({_NEW_BATCHES})",
    )
    tokens = _scalar(
        con,
        "INSERT INTO lake.main.tokens BY NAME SELECT * FROM embedded.main.tokens"
        " WHERE token_id NOT IN (SELECT token_id FROM lake.main.tokens)",
    )
    recent = [(batch_id, sha, created) for batch_id, sha, created in new if created >= window_start]
    return {"batches": batches, "snapshots": snapshots, "tokens": tokens, "claims": recent}


def _scalar(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
