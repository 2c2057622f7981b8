"""The per-client limits on their own, with an injected clock: buckets refill, slots free, the budget holds."""

from __future__ import annotations

import asyncio

import pytest

from collector.errors import OverloadedError, RateLimitedError
from collector.web.limits import BodyBudget, PeerBuckets, TokenSlots


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_bucket_allows_a_minute_of_burst_then_refills_at_its_rate() -> None:
    """60 a minute: 60 at once, then one more a second; other addresses keep their own bucket."""
    clock = Clock()
    buckets = PeerBuckets(per_min=60, clock=clock)
    for _ in range(60):
        buckets.spend("192.0.2.1", "tries")
    with pytest.raises(RateLimitedError) as raised:
        buckets.spend("192.0.2.1", "tries")
    assert raised.value.retry_after_s == 1
    buckets.spend("192.0.2.2", "tries")
    clock.now_s += 1.0
    buckets.spend("192.0.2.1", "tries")
    with pytest.raises(RateLimitedError):
        buckets.check("192.0.2.1", "tries")


def test_a_client_that_keeps_failing_waits_longer() -> None:
    """take() past empty goes into debt (down to one minute's worth), so the wait grows with the failures."""
    clock = Clock()
    buckets = PeerBuckets(per_min=60, clock=clock)
    for _ in range(100):
        buckets.take("192.0.2.1")
    with pytest.raises(RateLimitedError) as raised:
        buckets.check("192.0.2.1", "failures")
    assert raised.value.retry_after_s == 41  # 40 in debt + 1 needed, at 1 a second
    clock.now_s += 41
    buckets.check("192.0.2.1", "failures")


async def test_token_slots_queue_then_refuse_and_free_even_on_error() -> None:
    """One slot: four more wait and then run in turn, the sixth is refused; a failed block frees its slot."""
    slots = TokenSlots(per_token=1)
    with pytest.raises(ValueError, match="boom"):
        async with slots.hold("a"):
            raise ValueError("boom")
    order: list[int] = []
    release = asyncio.Event()

    async def report(n: int) -> None:
        async with slots.hold("a"):
            order.append(n)
            await release.wait()

    first = asyncio.create_task(report(0))
    waiting = [asyncio.create_task(report(n)) for n in range(1, 5)]
    while slots.waiting("a") < 4:
        await asyncio.sleep(0)
    with pytest.raises(RateLimitedError):
        async with slots.hold("a"):
            pass
    async with slots.hold("b"):  # another token is not affected
        pass
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == [0, 1, 2, 3, 4]
    assert slots.waiting("a") == 0


def test_the_body_budget_refuses_past_its_size_and_counts_nothing_refused() -> None:
    """take() past max_bytes is a 503 and leaves the held count as it was."""
    budget = BodyBudget(max_bytes=100, retry_after_s=5)
    budget.take(60)
    with pytest.raises(OverloadedError):
        budget.take(41)
    assert budget.held_bytes == 60
    budget.give_back(60)
    budget.take(100)
    assert budget.held_bytes == 100
