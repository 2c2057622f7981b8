"""Who may read reports: a request's bearer token checked against an in-memory copy of the ``tokens``
table, and the admin's token routes (``GET/POST /v1/tokens``, ``DELETE /v1/tokens/{token_id}``).

The table and its tokens are :mod:`collector.storage.tokens`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from collector.errors import BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError
from collector.storage.tokens import (
    ROLES,
    TOKEN,
    check_label,
    create_token,
    list_tokens,
    mark_used,
    revoke_token,
    token_sha256,
)
from collector.web.keys import LIMITS, STORE, TOKENS
from collector.web.limits import peer_of
from collector.web.responses import json_response

__all__ = ["Caller", "TokenCache", "authorize", "bearer", "token_routes"]

log = logging.getLogger(__name__)


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

    def __init__(
        self, *, max_age_s: float = 5.0, miss_reload_s: float = 0.25, clock: Callable[[], float] = time.monotonic
    ) -> None:
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
    if token is not None and TOKEN.fullmatch(token) is not None:
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


async def _get_tokens(request: web.Request) -> web.Response:
    await authorize(request, admin=True)
    return json_response({"tokens": await request.app[STORE].write(list_tokens)})


async def _post_token(request: web.Request) -> web.Response:
    await authorize(request, admin=True)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequestError('expected a JSON object {"role": ...}', code="invalid_json") from None
    role = body.get("role") if isinstance(body, dict) else None
    if role not in ROLES:
        raise BadRequestError(f"role must be one of {', '.join(ROLES)}", path="role")
    label = check_label(body.get("label"))
    store = request.app[STORE]
    now = store.clock()
    token_id, token = await store.write(lambda con: create_token(con, role, now, label))
    request.app[TOKENS].invalidate()
    return json_response({"token_id": token_id, "role": role, "label": label, "token": token}, status=201)


async def _delete_token(request: web.Request) -> web.Response:
    await authorize(request, admin=True)
    token_id = request.match_info["token_id"]
    store = request.app[STORE]
    now = store.clock()
    revoked = await store.write(lambda con: revoke_token(con, token_id, now))
    request.app[TOKENS].invalidate()
    if not revoked:
        raise NotFoundError("no active token with this id", path="token_id")
    return json_response({"token_id": token_id, "revoked": True})


def token_routes(router: web.UrlDispatcher) -> None:
    """Add the admin's token routes to ``router``."""
    router.add_get("/v1/tokens", _get_tokens)
    router.add_post("/v1/tokens", _post_token)
    router.add_delete("/v1/tokens/{token_id}", _delete_token)
