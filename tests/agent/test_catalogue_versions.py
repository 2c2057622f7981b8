"""The agent and catalogue versions: consent bound to a version, approvals, the collector's policy, held batches.

The real CLI in subprocesses against a scriptable collector on 127.0.0.1 (see conftest.FakeCollector);
tests/data/catalogues/v2.toml adds `usage.environments` and retires `host.disk.free_gib`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agent import Agent, AgentConfig, Engine
from schema import CATALOGUE, parse_batch, policy_document, read_catalogue
from tests.agent.conftest import START, AgentHome, FakeCollector, cli, preview_batches
from tests.conftest import DATA

pytestmark = pytest.mark.slow
V2_PATH = DATA / "catalogues" / "v2.toml"
V2 = read_catalogue(V2_PATH)
NEW, RETIRED = "usage.environments", "host.disk.free_gib"
LATER = "2026-11-28T11:05:00Z"
LATEST = "2026-11-28T12:05:00Z"


def _usage(home: AgentHome) -> None:
    (home.root / "usage.json").write_text('{"projects": 3, "deployments": 1200, "environments": 2}')


async def _json(home: AgentHome, *args: str, now: str = START, env: dict[str, str] | None = None) -> Any:
    result = await cli(home, "--json", *args, now=now, env=env)
    assert result.code == 0, result.err
    return result.json()


async def test_consent_from_the_config_binds_to_the_version_of_the_first_snapshot(home: AgentHome) -> None:
    """With `consent = auto` in the config, the first snapshot records the catalogue version; after an upgrade
    the metric it added waits for approval (not collected, counted) and the retired one is gone."""
    _usage(home)
    assert (await _json(home, "collect"))["metrics"]["usage.projects"] == 3
    assert (await _json(home, "metrics"))["consented_version"] == 1
    home.write_config(catalogue=str(V2_PATH))
    upgraded = await _json(home, "collect", now=LATER)
    assert NEW not in upgraded["metrics"]
    assert RETIRED not in upgraded["metrics"]
    assert {(d["reason"], d["key"]) for d in upgraded["dropped"]} >= {("awaiting_approval", NEW), ("retired", RETIRED)}
    status = await _json(home, "status", now=LATER)
    assert status["metrics"]["awaiting_approval"] == [NEW]
    assert status["counters"]["dropped_keys"]["awaiting_approval"]["keys"] == {NEW: 1}
    text = (await cli(home, "status", now=LATER)).text
    assert "awaiting approval: usage.environments" in text
    assert "`telemetry-agent metrics approve usage.environments` (or --all)" in text


async def test_sealing_after_an_upgrade_drops_what_the_new_catalogue_retired(home: AgentHome) -> None:
    """Snapshots taken at v1 and sealed at v2 lose the retired metric (counted), so the v2 batch is valid."""
    assert RETIRED in (await _json(home, "collect"))["metrics"]
    home.write_config(catalogue=str(V2_PATH), endpoint="http://127.0.0.1:9")
    assert (await cli(home, "seal")).code == 0
    [sealed] = preview_batches((await cli(home, "preview")).out)
    batch = parse_batch(sealed, catalogue=V2)
    assert batch.catalogue_version == 2
    assert RETIRED not in batch.snapshots[0].metrics
    status = await _json(home, "status")
    assert status["counters"]["dropped_keys"]["retired"]["keys"] == {RETIRED: 1}
    assert status["outbox"]["batches"] == 1  # a batch of the newer catalogue is no corrupt outbox file


async def test_send_holds_a_batch_the_collector_policy_refuses(home: AgentHome, collector: FakeCollector) -> None:
    """A batch sealed before the policy was known, with a metric the collector then turns out not to take, is
    held: not sent (nothing the collector would refuse for good), shown by send and status, not exported; it
    goes once the collector accepts it."""
    _usage(home)
    home.write_config(catalogue=str(V2_PATH), endpoint=collector.url)
    assert NEW in (await _json(home, "collect"))["metrics"]
    assert (await cli(home, "seal")).code == 0  # the collector serves no policy yet (404): the agent's own applies
    collector.policy = policy_document(CATALOGUE)  # it turns out to be a version-1 collector
    sent = await _json(home, "send")
    [result] = sent["results"]
    assert (result["outcome"], result["error"]["code"]) == ("held", "unknown_metric")
    assert collector.bodies == []
    status = await _json(home, "status")
    assert [h["code"] for h in status["held"]] == ["unknown_metric"]
    assert "held:" in (await cli(home, "status")).text
    exported = await _json(home, "export", str(home.root / "usb"))
    assert (exported["files"], len(exported["held"])) == ([], 1)
    collector.policy = policy_document(V2)  # upgraded: now it takes the batch as sealed
    assert [r["outcome"] for r in (await _json(home, "send"))["results"]] == ["delivered"]
    assert NEW in orjson.loads(collector.bodies[0])["snapshots"][0]["metrics"]


async def test_policy_is_never_fetched_with_consent_off(home: AgentHome, collector: FakeCollector) -> None:
    """Consent off (or DO_NOT_TRACK) opens no connection: not even GET /v1/policy, at seal or send."""
    home.write_config(catalogue=str(V2_PATH), endpoint=collector.url, consent="off")
    collector.policy = policy_document(CATALOGUE)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert (await cli(home, "send")).code == 0
    home.write_config(catalogue=str(V2_PATH), endpoint=collector.url)
    assert (await cli(home, "collect", now=LATER, env={"DO_NOT_TRACK": "1"})).code == 0
    assert (await cli(home, "seal", now=LATER, env={"DO_NOT_TRACK": "1"})).code == 0
    assert (await cli(home, "send", now=LATER, env={"DO_NOT_TRACK": "1"})).code == 0
    assert (collector.policy_requests, collector.bodies) == (0, [])
    engine = Engine(AgentConfig(state_dir=home.state, endpoint=collector.url, consent="off"))
    assert await engine.refresh_policy() == "collector policy not fetched: consent is off (config)"
    assert collector.policy_requests == 0
    listed = await _json(home, "metrics", env={"DO_NOT_TRACK": "1"})
    assert listed["consent"] == "off"
    assert "Consent is off: nothing is collected" in (await cli(home, "metrics", env={"DO_NOT_TRACK": "1"})).text


async def test_send_refreshes_the_policy_and_the_next_batch_follows_it(
    home: AgentHome, collector: FakeCollector
) -> None:
    """Each send fetches the policy again: after the collector moves to v2, the next snapshot carries the metric."""
    _usage(home)
    home.write_config(catalogue=str(V2_PATH), endpoint=collector.url)
    collector.policy = policy_document(CATALOGUE)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert NEW not in orjson.loads(preview_batches((await cli(home, "preview")).out)[0])["snapshots"][0]["metrics"]
    collector.policy = policy_document(V2)
    assert (await cli(home, "send")).code == 0
    assert (await _json(home, "policy"))["policy"]["catalogue_version"] == 2
    assert (await _json(home, "collect", now=LATER))["metrics"][NEW] == 2


async def test_metrics_approve_refuses_unknown_and_retired_keys(home: AgentHome) -> None:
    """`metrics approve` with a key outside the catalogue or a retired one is one line, exit 2; without a key, 2."""
    home.write_config(catalogue=str(V2_PATH))
    unknown = await cli(home, "metrics", "approve", "customer.email")
    assert unknown.code == 2
    assert unknown.err.strip().count("\n") == 0
    assert "'customer.email' is not a metric of catalogue version 2" in unknown.err
    retired = await cli(home, "metrics", "approve", RETIRED)
    assert retired.code == 2
    assert "retired in catalogue version 2" in retired.err
    assert (await cli(home, "metrics", "approve")).code == 2
    covered = await cli(home, "metrics", "approve", "usage.projects")
    assert (covered.code, "already covered by your consent" in covered.text) == (0, True)


async def test_policy_import_refuses_a_file_that_is_no_policy(home: AgentHome) -> None:
    """`policy import` of a missing file, of non-JSON, or of a document with a bad field: one line naming the
    file (and the field), exit 2; nothing is stored."""
    bad = home.root / "bad.json"
    for content, expected in ((None, "file not found"), (b"<html>", "not JSON"),
                              (orjson.dumps({**policy_document(CATALOGUE), "catalogue_version": "1"}),
                               "catalogue_version")):  # fmt: skip
        if content is None:
            bad.unlink(missing_ok=True)
        else:
            bad.write_bytes(content)
        result = await cli(home, "policy", "import", str(bad))
        assert result.code == 2, result.err
        assert result.err.strip().count("\n") == 0
        assert str(bad) in result.err
        assert expected in result.err
    assert (await _json(home, "policy"))["policy"] is None


def test_library_api_lists_approves_and_imports(tmp_path: Path) -> None:
    """Agent.metrics(), approve_metrics() and import_policy() do what the commands do, from the host's thread."""
    state = tmp_path / "state"
    Engine(AgentConfig(state_dir=state, consent="auto")).set_consent("auto")  # consent given at version 1
    agent = Agent(AgentConfig(state_dir=state, consent="auto", catalogue=V2_PATH))
    view = agent.metrics()
    assert view is not None
    assert (view.consented_version, view.keys("awaiting_approval"), view.keys("retired")) == (1, (NEW,), (RETIRED,))
    assert agent.approve_metrics(every=True) == [NEW]
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(policy_document(CATALOGUE)))
    policy = agent.import_policy(policy_file)
    assert policy is not None
    assert policy.version == 1
    after = agent.metrics()
    assert after is not None
    assert [m.state for m in after.metrics if m.key == NEW] == ["not_accepted"]
