"""How a sealed batch leaves the install: the :class:`Transport` protocol, its attempts and its end result.

Two transports implement it: :class:`~agent.client.HttpTransport` (POST to the collectors, with failover and
retries) and :class:`ExportTransport` (a file in a directory, for an air-gapped upload). The engine walks the
outbox once for both (:meth:`agent.outbound.Outbound.send` and ``export``): every attempt a transport reports
is recorded in the history, and the delivery's outcome decides where the batch goes next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from schema import format_instant

from .errors import StateIOError
from .files import atomic_write
from .records import Attempt, ErrorInfo

__all__ = ["Attempt", "Delivery", "DeliveryOutcome", "ExportTransport", "Transport"]

DeliveryOutcome = Literal["delivered", "rejected", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The end result of delivering one batch: its attempts, the last of which decides the outcome."""

    attempts: tuple[Attempt, ...] = ()

    @property
    def outcome(self) -> DeliveryOutcome:
        """``delivered`` (a duplicate or an export too), ``rejected`` (for good), or ``failed`` (try again later)."""
        last = self.attempts[-1].outcome if self.attempts else "failed"
        if last in ("delivered", "duplicate", "exported"):
            return "delivered"
        return "rejected" if last == "rejected" else "failed"

    @property
    def error(self) -> ErrorInfo | None:
        """The last attempt's error (None when it succeeded)."""
        return self.attempts[-1].error if self.attempts else None


class Transport(Protocol):
    """Hands one batch over, reporting each attempt to ``on_attempt`` as it ends (before any wait)."""

    async def deliver(self, data: bytes, batch_id: str, on_attempt: Callable[[Attempt], None]) -> Delivery:
        """Deliver the exact bytes ``data`` of batch ``batch_id``."""
        ...


class ExportTransport:
    """Writes each batch as ``<batch_id>.json`` (exact bytes, mode 0644) into the directory ``target``."""

    def __init__(self, target: Path, *, now: Callable[[], datetime]) -> None:
        self.target = target
        self._now = now

    def path(self, batch_id: str) -> Path:
        """Where the batch ``batch_id`` is written."""
        return self.target / f"{batch_id}.json"

    async def deliver(self, data: bytes, batch_id: str, on_attempt: Callable[[Attempt], None]) -> Delivery:
        """Write the batch; :class:`StateIOError` (CLI exit 1) when the target cannot take it."""
        path = self.path(batch_id)
        try:
            atomic_write(path, data, mode=0o644)
        except OSError as exc:  # the admin's target (a USB stick, say) is full or read-only: exit 1
            raise StateIOError(f"{path}: cannot write ({exc.strerror or exc})") from None
        attempt = Attempt(at=format_instant(self._now()), status=None, outcome="exported", exported_to=str(self.target))
        on_attempt(attempt)
        return Delivery(attempts=(attempt,))
