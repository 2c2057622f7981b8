"""``telemetry-collector backup PATH``: a consistent copy of the embedded database, written to a new file.

With ``--url`` the running collector makes the copy (``POST /v1/admin/backup``, see
:mod:`collector.web.backup`, which says why backups take this shape) and streams it here; with ``--db`` the
file of a stopped collector is copied. Either way the copy is written beside PATH under a private name,
verified, then linked into place, so PATH is never a partial file and never overwrites one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Final

import duckdb
import orjson

from collector.cli.admin import TOKEN_ENV
from collector.cli.exits import CommandError
from collector.config import CollectorConfig
from collector.errors import ConfigError
from collector.storage.embedded.backup import verify_backup
from collector.storage.embedded.spool import fsync_dir
from collector.storage.embedded.store import EmbeddedStore

__all__ = ["register"]

_CHUNK: Final = 1024 * 1024
_DEFAULT_TIMEOUT_S: Final = 3600.0
"""How long the command waits on the collector: the copy is made before its first byte is sent."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backup`` to the collector CLI."""
    parser = subparsers.add_parser(
        "backup",
        help="write a consistent copy of the database to a new file, while the collector serves",
        description="Write a consistent copy of the embedded DuckDB database to the new file PATH (0600). With"
        " --url, the running collector makes it while it goes on serving (admin token); with --db, the file of a"
        " stopped collector is copied. To restore, stop the collector and put PATH in place of its database file."
        " On a lake, back up PostgreSQL and the object store instead (docs/scale-out.md).",
    )
    parser.add_argument("path", metavar="PATH", type=Path, help="the new file (must not exist)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="DB", type=Path, help="the database file of a stopped collector")
    where.add_argument("--url", metavar="URL", help="a running collector's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", metavar="TOKEN", help=f"admin token for --url (default ${TOKEN_ENV})")
    parser.add_argument(
        "--timeout-s",
        metavar="SECONDS",
        type=float,
        default=_DEFAULT_TIMEOUT_S,
        help=f"how long to wait for the collector (default {_DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(func=_backup, in_use_hint="a running collector holds it: back it up through it with --url URL")


def _backup(args: argparse.Namespace) -> int:
    target: Path = args.path
    if target.exists() or target.is_symlink():
        raise CommandError(f"{target} exists: a backup is always written to a new file", 2)
    folder = target.parent
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a directory", 2)
    # Written beside the target under a name no one else uses, then linked into place (never over a file).
    partial = folder / f".{target.name}.{secrets.token_hex(4)}.partial"
    try:
        if args.url:
            _download(args, partial)
        else:
            _copy_offline(args, partial)
        try:
            version, batches = verify_backup(partial)
        except duckdb.Error as exc:
            raise CommandError(f"the copy is not a readable database ({str(exc).splitlines()[0]})", 1) from None
        try:
            os.link(partial, target)
        except FileExistsError:
            raise CommandError(f"{target} exists: a backup is always written to a new file", 2) from None
        fsync_dir(folder)
    finally:
        for leftover in (partial, partial.with_name(partial.name + ".wal")):
            leftover.unlink(missing_ok=True)
    size = target.stat().st_size
    print(f"backup written to {target}: {batches} batches, {size} bytes, schema version {version}", file=sys.stderr)
    return 0


def _copy_offline(args: argparse.Namespace, partial: Path) -> None:
    config = CollectorConfig.from_env(db_path=args.db)
    if config.lake:
        raise ConfigError("a lake is backed up with PostgreSQL's and the object store's own tools (docs/scale-out.md)")
    if not config.db_path.exists():
        raise CommandError(f"database {config.db_path} does not exist", 2)
    with EmbeddedStore.open(config) as store:
        store.backup_sync(partial)


def _download(args: argparse.Namespace, partial: Path) -> None:
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise CommandError(f"--url needs --token or ${TOKEN_ENV} (an admin token)", 2)
    if not args.url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, got {args.url[:80]!r}", 2)
    url = args.url.rstrip("/") + "/v1/admin/backup"
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)  # noqa: S310  # scheme checked
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CommandError(f"cannot write in {partial.parent}: {exc.strerror}", 1) from None
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=args.timeout_s) as response,  # noqa: S310  # scheme checked
        ):
            expected = int(response.headers.get("Content-Length", "-1"))
            received = _copy(response, out)
    except urllib.error.HTTPError as exc:
        raise CommandError(f"HTTP {exc.code}: {_message(exc)}", 2 if exc.code < 500 else 1) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"cannot reach {args.url}: {getattr(exc, 'reason', exc)}", 1) from None
    if received != expected:
        raise CommandError(f"the collector sent {received} of {expected} bytes; nothing was written", 1)


def _copy(source: Any, out: BinaryIO) -> int:
    # A failing write is ours (a full disk here), not the collector's: said so, not as "cannot reach".
    received = 0
    while chunk := source.read(_CHUNK):
        try:
            out.write(chunk)
        except OSError as exc:
            raise CommandError(f"cannot write the backup: {exc.strerror}", 1) from None
        received += len(chunk)
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise CommandError(f"cannot write the backup: {exc.strerror}", 1) from None
    return received


def _message(exc: urllib.error.HTTPError) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(orjson.loads(exc.read())["error"]["message"])
    return str(exc.reason)
