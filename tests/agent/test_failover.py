"""Failover between several collector endpoints (an HA pair) against real aiohttp collectors on 127.0.0.1.

Sleep and randomness are injected: the tests assert on the attempts and the waits the agent asked for,
never on durations.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from agent import AgentConfig, ConfigError, Engine, RejectedError
from agent.client import HttpTransport
from agent.config import Endpoint
from agent.transport import Attempt
from tests.agent.conftest import RECORDED, Site
from tests.conftest import load_golden

BATCH = orjson.dumps(orjson.loads(load_golden("v1/valid/minimal.json")), option=orjson.OPT_SORT_KEYS)
BATCH_ID = orjson.loads(BATCH)["batch_id"]


def _config(tmp_path: Path, *urls: str, max_attempts: int = 3) -> AgentConfig:
    return AgentConfig(endpoint=urls, state_dir=tmp_path / "state", max_attempts=max_attempts, backoff_base_s=1.0,
                       max_backoff_s=5.0)  # fmt: skip


def _transport(config: AgentConfig, waits: list[float], *, current: str | None = None,
               chosen: list[Endpoint] | None = None) -> HttpTransport:  # fmt: skip
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    on_answer = None if chosen is None else chosen.append
    return HttpTransport(config, sleep=sleep, rng=random.Random(7), current=current, on_answer=on_answer)


def _trail(attempts: list[Attempt]) -> list[tuple[str | None, int | None, str, float | None]]:
    return [(a.endpoint, a.status, a.outcome, a.wait_s) for a in attempts]


async def test_failover_dead_first_endpoint_delivers_to_second_without_backoff(
    pair: tuple[Site, Site], tmp_path: Path
) -> None:
    """First endpoint down: the next attempt goes at once to the second, which delivers; no wait at all."""
    first, second = pair
    await first.down()
    waits: list[float] = []
    attempts: list[Attempt] = []
    chosen: list[Endpoint] = []
    transport = _transport(_config(tmp_path, first.url, second.url), waits, chosen=chosen)
    delivery = await transport.deliver(BATCH, BATCH_ID, attempts.append)
    assert delivery.outcome == "delivered"
    assert _trail(attempts) == [(first.label, None, "retry", 0.0), (second.label, 200, "delivered", None)]
    assert waits == []
    assert second.fake.bodies == [BATCH]
    assert transport.current.url == second.url
    assert [e.url for e in chosen] == [second.url]


async def test_failover_backs_off_once_per_round_and_wraps_around(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """Both failing: each round tries first then second at once, then one jittered backoff per round."""
    first, second = pair
    await first.down()
    second.fake.script = [(503, {}, "overloaded")] * 3
    waits: list[float] = []
    attempts: list[Attempt] = []
    delivery = await _transport(_config(tmp_path, first.url, second.url), waits).deliver(
        BATCH, BATCH_ID, attempts.append
    )
    assert delivery.outcome == "failed"
    rng = random.Random(7)
    assert waits == [rng.uniform(0, 1.0), rng.uniform(0, 2.0)]
    assert [(a.endpoint, a.status) for a in attempts] == [(first.label, None), (second.label, 503)] * 3
    assert [a.wait_s for a in attempts] == [0.0, waits[0], 0.0, waits[1], 0.0, None]
    assert [a.outcome for a in attempts] == ["retry"] * 5 + ["failed"]


async def test_failover_round_backoff_honours_the_largest_retry_after(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """A Retry-After from any endpoint of the round is the minimum of that round's backoff (clamped)."""
    first, second = pair
    first.fake.script = [(429, {"Retry-After": "4"}, "slow_down")]
    second.fake.script = [(503, {"Retry-After": "1"}, "overloaded")]
    waits: list[float] = []
    delivery = await _transport(_config(tmp_path, first.url, second.url), waits).deliver(
        BATCH, BATCH_ID, lambda _a: None
    )
    assert delivery.outcome == "delivered"
    assert len(waits) == 1
    assert waits[0] >= 4.0
    assert len(first.fake.bodies) == 2  # the second round starts at the first endpoint again


async def test_failover_final_4xx_is_not_tried_elsewhere(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """A 422 from the first endpoint is final for the batch: the second is never asked."""
    first, second = pair
    first.fake.script = [(422, {}, "out_of_bounds")]
    attempts: list[Attempt] = []
    transport = _transport(_config(tmp_path, first.url, second.url), [])
    delivery = await transport.deliver(BATCH, BATCH_ID, attempts.append)
    assert delivery.outcome == "rejected"
    assert _trail(attempts) == [(first.label, 422, "rejected", None)]
    assert second.fake.bodies == []
    assert transport.current.url == first.url


async def test_failover_starts_at_the_stored_choice(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """The stored choice is where attempts start; when it is down the next one (wrapping) takes over."""
    first, second = pair
    config = _config(tmp_path, first.url, second.url)
    [_, second_endpoint] = config.endpoints
    attempts: list[Attempt] = []
    await _transport(config, [], current=second_endpoint.key).deliver(BATCH, BATCH_ID, attempts.append)
    assert _trail(attempts) == [(second.label, 200, "delivered", None)]
    await second.down()
    attempts.clear()
    chosen: list[Endpoint] = []
    await _transport(config, [], current=second_endpoint.key, chosen=chosen).deliver(BATCH, BATCH_ID, attempts.append)
    assert _trail(attempts) == [(second.label, None, "retry", 0.0), (first.label, 200, "delivered", None)]
    assert [e.url for e in chosen] == [first.url]


async def test_failover_a_stored_choice_no_longer_configured_starts_at_the_first(
    pair: tuple[Site, Site], tmp_path: Path
) -> None:
    """After the admin edits the list, a stored choice that is gone means: start at the first endpoint."""
    first, second = pair
    attempts: list[Attempt] = []
    config = _config(tmp_path, first.url, second.url)
    await _transport(config, [], current="https://gone.example:443").deliver(BATCH, BATCH_ID, attempts.append)
    assert [a.endpoint for a in attempts] == [first.label]


async def test_failover_other_5xx_takes_that_endpoint_out_for_the_call(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """A 500 is not retried at that endpoint, but the next one is tried; 500 from both ends the delivery."""
    first, second = pair
    first.fake.script = [(500, {}, "internal")]
    attempts: list[Attempt] = []
    config = _config(tmp_path, first.url, second.url)
    delivery = await _transport(config, []).deliver(BATCH, BATCH_ID, attempts.append)
    assert delivery.outcome == "delivered"
    assert _trail(attempts) == [(first.label, 500, "retry", 0.0), (second.label, 200, "delivered", None)]
    first.fake.script = [(500, {}, "internal")]
    second.fake.script = [(500, {}, "internal")]
    attempts.clear()
    waits: list[float] = []
    delivery = await _transport(config, waits).deliver(BATCH, BATCH_ID, attempts.append)
    assert delivery.outcome == "failed"
    assert _trail(attempts) == [(first.label, 500, "retry", 0.0), (second.label, 500, "failed", None)]
    assert waits == []


async def test_failover_one_endpoint_in_a_list_behaves_like_a_plain_string(tmp_path: Path) -> None:
    """A one-entry list retries with a backoff between every attempt, exactly like a single URL."""
    for endpoint in ("http://127.0.0.1:9", ("http://127.0.0.1:9",)):
        waits: list[float] = []
        config = AgentConfig(endpoint=endpoint, state_dir=tmp_path, max_attempts=3, backoff_base_s=1.0)
        await _transport(config, waits).deliver(BATCH, BATCH_ID, lambda _a: None)
        rng = random.Random(7)
        assert waits == [rng.uniform(0, 1.0), rng.uniform(0, 2.0)]


async def test_failover_history_names_the_collector_host_only(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """An attempt records the endpoint's host and port only (user info cannot even be configured any more)."""
    first, _ = pair
    attempts: list[Attempt] = []
    chosen: list[Endpoint] = []
    config = _config(tmp_path, f"http://127.0.0.1:{first.port}/")
    await _transport(config, [], chosen=chosen).deliver(BATCH, BATCH_ID, attempts.append)
    assert [a.endpoint for a in attempts] == [first.label]
    assert config.endpoints[0].key == f"http://127.0.0.1:{first.port}"
    assert chosen == []  # one endpoint: nothing to choose, nothing stored
    with pytest.raises(ConfigError, match=r"^endpoint\[0\]: must not contain user info"):
        _config(tmp_path, f"http://agent:s3cret@127.0.0.1:{first.port}/")


async def test_failover_install_requests_fail_over_in_one_round(pair: tuple[Site, Site], tmp_path: Path) -> None:
    """`remote`/`forget` requests skip a dead endpoint at once and stick to the one that answered."""
    first, second = pair
    await first.down()
    second.fake.installs["i-1"] = "secret"
    chosen: list[Endpoint] = []
    waits: list[float] = []
    transport = _transport(_config(tmp_path, first.url, second.url), waits, chosen=chosen)
    answer = await transport.install_request("GET", "i-1", "secret")
    assert answer["install_id"] == "i-1"
    assert [e.url for e in chosen] == [second.url]
    assert waits == []
    await second.down()
    with pytest.raises(Exception, match=r"collector unreachable: .*\(tried 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+\)"):
        await transport.install_request("GET", "i-1", "secret")


async def test_failover_install_request_final_4xx_is_not_tried_elsewhere(
    pair: tuple[Site, Site], tmp_path: Path
) -> None:
    """A 401 from the first endpoint is the answer: the second is not asked."""
    first, second = pair
    with pytest.raises(RejectedError):
        await _transport(_config(tmp_path, first.url, second.url), []).install_request("GET", "i-1", "wrong")
    assert [r[0] for r in first.fake.requests] == ["GET"]
    assert second.fake.requests == []


async def test_failover_engine_stores_the_choice_and_status_shows_it(
    pair: tuple[Site, Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the engine: the choice lands in the state dir, a new engine starts there, status marks it."""
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_HOST", str(RECORDED / "linux-debian12.json"))
    first, second = pair
    await first.down()
    config = AgentConfig(endpoint=(first.url, second.url), consent="auto", state_dir=tmp_path / "state",
                         product_name="deployserver", product_version="4.2.1", max_attempts=2)  # fmt: skip
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    engine = Engine(config, sleep=sleep, rng=random.Random(1))
    engine.collect()
    engine.seal()
    report = await engine.send()
    assert [(r.outcome, r.endpoint, r.attempts) for r in report.results] == [("delivered", second.label, 2)]
    assert waits == []
    assert [h["endpoint"] for h in engine.state.history()] == [first.label, second.label]
    stored = orjson.loads((tmp_path / "state" / "endpoint.json").read_bytes())
    assert stored["key"] == config.endpoints[1].key
    status = Engine(config).status().to_json()
    assert status["endpoint"] == second.url
    assert [(e["url"], e["current"]) for e in status["endpoints"]] == [(first.url, False), (second.url, True)]
    (tmp_path / "state" / "endpoint.json").write_text("{torn")  # a hint only: unreadable means start at the first
    assert Engine(config).status().to_json()["endpoint"] == first.url
