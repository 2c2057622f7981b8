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
from .store import Store

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
    """Import batch files into ``config.db_path``; print the summary; return the exit code (0, or 2 if any rejected)."""
    out = out if out is not None else sys.stdout
    files = expand_paths(paths)
    summary = ImportSummary()
    show_progress = len(files) >= _PROGRESS_MIN_FILES and sys.stderr.isatty()
    with Store.open(config) as store:
        staged: list[bytes] = []
        for i, path in enumerate(files, 1):
            try:
                body = read_batch_file(path, config.max_body_bytes)
                batch, obj = check_batch(body, now=store.clock(), max_future_s=config.max_future_s)
                receipt = store.import_batch(batch, obj, hashlib.sha256(body).hexdigest(), len(body), staged)
            except CollectorError as exc:
                where = f" at {exc.path}" if exc.path else ""
                summary.rejected.append((str(path), exc.code, exc.message + where))
            except OSError as exc:
                summary.rejected.append((str(path), "unreadable", exc.strerror or "cannot read"))
            else:
                if receipt.duplicate:
                    summary.duplicates += 1
                else:
                    summary.accepted += 1
            if len(staged) >= store.offline_chunk:
                store.commit_staged(staged)
            if show_progress:
                _progress(i, len(files))
        store.commit_staged(staged)
    if show_progress:
        print(file=sys.stderr)
    print(summary.table(), file=out)
    return 2 if summary.rejected else 0


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    sys.stderr.flush()
