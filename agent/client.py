"""Delivery to the collector (the HTTP :class:`~agent.transport.Transport`): gzip POST with timeouts, TLS, proxies, failover, retries with backoff, receipt check.

Retry rule: network errors, timeouts, 408, 429, 502, 503 and 504 are transient, and so is a 200 whose
receipt does not echo our sha256. Any other 4xx is final: the batch will never be accepted as it is, so
it is not tried at another endpoint either. Another 5xx takes that endpoint out for the rest of the call.

Failover rule (``endpoint`` may list several collectors): the attempts of one delivery go round the
list in order, starting at the *current* endpoint, the one that last gave any HTTP answer. After a
transient failure the next attempt goes at once to the next endpoint (wrapping around); only once
every endpoint has failed in a round does the agent back off, by exponential backoff with full jitter
(``uniform(0, min(max_backoff_s, base * 2**round))``), never less than the largest ``Retry-After`` heard
in the round (clamped to ``max_backoff_s``). So a dead collector costs one failed connection, not a
backoff, while another is up; ``max_attempts`` counts rounds. With one endpoint, a round is one attempt.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

import aiohttp
import orjson

from schema import format_instant

from .config import AgentConfig, Endpoint
from .errors import ConfigError, RejectedError, SendError
from .records import AttemptOutcome, ErrorInfo
from .transport import Attempt, Delivery

__all__ = ["RETRYABLE_STATUSES", "HttpTransport", "parse_retry_after", "starting_endpoint"]

RETRYABLE_STATUSES: Final = frozenset({408, 429, 502, 503, 504})
_MAX_ANSWER_BYTES: Final = 1024 * 1024  # receipts and errors are tiny; a remote install record may be larger
_MAX_ERROR_TEXT: Final = 300


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The whole answer body, up to ``_MAX_ANSWER_BYTES`` (``content.read(n)`` alone may return a partial chunk)."""
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_ANSWER_BYTES:
        chunk = await resp.content.read(_MAX_ANSWER_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    """What one POST came to, before the failover rule decides what follows."""

    status: int | None  # None: no HTTP answer at all
    kind: Literal["delivered", "duplicate", "rejected", "transient", "broken"]  # rejected: a final 4xx; broken: 5xx
    error: ErrorInfo | None = None
    retry_after_s: float | None = None

    @property
    def final(self) -> bool:
        """Whether the delivery ends here, whatever the attempts left (delivered, or refused for good)."""
        return self.kind in ("delivered", "duplicate", "rejected")

    def attempt(self, at: str, endpoint: Endpoint, wait_s: float | None) -> Attempt:
        """The attempt this answer makes: a failure is ``retry`` when another attempt follows (``wait_s`` set)."""
        if self.kind in ("delivered", "duplicate", "rejected"):
            outcome: AttemptOutcome = self.kind
        else:
            outcome = "failed" if wait_s is None else "retry"
        return Attempt(
            at=at, status=self.status, outcome=outcome, error=self.error, wait_s=wait_s, endpoint=endpoint.label
        )


def starting_endpoint(endpoints: tuple[Endpoint, ...], chosen_key: str | None) -> int:
    """Index of the endpoint to start at: the stored choice while it is still configured, else the first."""
    return next((n for n, e in enumerate(endpoints) if e.key == chosen_key), 0)


def _error_of(body: bytes, status: int) -> ErrorInfo:
    try:
        obj = orjson.loads(body)
        err = obj["error"]
        out = {k: str(err[k])[:_MAX_ERROR_TEXT] for k in ("code", "message", "path") if k in err}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        out = {"code": f"http_{status}", "message": f"HTTP {status}"}
    return ErrorInfo(code=out.get("code", f"http_{status}"), message=out.get("message"), path=out.get("path"))


def _request_error(exc: BaseException) -> ErrorInfo:
    """The error of a request that got no HTTP answer (refused, reset, timed out, TLS failure)."""
    return ErrorInfo(code="network", message=(str(exc) or type(exc).__name__)[:_MAX_ERROR_TEXT])


class HttpTransport:
    """Talks to the collectors named by ``config.endpoint``, failing over between them.

    ``current`` is the key of the endpoint to start at (the stored choice); ``on_answer`` is called with
    an endpoint whenever it answers and is not the stored choice, so the caller can store the new one
    (never with a single endpoint: there is nothing to choose).
    ``sleep``, ``rng`` and ``now`` are injectable.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        current: str | None = None,
        on_answer: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self._endpoints = config.endpoints
        if not self._endpoints:
            raise ConfigError("endpoint", "not set: needed to talk to the collector (or set TELEMETRY_ENDPOINT)")
        self._config = config
        self._current = starting_endpoint(self._endpoints, current)
        self._stored_key = current
        self._on_answer = on_answer
        self._sleep = sleep
        self._rng = rng if rng is not None else random.SystemRandom()
        self._now = now
        self._tls: ssl.SSLContext | None = None

    @property
    def current(self) -> Endpoint:
        """The endpoint the next call starts at: the last one that answered."""
        return self._endpoints[self._current]

    def _rotation(self) -> list[int]:
        n = len(self._endpoints)
        return [(self._current + k) % n for k in range(n)]

    def _answered(self, index: int) -> None:
        # Any HTTP answer, even a rejection or a 503, shows that collector is reachable: start there next time.
        self._current = index
        endpoint = self._endpoints[index]
        # With one endpoint there is nothing to choose, so nothing to store.
        if len(self._endpoints) > 1 and endpoint.key != self._stored_key:
            self._stored_key = endpoint.key
            if self._on_answer is not None:
                self._on_answer(endpoint)

    def backoff_s(self, retry: int, retry_after_s: float | None) -> float:
        """The wait after round number ``retry`` (0-based): full jitter, at least the clamped Retry-After."""
        cap = self._config.max_backoff_s
        delay = self._rng.uniform(0, min(cap, self._config.backoff_base_s * 2**retry))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, cap))
        return delay

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=self._config.send_timeout_s, connect=self._config.connect_timeout_s)
        # trust_env: HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply unless `proxy` is configured.
        return aiohttp.ClientSession(timeout=timeout, trust_env=True)

    def _ssl(self) -> ssl.SSLContext | bool:
        """The TLS context of every request of this client, made once (at the first request that needs it)."""
        if self._config.ca_bundle is None:
            return True  # default verification against the system store
        if self._tls is None:
            # Made inside the request's error handling: a CA bundle that cannot be read fails that request.
            self._tls = ssl.create_default_context(cafile=str(self._config.ca_bundle))
        return self._tls

    async def _post(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes, batch_id: str, digest: str
    ) -> _Answer:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        try:
            async with session.post(
                f"{endpoint.base}/v1/batches", data=body, headers=headers, ssl=self._ssl(), proxy=self._config.proxy
            ) as resp:
                answer = await _read_capped(resp)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._now())
                return _handle_response(resp.status, answer, retry_after, batch_id, digest)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Answer(status=None, kind="transient", error=_request_error(exc))

    def _wait_after(
        self, pos: int, live: list[int], round_n: int, out: int, retry_after_s: float | None
    ) -> float | None:
        """The wait before the next attempt, after the one at ``pos`` of this round failed; None: none follows."""
        if pos + 1 < len(live):
            return 0.0  # fail over at once: another collector may well be up
        if round_n + 1 < self._config.max_attempts and out < len(self._endpoints):
            return self.backoff_s(round_n, retry_after_s)
        return None

    async def deliver(self, data: bytes, batch_id: str, on_attempt: Callable[[Attempt], None]) -> Delivery:
        """POST the exact bytes until delivered, rejected or out of attempts; reports every attempt."""
        digest = hashlib.sha256(data).hexdigest()
        body = gzip.compress(data, mtime=0)
        attempts: list[Attempt] = []
        # The order is fixed for the whole delivery, so every retry moves on to the next endpoint.
        order = self._rotation()
        broken: set[int] = set()
        async with self._session() as session:
            for round_n in range(self._config.max_attempts):
                live = [i for i in order if i not in broken]
                round_retry_after: float | None = None
                for pos, index in enumerate(live):
                    endpoint = self._endpoints[index]
                    at = format_instant(self._now())
                    answer = await self._post(session, endpoint, body, batch_id, digest)
                    if answer.status is not None:
                        self._answered(index)
                    if answer.kind == "broken":
                        broken.add(index)
                    elif answer.retry_after_s is not None:
                        round_retry_after = max(round_retry_after or 0.0, answer.retry_after_s)
                    wait = (
                        None if answer.final else self._wait_after(pos, live, round_n, len(broken), round_retry_after)
                    )
                    attempt = answer.attempt(at, endpoint, wait)
                    on_attempt(attempt)
                    attempts.append(attempt)
                    if wait is None:
                        return Delivery(attempts=tuple(attempts))
                    if wait > 0:
                        await self._sleep(wait)
        return Delivery(attempts=tuple(attempts))

    def refuse_cleartext(self) -> None:
        """Raise :class:`ConfigError` naming the first endpoint the install secret must not travel to."""
        for endpoint in self._endpoints:
            # The secret proves ownership of the install's data: it must not be readable on the way. Checked
            # for every endpoint before the first request, as failover could reach any of them.
            if endpoint.cleartext:
                raise ConfigError(
                    endpoint.name,
                    "is plain http:// to another machine; the install secret is sent "
                    "only over https:// (or to this machine: 127.0.0.1, ::1, localhost)",
                )

    async def fetch_policy(self) -> tuple[Endpoint, dict[str, Any]] | None:
        """``GET /v1/policy`` from the first endpoint that answers it, starting at the current one.

        Returns the endpoint and the JSON object, or None when an endpoint answers 404 (no policy to learn
        there). One round without backoff: the policy is a cache, and the delivery that follows retries on
        its own. Does not move the current endpoint: only deliveries do. Raises :class:`SendError`.
        """
        failure: SendError | None = None
        async with self._session() as session:
            for index in self._rotation():
                endpoint = self._endpoints[index]
                try:
                    async with session.get(
                        f"{endpoint.base}/v1/policy", ssl=self._ssl(), proxy=self._config.proxy
                    ) as resp:
                        answer = await _read_capped(resp)
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    failure = SendError(f"{endpoint.label} unreachable: {str(exc) or type(exc).__name__}")
                    continue
                if status == 200:
                    return endpoint, _json_object(answer, status)
                if status == 404:
                    return None
                failure = SendError(f"{endpoint.label} answered HTTP {status} for /v1/policy", status=status)
        assert failure is not None
        raise failure

    async def install_request(self, method: str, install_id: str, secret: str) -> dict[str, Any]:
        """GET or DELETE ``/v1/installs/ID`` proven by the secret; the JSON answer, or :class:`SendError`.

        Fails over like :meth:`deliver` but makes one round without backoff (the admin is waiting and
        can run the command again): an unreachable endpoint, a 408/429/5xx moves on to the next one; a
        final 4xx (e.g. 401) or an answer that is not a JSON object ends the request.
        Refused (:class:`ConfigError`, before any request) when an endpoint is plain HTTP off this machine.
        """
        self.refuse_cleartext()
        failure: SendError | None = None
        tried: list[str] = []
        async with self._session() as session:
            for index in self._rotation():
                endpoint = self._endpoints[index]
                tried.append(endpoint.label)
                try:
                    async with session.request(
                        method,
                        f"{endpoint.base}/v1/installs/{install_id}",
                        headers={"Authorization": f"Bearer {secret}"},
                        ssl=self._ssl(),
                        proxy=self._config.proxy,
                    ) as resp:
                        answer = await _read_capped(resp)
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    failure = SendError(f"collector unreachable: {str(exc) or type(exc).__name__}")
                    continue
                self._answered(index)
                if status == 200:
                    return _json_object(answer, status)
                error = _error_of(answer, status)
                message = f"collector answered HTTP {status}: {error.message or ''}"
                if 400 <= status < 500 and status not in RETRYABLE_STATUSES:
                    raise RejectedError(message, status=status)
                failure = SendError(message, status=status)
        assert failure is not None
        if len(tried) > 1:
            failure = SendError(f"{failure} (tried {', '.join(tried)})", status=failure.status)
        raise failure


def _handle_response(status: int, answer: bytes, retry_after_s: float | None, batch_id: str, digest: str) -> _Answer:
    """What an HTTP answer to a POST of the batch means (the retry rule of the module docstring)."""
    if status == 200:
        kind = _receipt_kind(answer, batch_id, digest)
        if kind is not None:
            return _Answer(status=200, kind=kind)
        error = ErrorInfo(code="bad_receipt", message="receipt does not match the bytes sent")
        return _Answer(status=200, kind="transient", error=error)
    error = _error_of(answer, status)
    if status in RETRYABLE_STATUSES:
        return _Answer(status=status, kind="transient", error=error, retry_after_s=retry_after_s)
    return _Answer(status=status, kind="rejected" if 400 <= status < 500 else "broken", error=error)


def _receipt_kind(answer: bytes, batch_id: str, digest: str) -> Literal["delivered", "duplicate"] | None:
    """``delivered`` or ``duplicate`` when the receipt matches the batch and its bytes, else None."""
    try:
        receipt = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(receipt, dict) or receipt.get("batch_id") != batch_id or receipt.get("sha256") != digest:
        return None
    return "duplicate" if receipt.get("duplicate") is True else "delivered"


def _json_object(answer: bytes, status: int) -> dict[str, Any]:
    try:
        obj = orjson.loads(answer)
    except orjson.JSONDecodeError:
        raise SendError("collector answered something other than JSON", status=status) from None
    if not isinstance(obj, dict):
        raise SendError("collector answered something other than a JSON object", status=status)
    return obj
