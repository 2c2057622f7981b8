"""Delivery to the collector: gzip POST with timeouts, TLS, proxies, retries with backoff, receipt check.

Retry rule: network errors, timeouts, 408, 429, 502, 503 and 504 are transient and retried with
exponential backoff and full jitter (``uniform(0, min(max_backoff_s, base * 2**n))``), never less than
the server's ``Retry-After`` (clamped to ``max_backoff_s``). Any other 4xx is final: the batch will
never be accepted as it is. A 200 whose receipt does not echo our sha256 is a failed attempt.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import aiohttp
import orjson

from .config import AgentConfig
from .errors import ConfigError, RejectedError, SendError

__all__ = ["RETRYABLE_STATUSES", "Attempt", "Delivery", "Transport", "parse_retry_after"]

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One POST of one batch and what came of it."""

    at: str
    status: int | None
    outcome: str  # delivered | duplicate | retry | rejected | failed
    error: dict[str, str] | None = None
    wait_s: float | None = None


@dataclass(slots=True, kw_only=True)
class Delivery:
    """The end result of delivering one batch: ``delivered``, ``rejected`` or ``failed`` (try again later)."""

    outcome: str
    attempts: list[Attempt] = field(default_factory=list)
    error: dict[str, str] | None = None


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


def _error_of(body: bytes, status: int) -> dict[str, str]:
    try:
        obj = orjson.loads(body)
        err = obj["error"]
        out = {k: str(err[k])[:_MAX_ERROR_TEXT] for k in ("code", "message", "path") if k in err}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        out = {"code": f"http_{status}", "message": f"HTTP {status}"}
    out.setdefault("code", f"http_{status}")
    return out


class Transport:
    """Talks to the collector named by ``config.endpoint``; ``sleep``, ``rng`` and ``now`` are injectable."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if config.endpoint is None:
            raise ConfigError("endpoint", "not set: needed to talk to the collector (or set TELEMETRY_ENDPOINT)")
        self._config = config
        self._base = config.endpoint.rstrip("/")
        self._sleep = sleep
        self._rng = rng if rng is not None else random.SystemRandom()
        self._now = now

    def backoff_s(self, retry: int, retry_after_s: float | None) -> float:
        """The wait before retry number ``retry`` (0-based): full jitter, at least the clamped Retry-After."""
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
        if self._config.ca_bundle is None:
            return True  # default verification against the system store
        return ssl.create_default_context(cafile=str(self._config.ca_bundle))

    async def deliver(self, data: bytes, batch_id: str, on_attempt: Callable[[Attempt], None]) -> Delivery:
        """POST the exact bytes until delivered, rejected or out of attempts; reports every attempt."""
        digest = hashlib.sha256(data).hexdigest()
        body = gzip.compress(data, mtime=0)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        result = Delivery(outcome="failed")
        async with self._session() as session:
            for n in range(self._config.max_attempts):
                at = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
                status: int | None = None
                retry_after: float | None = None
                try:
                    async with session.post(
                        f"{self._base}/v1/batches",
                        data=body,
                        headers=headers,
                        ssl=self._ssl(),
                        proxy=self._config.proxy,
                    ) as resp:
                        status = resp.status
                        answer = await _read_capped(resp)
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._now())
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    error = {"code": "network", "message": (str(exc) or type(exc).__name__)[:_MAX_ERROR_TEXT]}
                else:
                    if status == 200:
                        attempt = self._receipt(answer, batch_id, digest, at)
                        if attempt is not None:
                            on_attempt(attempt)
                            result.attempts.append(attempt)
                            result.outcome = "delivered"
                            return result
                        error = {"code": "bad_receipt", "message": "receipt does not match the bytes sent"}
                    else:
                        error = _error_of(answer, status)
                        if 400 <= status < 500 and status not in RETRYABLE_STATUSES:
                            attempt = Attempt(at=at, status=status, outcome="rejected", error=error)
                            on_attempt(attempt)
                            result.attempts.append(attempt)
                            result.outcome, result.error = "rejected", error
                            return result
                        if status not in RETRYABLE_STATUSES:
                            # Other 5xx: not retried now; the batch stays for the next send.
                            attempt = Attempt(at=at, status=status, outcome="failed", error=error)
                            on_attempt(attempt)
                            result.attempts.append(attempt)
                            result.error = error
                            return result
                last = n == self._config.max_attempts - 1
                wait = None if last else self.backoff_s(n, retry_after)
                attempt = Attempt(at=at, status=status, outcome="failed" if last else "retry", error=error, wait_s=wait)
                on_attempt(attempt)
                result.attempts.append(attempt)
                result.error = error
                if wait is not None:
                    await self._sleep(wait)
        return result

    def _receipt(self, answer: bytes, batch_id: str, digest: str, at: str) -> Attempt | None:
        try:
            receipt = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(receipt, dict) or receipt.get("batch_id") != batch_id or receipt.get("sha256") != digest:
            return None
        outcome = "duplicate" if receipt.get("duplicate") is True else "delivered"
        return Attempt(at=at, status=200, outcome=outcome)

    async def install_request(self, method: str, install_id: str, secret: str) -> dict[str, Any]:
        """GET or DELETE ``/v1/installs/ID`` proven by the secret; the JSON answer, or :class:`SendError`."""
        url = f"{self._base}/v1/installs/{install_id}"
        try:
            async with (
                self._session() as session,
                session.request(
                    method,
                    url,
                    headers={"Authorization": f"Bearer {secret}"},
                    ssl=self._ssl(),
                    proxy=self._config.proxy,
                ) as resp,
            ):
                answer = await _read_capped(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SendError(f"collector unreachable: {str(exc) or type(exc).__name__}") from None
        if status != 200:
            error = _error_of(answer, status)
            cls = RejectedError if 400 <= status < 500 else SendError
            raise cls(f"collector answered HTTP {status}: {error.get('message', '')}", status=status)
        try:
            obj = orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise SendError("collector answered something other than JSON", status=status) from None
        if not isinstance(obj, dict):
            raise SendError("collector answered something other than a JSON object", status=status)
        return obj
