"""The per-client limits on their own, with an injected clock: buckets refill, slots free, the budget holds."""

from __future__ import annotations

import pytest

from collector.errors import OverloadedError, RateLimitedError
from collector.limits import BodyBudget, PeerBuckets, TokenSlots


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


def test_token_slots_free_when_the_block_ends_even_on_error() -> None:
    """A slot is given back when the report fails too."""
    slots = TokenSlots(per_token=1)
    with pytest.raises(ValueError, match="boom"), slots.hold("a"):
        raise ValueError("boom")
    with slots.hold("a"):
        with pytest.raises(RateLimitedError), slots.hold("a"):
            pass
        with slots.hold("b"):
            pass


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
