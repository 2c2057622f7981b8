"""``telemetry-collector import``: store batch files exported from air-gapped installs.

Each file goes through exactly the API's checks (:func:`collector.web.ingest.check_batch`, the size cap
after decompression, dedup against the database), then the new batches are written as a spool
segment and bulk-loaded like any other. A summary table goes to stdout; a progress bar to stderr
when there are many files and stderr is a terminal.

Files come from wherever an export was copied to, so they are handled as untrusted: only regular
files are read (a FIFO would block forever, a device could stream without end, a symlink could point
anywhere), the size is checked with ``fstat`` before reading and no more than the cap + 1 byte is
read, and a name is shown escaped, so a newline or a terminal escape in it cannot forge a summary line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TextIO

from collector.config import CollectorConfig
from collector.errors import BadRequestError, CollectorError, PayloadTooLargeError
from collector.storage import Receipt, Storage, open_storage
from collector.web.ingest import check_batch, gunzip_capped

__all__ = ["ImportSummary", "expand_paths", "import_files", "printable", "read_batch_file", "read_regular_file"]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_PROGRESS_MIN_FILES: Final = 20
_READ_CHUNK: Final = 1024 * 1024
_KINDS: Final = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}
_ESCAPES: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (``\\n``, ``\\x1b``, ``\\\\``), the rest kept.

    Bytes of a file name that are not UTF-8 (decoded by Python as lone surrogates) are shown as ``\\xNN``.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of one raw byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


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

    def reject(self, path: Path | str, exc: CollectorError) -> None:
        """Record one rejected file with its error."""
        where = f" at {exc.path}" if exc.path else ""
        self.rejected.append((str(path), exc.code, exc.message + where))

    def table(self) -> str:
        """The summary for people."""
        lines = [
            f"{'accepted':<12}{self.accepted:>8}",
            f"{'duplicates':<12}{self.duplicates:>8}",
            f"{'rejected':<12}{len(self.rejected):>8}",
        ]
        for code, n in sorted(Counter(code for _, code, _ in self.rejected).items()):
            lines.append(f"  {printable(code):<22}{n:>6}")
        for name, code, message in self.rejected[:50]:
            # Names and messages (which may quote a key from the file) can hold anything: one line each, always.
            lines.append(f"  {printable(name)}: {printable(code)}: {printable(message)}")
        if len(self.rejected) > 50:
            lines.append(f"  ... and {len(self.rejected) - 50} more")
        return "\n".join(lines)


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files as given, plus ``*.json`` and ``*.json.gz`` inside any directory, in a stable order.

    Inside a directory every entry so named is listed except subdirectories, so a FIFO or a symlink there
    is reported as rejected rather than silently skipped.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            names = (p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")))
            out.extend(sorted(p for p in names if not stat.S_ISDIR(p.lstat().st_mode)))
        else:
            out.append(path)
    return out


def _refuse(mode: int) -> BadRequestError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return BadRequestError(f"{kind}, not a regular file: only regular files are imported", code="not_regular_file")


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; reads no more than that + 1.

    Raises BadRequestError ``not_regular_file`` for a symlink, FIFO, device, socket or directory (never
    opened, or opened non-blocking and checked again with ``fstat``, so a swap in between cannot block),
    PayloadTooLargeError when it is larger, OSError when it cannot be read.
    """
    if not stat.S_ISREG(mode := os.lstat(path).st_mode):
        raise _refuse(mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink after the lstat
            raise _refuse(stat.S_IFLNK) from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(info.st_mode)
        if info.st_size > max_bytes:
            raise PayloadTooLargeError(f"the file is {info.st_size} bytes, over max_body_bytes ({max_bytes})")
        chunks, size = [], 0
        while size <= max_bytes and (chunk := f.read(min(_READ_CHUNK, max_bytes + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    if size > max_bytes:  # it grew after the fstat
        raise PayloadTooLargeError(f"the file is over max_body_bytes ({max_bytes})")
    return b"".join(chunks)


def read_batch_file(path: Path, max_body_bytes: int) -> bytes:
    """The decompressed bytes of a batch file (gzip detected by its magic bytes), capped like the API.

    The file itself is capped at ``max_body_bytes`` too, as the API caps a (compressed) body on the wire.
    """
    data = read_regular_file(path, max_body_bytes)
    if data[:2] == _GZIP_MAGIC:
        return gunzip_capped(data, max_body_bytes)
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
                batch, obj = check_batch(
                    body, now=store.clock(), max_future_s=config.max_future_s, catalogue=config.catalogue_in_force
                )
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
