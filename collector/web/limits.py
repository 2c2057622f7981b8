"""How much one client may ask: token buckets per client address, slots per token, the ingest body budget.

Everything here lives on the event loop (no locks) and in memory only: a client address is a key of a
bounded dict, never logged, stored or exported as a metric label. Behind a reverse proxy every request
comes from the proxy's address, so the per-address limits then apply to the proxy as a whole; a proxy
in front should limit per client itself (see docs/threat-model.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from collector.config import CollectorConfig
from collector.errors import OverloadedError, RateLimitedError

__all__ = ["BodyBudget", "Limits", "PeerBuckets", "TokenSlots", "peer_of"]

_MAX_PEERS: Final = 65_536
"""Client addresses remembered per bucket set (about 100 bytes each). Past it the least recently seen is
forgotten, which only gives that address a full bucket again: an attacker with many addresses can reset
buckets, never fill memory."""


REPORT_BURST: Final = 32
"""Reports a token may ask at once before ``max_reports_per_min`` paces it: two dashboard views (each asks
about sixteen). With a minute's worth (120), a script asking the costliest report (about 175 ms of CPU
each, bench/flood.py) kept a core busy for its first 20 s; with 32, for about 5 s, then 2 a second."""
QUEUED_PER_SLOT: Final = 4
"""Requests of one token that may wait, per slot of ``max_reports_per_token``, before more get 429."""


def peer_of(request: web.BaseRequest) -> str:
    """The key of the request's client address (the TCP peer; empty when unknown, e.g. a Unix socket)."""
    return request.remote or ""


class PeerBuckets:
    """A token bucket per key (a client address, a token id): ``per_min`` a minute, a burst of ``burst``.

    ``burst`` defaults to one minute's worth.
    """

    def __init__(self, *, per_min: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_min if burst is None else min(burst, per_min))
        self._refill_per_s = per_min / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, at_s)

    def _level(self, peer: str) -> float:
        now = self._clock()
        tokens, at_s = self._buckets.get(peer, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - at_s) * self._refill_per_s)
        self._buckets[peer] = (tokens, now)
        self._buckets.move_to_end(peer)
        if len(self._buckets) > _MAX_PEERS:
            self._buckets.popitem(last=False)
        return tokens

    def retry_after_s(self, peer: str) -> int:
        """Whole seconds until ``peer`` has a token again (at least 1)."""
        missing = 1.0 - self._level(peer)
        return max(1, math.ceil(missing / self._refill_per_s))

    def check(self, peer: str, what: str) -> None:
        """Raise 429 when ``peer``'s bucket is empty; takes nothing."""
        if self._level(peer) < 1.0:
            raise RateLimitedError(f"too many {what}", retry_after_s=self.retry_after_s(peer))

    def take(self, peer: str) -> None:
        """Take one token from ``peer``'s bucket (it may go below zero: a client that keeps failing waits longer)."""
        tokens = self._level(peer)
        self._buckets[peer] = (max(tokens - 1.0, -self._capacity), self._clock())

    def spend(self, peer: str, what: str) -> None:
        """:meth:`check`, then :meth:`take`."""
        self.check(peer, what)
        self.take(peer)


class TokenSlots:
    """At most ``per_token`` requests in progress per token id, and as many again times :data:`QUEUED_PER_SLOT` waiting.

    The dashboard asks for a dozen reports at once with one token: they queue and all get their answer.
    A script asking for more than the queue holds gets 429 for the rest.
    """

    def __init__(self, *, per_token: int) -> None:
        self._per_token = per_token
        self._queue = per_token * QUEUED_PER_SLOT
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}  # holding or waiting, per token

    def waiting(self, token_id: str) -> int:
        """Requests of ``token_id`` waiting for a slot."""
        return max(0, self._users.get(token_id, 0) - self._per_token)

    @asynccontextmanager
    async def hold(self, token_id: str) -> AsyncIterator[None]:
        """Hold one of ``token_id``'s slots for the ``async with`` block, waiting for one; 429 when the queue is full."""
        users = self._users.get(token_id, 0)
        if users >= self._per_token + self._queue:
            raise RateLimitedError(
                f"this token already has {self._per_token} reports in progress and {self._queue} waiting",
                retry_after_s=1,
            )
        slots = self._slots.setdefault(token_id, asyncio.Semaphore(self._per_token))
        self._users[token_id] = users + 1
        try:
            async with slots:
                yield
        finally:
            left = self._users[token_id] - 1
            if left:
                self._users[token_id] = left
            else:  # nobody holds or waits: forget the token (the dict stays as small as the activity)
                del self._users[token_id]
                del self._slots[token_id]


class BodyBudget:
    """Bytes of ingest bodies being received at once over every connection, at most ``max_bytes``."""

    def __init__(self, *, max_bytes: int, retry_after_s: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.taken_bytes_total = 0
        """Every byte ever taken (tells the memory trim job whether bodies arrived since its last pass)."""
        self._retry_after_s = retry_after_s

    def take(self, n: int) -> None:
        """Count ``n`` more bytes held; 503 (and nothing counted) when that would pass the budget."""
        if self.held_bytes + n > self.max_bytes:
            raise OverloadedError("too many request bodies arriving at once", retry_after_s=self._retry_after_s)
        self.held_bytes += n
        self.taken_bytes_total += n

    def give_back(self, n: int) -> None:
        """Return ``n`` bytes taken earlier (the body was handed on, or dropped)."""
        self.held_bytes -= n


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Every per-client limit of one collector process."""

    auth_failures: PeerBuckets
    """401 answers per client address (``max_auth_failures_per_min``)."""
    install_requests: PeerBuckets
    """``/v1/installs/...`` requests per client address (``max_install_requests_per_min``)."""
    reports: TokenSlots
    """Reports in progress per token (``max_reports_per_token``)."""
    report_rate: PeerBuckets
    """Reports asked per token id (``max_reports_per_min``): the buckets are keyed by token id here."""
    bodies: BodyBudget
    """Ingest bodies being received (``max_body_buffer_bytes``)."""

    @classmethod
    def from_config(cls, config: CollectorConfig, *, clock: Callable[[], float] = time.monotonic) -> Limits:
        """The limits ``config`` sets."""
        return cls(
            auth_failures=PeerBuckets(per_min=config.max_auth_failures_per_min, clock=clock),
            install_requests=PeerBuckets(per_min=config.max_install_requests_per_min, clock=clock),
            reports=TokenSlots(per_token=config.max_reports_per_token),
            report_rate=PeerBuckets(per_min=config.max_reports_per_min, burst=REPORT_BURST, clock=clock),
            bodies=BodyBudget(max_bytes=config.max_body_buffer_bytes, retry_after_s=config.retry_after_s),
        )
