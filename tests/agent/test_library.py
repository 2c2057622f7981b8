"""The embedded Agent: background thread, callable provider, never raises into the host, never blocks it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import pytest

from agent import Agent, AgentConfig, _guard
from tests.agent.conftest import RECORDED, FakeCollector


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent time starts at a fixed hour and runs 7200x faster; the host is the recorded Debian one."""
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_NOW", "2026-11-28T10:05:00Z")
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_SPEED", "7200")
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_HOST", str(RECORDED / "linux-debian12.json"))


def _config(tmp_path: Path, url: str) -> AgentConfig:
    return AgentConfig(endpoint=url, consent="auto", state_dir=tmp_path / "state", snapshot_interval_s=3600,
                       batch_period_s=7200, send_window_s=0, product_name="deployserver", product_version="4.2.1",
                       usage_timeout_s=0.5)  # fmt: skip


@pytest.mark.usefixtures("fast_clock")
async def test_library_agent_sends_callable_counts(collector: FakeCollector, tmp_path: Path) -> None:
    """The callable's counts arrive in a batch; start() and stop() return at once."""
    calls = []

    def usage() -> dict[str, object]:
        calls.append(1)
        return {"projects": 7, "deployments": 40, "customer_email": "x@y.z"}

    telemetry = Agent(_config(tmp_path, collector.url), usage=usage)
    began = time.monotonic()
    telemetry.start()
    assert time.monotonic() - began < 0.5
    await asyncio.wait_for(collector.received.wait(), 20)
    telemetry.stop()
    assert not telemetry.running
    batch = orjson.loads(collector.bodies[0])
    assert batch["snapshots"][0]["metrics"]["usage.projects"] == 7
    assert b"x@y.z" not in collector.bodies[0]


@pytest.mark.usefixtures("fast_clock")
async def test_library_hung_or_failing_provider_costs_only_usage(collector: FakeCollector, tmp_path: Path) -> None:
    """A provider that hangs (timeout) or raises leaves the usage metrics out; host metrics still go."""
    release = threading.Event()

    def hangs() -> dict[str, object]:
        release.wait(30)
        return {"projects": 1}

    telemetry = Agent(_config(tmp_path, collector.url), usage=hangs)
    telemetry.start()
    await asyncio.wait_for(collector.received.wait(), 30)
    telemetry.stop()
    release.set()
    metrics = orjson.loads(collector.bodies[0])["snapshots"][0]["metrics"]
    assert "usage.projects" not in metrics
    assert metrics["os.family"] == "linux"
    counters = orjson.loads((tmp_path / "state" / "counters.json").read_bytes())
    assert counters["provider_failures"] >= 1


def test_library_never_raises_into_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A state dir that cannot be created is logged at warning, not raised; stop() still returns."""
    monkeypatch.setattr(_guard, "STRICT", False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    telemetry = Agent(AgentConfig(state_dir=blocker / "state", consent="auto"))
    telemetry.start()
    telemetry.stop(timeout_s=5)
    assert not telemetry.running
    assert any("telemetry agent: run failed" in r.getMessage() for r in caplog.records)


async def test_library_takes_the_first_snapshot_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedded agent on the real clock (hourly snapshots) takes its first snapshot, with the callable's counts,
    as soon as it starts, so an integrator sees a result at once rather than an hour later."""
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_HOST", str(RECORDED / "linux-debian12.json"))
    config = AgentConfig(consent="review", state_dir=tmp_path / "state", product_name="deployserver",
                         product_version="4.2.1")  # fmt: skip
    telemetry = Agent(config, usage=lambda: {"projects": 4, "deployments": 9})
    telemetry.start()
    opened = tmp_path / "state" / "open.json"
    try:
        for _ in range(100):
            if opened.exists():
                break
            await asyncio.sleep(0.05)
    finally:
        telemetry.stop()
    [snapshot] = orjson.loads(opened.read_bytes())["snapshots"]
    assert (snapshot["metrics"]["usage.projects"], snapshot["metrics"]["usage.deployments"]) == (4, 9)
    record = orjson.loads((tmp_path / "state" / "provider.json").read_bytes())
    assert record["kind"] == "callable"
