"""Bearer tokens for the report API and the dashboard: created once, stored hashed, revocable.

A token looks like ``tct_<token_id>_<secret>``. Only its SHA-256 is stored (table ``tokens``), so a copy
of the database gives no access; the ``token_id`` is the public handle that ``token list`` shows and
``token revoke`` takes. Roles: ``analyst`` reads reports; ``admin`` also manages tokens over HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any, Final

from aiohttp import web

from .errors import BadRequestError, ForbiddenError, UnauthorizedError
from .keys import STORE

__all__ = ["ROLES", "authorize", "bearer", "create_token", "list_tokens", "revoke_token", "token_sha256"]

ROLES: Final = ("analyst", "admin")
_TOKEN: Final = re.compile(r"tct_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_TOKEN_ID: Final = re.compile(r"[0-9a-f]{8}")


def token_sha256(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).hexdigest()


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)


def create_token(con: Any, role: str, now: dt.datetime) -> tuple[str, str]:
    """Store a new token for ``role``; returns ``(token_id, token)``. The token is never retrievable again."""
    if role not in ROLES:
        raise BadRequestError(f"role must be one of {', '.join(ROLES)}", path="role")
    token_id = secrets.token_hex(4)
    token = f"tct_{token_id}_{secrets.token_urlsafe(32)}"
    con.execute(
        "INSERT INTO tokens (token_id, role, token_sha256, created_at) VALUES (?, ?, ?, ?)",
        [token_id, role, token_sha256(token), _naive_utc(now)],
    )
    return token_id, token


def list_tokens(con: Any) -> list[dict[str, Any]]:
    """Every token's id, role, creation and revocation time (never the token or its hash)."""
    rows = con.execute("SELECT token_id, role, created_at, revoked_at FROM tokens ORDER BY created_at, token_id")
    return [
        {
            "token_id": token_id,
            "role": role,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revoked_at": revoked.strftime("%Y-%m-%dT%H:%M:%SZ") if revoked else None,
        }
        for token_id, role, created, revoked in rows.fetchall()
    ]


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


def bearer(request: web.Request) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


async def authorize(request: web.Request, *, admin: bool = False) -> str:
    """The role of the request's valid token; 401 without one, 403 when ``admin`` is needed and missing."""
    token = bearer(request)
    if token is None or _TOKEN.fullmatch(token) is None:
        raise UnauthorizedError("a valid bearer token is required (telemetry-collector token create)")
    rows = await request.app[STORE].read(
        "SELECT role FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL", [token_sha256(token)]
    )
    if not rows:
        raise UnauthorizedError("a valid bearer token is required (telemetry-collector token create)")
    role = str(rows[0][0])
    if admin and role != "admin":
        raise ForbiddenError("this needs an admin token")
    return role
