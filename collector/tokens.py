"""Bearer tokens for the report API and the dashboard: created once, stored hashed, revocable.

A token looks like ``tct_<token_id>_<secret>``. Only its SHA-256 is stored (table ``tokens``), so a copy
of the database gives no access; the ``token_id`` is the public handle that ``token list`` shows and
``token revoke`` takes. Roles: ``analyst`` reads reports; ``admin`` also manages tokens over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .errors import BadRequestError, ForbiddenError, UnauthorizedError
from .keys import LIMITS, STORE, TOKENS
from .limits import peer_of

__all__ = [
    "ROLES",
    "Caller",
    "TokenCache",
    "authorize",
    "bearer",
    "check_label",
    "create_token",
    "list_tokens",
    "mark_used",
    "revoke_token",
    "token_sha256",
]

log = logging.getLogger(__name__)

ROLES: Final = ("analyst", "admin")
_TOKEN: Final = re.compile(r"tct_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
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
        raise BadRequestError("label: 1-40 letters, digits, spaces and . _ - (starting with a letter or digit)",
                              path="label")  # fmt: skip
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
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "last_used_on": used.isoformat() if used else None,
            "revoked_at": revoked.strftime("%Y-%m-%dT%H:%M:%SZ") if revoked else None,
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


def bearer(request: web.Request) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a valid token belongs to."""

    token_id: str
    role: str


Read = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


class TokenCache:
    """The active tokens by hash, in memory: a request is verified without a database lookup.

    A flood of made-up tokens must not reach the database (each lookup took a thread and delayed ingest).
    The table is read whole (a few hundred rows at most) when the copy is older than ``max_age_s``, so a
    revocation made by another collector of a lake applies within that; and on a miss at most once per
    ``miss_reload_s``, so a token just created elsewhere works within a quarter second while made-up
    tokens cost at most four small reads a second, whatever their rate. Changes made through this process apply at once
    (:meth:`invalidate`). Concurrent reloads share one read.
    """

    def __init__(self, *, max_age_s: float = 5.0, miss_reload_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._max_age_s = max_age_s
        self._miss_reload_s = miss_reload_s
        self._clock = clock
        self._callers: dict[str, Caller] = {}
        self._used_on: dict[str, dt.date] = {}  # token id -> the day its use was last recorded
        self._loaded_at_s = -math.inf
        self._lock = asyncio.Lock()
        self.reloads = 0
        """How many times the table was read (``telemetry_token_reloads_total``)."""

    def invalidate(self) -> None:
        """Forget the copy: the next request reads the table again (after a create or revoke here)."""
        self._loaded_at_s = -math.inf

    async def _reload(self, read: Read, *, older_than_s: float) -> None:
        async with self._lock:
            if self._loaded_at_s > older_than_s:
                return  # another request reloaded while this one waited
            started_s = self._clock()
            rows = await read(
                "SELECT token_sha256, token_id, role, last_used_on FROM tokens WHERE revoked_at IS NULL", ()
            )
            self._callers = {str(sha): Caller(str(token_id), str(role)) for sha, token_id, role, _ in rows}
            self._used_on = {str(token_id): used for _, token_id, _, used in rows if used is not None}
            self._loaded_at_s = started_s
            self.reloads += 1

    def first_use_on(self, caller: Caller, day: dt.date) -> bool:
        """True once per token and day: the first use of ``caller`` on ``day`` (to be recorded)."""
        if self._used_on.get(caller.token_id) == day:
            return False
        self._used_on[caller.token_id] = day
        return True

    async def caller(self, read: Read, token: str) -> Caller | None:
        """The owner of ``token`` when it is active, else None."""
        sha256 = token_sha256(token)
        now_s = self._clock()
        if now_s - self._loaded_at_s > self._max_age_s:
            await self._reload(read, older_than_s=now_s - self._max_age_s)
        found = self._callers.get(sha256)
        if found is None and self._clock() - self._loaded_at_s >= self._miss_reload_s:
            await self._reload(read, older_than_s=self._clock() - self._miss_reload_s)
            found = self._callers.get(sha256)
        return found


_UNAUTHORIZED: Final = "a valid bearer token is required (telemetry-collector token create)"


async def authorize(request: web.Request, *, admin: bool = False) -> Caller:
    """The owner of the request's valid token; 401 without one, 403 when ``admin`` is needed and missing.

    A client address that keeps failing gets 429 before its token is even looked at
    (``max_auth_failures_per_min``).
    """
    failures, peer = request.app[LIMITS].auth_failures, peer_of(request)
    failures.check(peer, "failed authentications from this address")
    token = bearer(request)
    found = None
    if token is not None and _TOKEN.fullmatch(token) is not None:
        found = await request.app[TOKENS].caller(request.app[STORE].read, token)
    if found is None:
        failures.take(peer)
        raise UnauthorizedError(_UNAUTHORIZED)
    store = request.app[STORE]
    today = store.clock().date()
    if request.app[TOKENS].first_use_on(found, today):
        # Once a day per token, in the background: the request never waits for this write.
        task = asyncio.get_running_loop().create_task(_record_use(store, found.token_id, today))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)
    if admin and found.role != "admin":
        raise ForbiddenError("this needs an admin token")
    return found


_PENDING: set[asyncio.Task[None]] = set()  # keeps the background writes referenced until done


async def _record_use(store: Any, token_id: str, day: dt.date) -> None:
    try:
        await store.write(lambda con: mark_used(con, [token_id], day))
    except Exception:  # noqa: BLE001  # a lost "last used" day is not worth an error answer or a traceback
        log.warning("could not record that token %s was used", token_id)
