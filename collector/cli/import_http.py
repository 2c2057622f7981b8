"""``telemetry-collector import --url``: send exported batch files to a running collector over HTTP.

A running collector holds its DuckDB file (one process per file), so ``import --db`` cannot write to it.
Through ``--url`` each file is posted, bytes unchanged (gzip'd files with ``Content-Encoding: gzip``), to
``POST /v1/batches``: the same checks and dedup as an agent's delivery, and the same summary as the offline
import. Like the agent, a 408, 429, 502, 503 or 504 is retried (``Retry-After`` as the minimum wait); any
other 4xx rejects that file only. ``POST /v1/batches`` needs no token, so neither does this.
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TextIO

from collector.cli.import_files import ImportSummary, expand_paths, read_regular_file
from collector.errors import CollectorError, ConfigError

__all__ = ["RETRY_STATUSES", "ImportUnreachableError", "import_over_http"]

RETRY_STATUSES: Final = frozenset({408, 429, 502, 503, 504})
"""Answers that say "later", not "never" (the agent retries the same ones)."""
_ATTEMPTS: Final = 5
_MAX_WAIT_S: Final = 30.0
_TIMEOUT_S: Final = 60.0
_GZIP_MAGIC: Final = b"\x1f\x8b"
_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""No file larger is read: the largest ``max_body_bytes`` a collector accepts (it judges smaller ones itself)."""


class ImportUnreachableError(CollectorError):
    """The collector could not be reached, or kept answering "later": the files not yet sent were not sent."""


def _retry_after(value: str | None) -> float:
    try:
        return min(_MAX_WAIT_S, max(0.0, float(value))) if value else 0.0
    except ValueError:  # an HTTP date: rare from our collector; the backoff alone decides
        return 0.0


def _post(url: str, body: bytes) -> tuple[int, bytes, str | None]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if body[:2] == _GZIP_MAGIC:
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310  # scheme checked
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310  # scheme checked
            return response.status, response.read(), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Retry-After")


def _send(url: str, body: bytes, sleep: Callable[[float], None]) -> tuple[int, bytes]:
    """POST until the answer is final; raises ImportUnreachableError after the last attempt."""
    for attempt in range(_ATTEMPTS):
        try:
            status, answer, retry_after = _post(url, body)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if attempt == _ATTEMPTS - 1:
                raise ImportUnreachableError(f"cannot reach {url}: {reason}") from None
            status, answer, retry_after = 0, b"", None
        if status and status not in RETRY_STATUSES:
            return status, answer
        if attempt == _ATTEMPTS - 1:
            raise ImportUnreachableError(f"{url} answered HTTP {status} {_ATTEMPTS} times; try again later")
        # Exponential backoff with full jitter, never shorter than the collector asked for.
        sleep(max(_retry_after(retry_after), random.uniform(0, min(_MAX_WAIT_S, 0.25 * 2**attempt))))  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover


def _error(answer: bytes) -> tuple[str, str]:
    try:
        error = json.loads(answer)["error"]
        where = f" at {error['path']}" if error.get("path") else ""
        return str(error["code"]), str(error["message"]) + where
    except (ValueError, KeyError, TypeError):
        return "http_error", answer[:200].decode("utf-8", "replace")


def import_over_http(
    url: str, paths: Sequence[str], *, out: TextIO | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    """Post each batch file to ``url``'s ``/v1/batches``; print the summary; return 0, or 2 if any was rejected.

    Raises :class:`ImportUnreachableError` (exit 1) when the collector cannot be reached or stays busy;
    the summary of the files handled until then is printed first.
    """
    out = out if out is not None else sys.stdout
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url must start with http:// or https://, got {url[:80]!r}", path="url")
    endpoint = url.rstrip("/") + "/v1/batches"
    summary = ImportSummary()
    try:
        for path in expand_paths(paths):
            try:
                # Only regular files, size checked first, as the offline import (a FIFO would hang here).
                body = read_regular_file(Path(path), _MAX_FILE_BYTES)
            except CollectorError as exc:
                summary.reject(path, exc)
                continue
            except OSError as exc:
                summary.rejected.append((str(path), "unreadable", exc.strerror or "cannot read"))
                continue
            status, answer = _send(endpoint, body, sleep)
            if status // 100 == 2:
                duplicate = bool(json.loads(answer).get("duplicate"))
                summary.duplicates += duplicate
                summary.accepted += not duplicate
            else:
                code, message = _error(answer)
                summary.rejected.append((str(path), code, f"HTTP {status}: {message}"))
    finally:
        print(summary.table(), file=out)
    return 2 if summary.rejected else 0
