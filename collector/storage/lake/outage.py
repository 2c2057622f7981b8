"""Which part of the lake an error comes from, and a one-line, credential-free description of it.

Shared by the store (reads, probes, small writes) and the commit process, so both report a failed part
the same way: ``catalog`` (PostgreSQL), ``object_store`` (S3 or the shared directory) or ``lake`` (the
DuckDB instance itself, e.g. invalidated by an internal error).
"""

from __future__ import annotations

from typing import Final

import duckdb
import psycopg

from .connect import LakeSettings
from .locks import LockLostError

__all__ = ["OUTAGES", "CatalogLostError", "busy", "catalog_lost", "classify", "describe", "invalidated"]


class CatalogLostError(Exception):
    """DuckLake lost its PostgreSQL connection mid-statement, which DuckDB reports as a plain ``duckdb.Error``."""


_LOST: Final = (
    "server closed the connection",
    "could not connect to server",
    "connection to server",
    "terminating connection",
    "connection refused",
    "no connection to the server",
)


def catalog_lost(exc: duckdb.Error) -> CatalogLostError | None:
    """``exc`` as a :class:`CatalogLostError` when its message says the catalog's connection is gone, else None."""
    text = str(exc).lower()
    return CatalogLostError(str(exc)) if any(phrase in text for phrase in _LOST) else None


OUTAGES: Final = (
    psycopg.Error,
    LockLostError,
    CatalogLostError,
    duckdb.IOException,
    duckdb.HTTPException,
    duckdb.FatalException,
    duckdb.TransactionException,
    OSError,
)
"""Errors that mean a part of the lake is down or a commit lost a race: 503 and retry, never a 500."""


def busy(exc: BaseException) -> bool:
    """True when a PostgreSQL lock wait ran past the session's ``lock_timeout`` (SQLSTATE 55P03): busy, not down."""
    return isinstance(exc, psycopg.errors.LockNotAvailable)


def invalidated(exc: BaseException) -> bool:
    """True when DuckDB invalidated its whole instance: nothing of it is usable again."""
    return isinstance(exc, duckdb.FatalException) or "database has been invalidated" in str(exc).lower()


def classify(exc: BaseException) -> str:
    """The part ``exc`` says is failing."""
    text = str(exc).lower()
    if invalidated(exc):
        return "lake"
    if isinstance(exc, (psycopg.Error, LockLostError, CatalogLostError)) or "postgres" in text:
        return "catalog"
    if isinstance(exc, (duckdb.HTTPException, OSError)) or "http" in text or "s3" in text:
        return "object_store"
    return "lake"


def describe(exc: BaseException, settings: LakeSettings) -> str:
    """The first line of ``exc``, without any credential, at most 200 characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return settings.redact(text)[:200]
