"""The ``tokens`` table: bearer tokens created once, stored hashed, revoked by id.

A token looks like ``tct_<token_id>_<secret>``. Only its SHA-256 is stored, so a copy of the database gives
no access; the ``token_id`` is the public handle that ``token list`` shows and ``token revoke`` takes.
Roles: ``analyst`` reads reports; ``admin`` also manages tokens over HTTP. Every function takes a DuckDB
connection (the writer's, or a CLI's own) and runs in the caller's transaction; checking a request's
token is :mod:`collector.web.tokens`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any, Final

from collector.errors import BadRequestError
from schema import format_instant

__all__ = ["ROLES", "TOKEN", "check_label", "create_token", "list_tokens", "mark_used", "revoke_token", "token_sha256"]

ROLES: Final = ("analyst", "admin")
TOKEN: Final = re.compile(r"tct_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_TOKEN_ID: Final = re.compile(r"[0-9a-f]{8}")
_LABEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")
"""A token's label: what it is for (``dashboard-pm``, ``weekly export``), never free text of any length."""


def token_sha256(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).hexdigest()


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)


def check_label(label: object) -> str | None:
    """``label`` when it is a valid token label (or None); else a 400 naming ``label``."""
    if label is None:
        return None
    if not isinstance(label, str) or _LABEL.fullmatch(label) is None:
        raise BadRequestError(
            "label: 1-40 letters, digits, spaces and . _ - (starting with a letter or digit)", path="label"
        )
    return label


def create_token(con: Any, role: str, now: dt.datetime, label: str | None = None) -> tuple[str, str]:
    """Store a new token for ``role``; returns ``(token_id, token)``. The token is never retrievable again."""
    if role not in ROLES:
        raise BadRequestError(f"role must be one of {', '.join(ROLES)}", path="role")
    label = check_label(label)
    token_id = secrets.token_hex(4)
    token = f"tct_{token_id}_{secrets.token_urlsafe(32)}"
    con.execute(
        "INSERT INTO tokens (token_id, role, token_sha256, created_at, label) VALUES (?, ?, ?, ?, ?)",
        [token_id, role, token_sha256(token), _naive_utc(now), label],
    )
    return token_id, token


def list_tokens(con: Any) -> list[dict[str, Any]]:
    """Every token's id, role, label, creation, last use (a UTC day) and revocation (never the token or its hash)."""
    rows = con.execute(
        "SELECT token_id, role, label, created_at, last_used_on, revoked_at FROM tokens ORDER BY created_at, token_id"
    )
    return [
        {
            "token_id": token_id,
            "role": role,
            "label": label,
            "created_at": format_instant(created),
            "last_used_on": used.isoformat() if used else None,
            "revoked_at": format_instant(revoked) if revoked else None,
        }
        for token_id, role, label, created, used, revoked in rows.fetchall()
    ]


def mark_used(con: Any, token_ids: Sequence[str], day: dt.date) -> None:
    """Record ``day`` as the last use of ``token_ids``."""
    for token_id in token_ids:
        con.execute("UPDATE tokens SET last_used_on = ? WHERE token_id = ?", [day, token_id])


def revoke_token(con: Any, token_id: str, now: dt.datetime) -> bool:
    """Revoke a token by id; False when no active token has that id."""
    if _TOKEN_ID.fullmatch(token_id) is None:
        return False
    found = con.execute("SELECT count(*) FROM tokens WHERE token_id = ? AND revoked_at IS NULL", [token_id]).fetchone()
    if not found or not found[0]:
        return False
    con.execute(
        "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", [_naive_utc(now), token_id]
    )
    return True
