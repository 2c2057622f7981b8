"""``telemetry-collector import``: store batch files exported from air-gapped installs.

Each file goes through exactly the API's checks (:func:`collector.ingest.check_batch`, the size cap
after decompression, dedup against the database), then the new batches are written as a spool
segment and bulk-loaded like any other. A summary table goes to stdout; a progress bar to stderr
when there are many files and stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TextIO

from .config import CollectorConfig
from .errors import CollectorError, PayloadTooLargeError
from .ingest import check_batch, gunzip_capped
from .storage import Receipt, Storage, open_storage

__all__ = ["ImportSummary", "expand_paths", "import_files", "read_batch_file"]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_PROGRESS_MIN_FILES: Final = 20


class ImportSummary:
    """Counts of one import run, and each rejected file with its error code."""

    def __init__(self) -> None:
        self.accepted = 0
        self.duplicates = 0
        self.rejected: list[tuple[str, str, str]] = []
        """(file, code, message) per rejected file."""

    def count(self, receipt: Receipt) -> None:
        """Count one stored or duplicate batch."""
        if receipt.duplicate:
            self.duplicates += 1
        else:
            self.accepted += 1

    def reject(self, path: Path, exc: CollectorError) -> None:
        """Record one rejected file with its error."""
        where = f" at {exc.path}" if exc.path else ""
        self.rejected.append((str(path), exc.code, exc.message + where))

    def table(self) -> str:
        """The summary for people."""
        lines = [f"{'accepted':<12}{self.accepted:>8}", f"{'duplicates':<12}{self.duplicates:>8}",
                 f"{'rejected':<12}{len(self.rejected):>8}"]  # fmt: skip
        for code, n in sorted(Counter(code for _, code, _ in self.rejected).items()):
            lines.append(f"  {code:<22}{n:>6}")
        for name, code, message in self.rejected[:50]:
            lines.append(f"  {name}: {code}: {message}")
        if len(self.rejected) > 50:
            lines.append(f"  ... and {len(self.rejected) - 50} more")
        return "\n".join(lines)


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files as given, plus ``*.json`` and ``*.json.gz`` inside any directory, in a stable order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")) and p.is_file()))
        else:
            out.append(path)
    return out


def read_batch_file(path: Path, max_body_bytes: int) -> bytes:
    """The decompressed bytes of a batch file (gzip detected by its magic bytes), capped like the API."""
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        return gunzip_capped(data, max_body_bytes)
    if len(data) > max_body_bytes:
        raise PayloadTooLargeError(f"over {max_body_bytes} bytes after decompression")
    return data


def import_files(config: CollectorConfig, paths: Sequence[str], *, out: TextIO | None = None) -> int:
    """Import batch files into the configured store; print the summary; return the exit code (0, or 2 if any rejected)."""
    out = out if out is not None else sys.stdout
    files = expand_paths(paths)
    summary = ImportSummary()
    show_progress = len(files) >= _PROGRESS_MIN_FILES and sys.stderr.isatty()
    with open_storage(config) as store:
        staged: list[object] = []
        staged_paths: list[Path] = []
        for i, path in enumerate(files, 1):
            try:
                body = read_batch_file(path, config.max_body_bytes)
                batch, obj = check_batch(body, now=store.clock(), max_future_s=config.max_future_s)
                receipt = store.import_batch(batch, obj, hashlib.sha256(body).hexdigest(), len(body), staged)
            except CollectorError as exc:
                summary.reject(path, exc)
            except OSError as exc:
                summary.rejected.append((str(path), "unreadable", exc.strerror or "cannot read"))
            else:
                if receipt is None:
                    staged_paths.append(path)
                else:
                    summary.count(receipt)
            if len(staged) >= store.offline_chunk:
                _commit(store, staged, staged_paths, summary)
            if show_progress:
                _progress(i, len(files))
        _commit(store, staged, staged_paths, summary)
    if show_progress:
        print(file=sys.stderr)
    print(summary.table(), file=out)
    return 2 if summary.rejected else 0


def _commit(store: Storage, staged: list[object], paths: list[Path], summary: ImportSummary) -> None:
    # The backend decides some outcomes only here (the lake dedups against every collector's batches).
    for path, outcome in zip(paths, store.commit_staged(staged), strict=True):
        if isinstance(outcome, Receipt):
            summary.count(outcome)
        else:
            summary.reject(path, outcome)
    paths.clear()


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    sys.stderr.flush()
