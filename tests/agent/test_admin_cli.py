"""An admin's first day with the real `telemetry-agent` CLI: no config, air-gapped export, a second `collect` in
the same hour, and `forget` asking first."""

from __future__ import annotations

import orjson
import pytest

from agent.config import DEFAULT_CONFIG
from schema import parse_batch
from tests.agent.conftest import AgentHome, FakeCollector, cli, preview_batches

pytestmark = pytest.mark.slow
LATER = "2026-11-28T11:05:00Z"


@pytest.mark.skipif(DEFAULT_CONFIG.exists(), reason=f"this machine has a {DEFAULT_CONFIG}")
async def test_cli_without_a_config_refuses_what_needs_one_in_one_line(home: AgentHome) -> None:
    """Without --config, TELEMETRY_AGENT_CONFIG or the default file, `collect` takes no half snapshot and `remote`
    sends nothing: each exits 2 with one line naming the missing setting and where a config was looked for;
    `status` still works and says no config file was read."""
    env = {"TELEMETRY_AGENT_CONFIG": "", "TELEMETRY_STATE_DIR": str(home.state)}
    collected = await cli(home, "collect", env=env)
    assert collected.code == 2
    [line] = collected.err.strip().splitlines()
    assert line.startswith("telemetry-agent: config error: product.name: not set; collect needs the product's name")
    assert (
        f"no config file was read: there is no {DEFAULT_CONFIG}; give --config PATH or set TELEMETRY_AGENT_CONFIG"
        in line
    )
    assert collected.out == b""
    assert not (home.state / "open.json").exists()
    remote = await cli(home, "remote", env=env)
    assert remote.code == 2
    [line] = remote.err.strip().splitlines()
    assert line.startswith("telemetry-agent: config error: endpoint: not set")
    assert f"there is no {DEFAULT_CONFIG}" in line
    status = await cli(home, "status", env=env)
    assert status.code == 0, status.err
    assert f"config:           none (no --config, no TELEMETRY_AGENT_CONFIG, no {DEFAULT_CONFIG})" in status.text
    assert (await cli(home, "status", "--json", env=env)).json()["config_file"] is None


async def test_cli_export_carries_batches_out_of_the_outbox_once(home: AgentHome, collector: FakeCollector) -> None:
    """`export` moves what it wrote out of the outbox: history records it as exported (with the target), the next
    export writes only newer batches, `send` has nothing left to send, and `history --show` still has the bytes."""
    home.write_config(endpoint=collector.url)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    [first] = preview_batches((await cli(home, "preview")).out)
    first_id = parse_batch(first).batch_id
    out = home.root / "usb"
    exported = await cli(home, "export", str(out))
    assert exported.code == 0, exported.err
    assert (out / f"{first_id}.json").read_bytes() == first
    status = (await cli(home, "status", "--json")).json()
    assert status["outbox"]["batches"] == 0
    [entry] = (await cli(home, "history", "--json")).json()
    assert (entry["batch_id"], entry["outcome"], entry["exported_to"]) == (first_id, "exported", str(out))
    assert f"exported to {out} (carried by hand; left the outbox)" in (await cli(home, "history")).text
    assert (await cli(home, "history", "--show", first_id)).out == first

    assert (await cli(home, "collect", now=LATER)).code == 0
    assert (await cli(home, "seal", now=LATER)).code == 0
    again = await cli(home, "--json", "export", str(home.root / "usb2"), now=LATER)
    [written] = again.json()["files"]
    assert first_id not in written
    assert sorted(p.name for p in (home.root / "usb2").iterdir()) == [written.rsplit("/", 1)[-1]]
    assert (await cli(home, "export", str(home.root / "usb3"), now=LATER)).text == "No sealed batch to export.\n"
    sent = await cli(home, "send", now=LATER)
    assert sent.text == "Nothing to send.\n"
    assert collector.requests == []


async def test_cli_second_collect_in_an_hour_says_so_and_keeps_what_the_provider_could_not_give(
    home: AgentHome,
) -> None:
    """A second `collect` in the same hour says it replaced the earlier snapshot; when its provider fails, the
    earlier usage counts stay (the reason is printed), except for a metric the admin has since disabled."""
    usage = home.root / "usage.json"
    assert (await cli(home, "collect")).code == 0
    usage.unlink()
    again = await cli(home, "collect")
    assert again.code == 0, again.err
    assert ("It replaced the snapshot taken earlier in this hour (one per hour is kept); kept from that one what "
            "this reading lacks: usage.deployments, usage.projects.") in again.text  # fmt: skip
    reason = f"file provider {usage}: cannot read (No such file or directory)"
    assert f"Usage provider failed, so this reading has no usage counts: {reason}" in again.text
    assert f"telemetry-agent: warning: {reason}" in again.err
    [batch] = preview_batches((await cli(home, "preview")).out)
    [snapshot] = orjson.loads(batch)["snapshots"]
    assert snapshot["taken_at"] == "2026-11-28T10:00:00Z"
    assert (snapshot["metrics"]["usage.projects"], snapshot["metrics"]["usage.deployments"]) == (3, 1200)

    home.write_config(disabled_metrics=["usage.projects"])
    third = (await cli(home, "--json", "collect")).json()
    assert third["replaced"] is True
    assert "usage.deployments" in third["kept"]
    assert "usage.projects" not in third["kept"]
    assert third["provider_error"] == reason
    [batch] = preview_batches((await cli(home, "preview")).out)
    metrics = orjson.loads(batch)["snapshots"][0]["metrics"]
    assert "usage.projects" not in metrics
    assert metrics["usage.deployments"] == 1200


async def test_cli_collect_without_a_usage_provider_says_so(home: AgentHome) -> None:
    """With no [usage] table, `collect` says that no usage provider is configured (not just fewer metrics)."""
    home.settings = {k: v for k, v in home.settings.items() if not k.startswith("usage.")}
    home.write_config()
    collected = await cli(home, "collect")
    assert collected.code == 0, collected.err
    assert "No usage provider is configured ([usage] command, file or url), so no usage counts were taken" in (
        collected.text
    )
    assert (await cli(home, "--json", "collect")).json()["provider"] is None


async def test_cli_forget_asks_before_it_erases(home: AgentHome, collector: FakeCollector) -> None:
    """`forget` asks first, naming the install: no answer or `n` erases nothing and sends nothing (exit 1);
    `yes` goes ahead; `--yes` skips the question for scripts."""
    home.write_config(endpoint=collector.url)
    install_id = (await cli(home, "status", "--json")).json()["install_id"]
    collector.installs[install_id] = (home.state / "secret").read_text().strip()
    for answer in (b"", b"n\n"):
        declined = await cli(home, "forget", stdin=answer)
        assert declined.code == 1
        assert f"about install {install_id}" in declined.err
        assert "[y/N]" in declined.err
        assert "telemetry-agent: nothing erased (not confirmed; add --yes to skip the question)" in declined.err
        assert collector.requests == []
        assert (await cli(home, "status", "--json")).json()["install_id"] == install_id
    confirmed = await cli(home, "forget", stdin=b"yes\n")
    assert confirmed.code == 0, confirmed.err
    assert f"The collector erased install {install_id}" in confirmed.text
    [(method, path, _)] = collector.requests
    assert (method, path) == ("DELETE", f"/v1/installs/{install_id}")
    new_id = (await cli(home, "status", "--json")).json()["install_id"]
    assert new_id != install_id
    collector.installs[new_id] = (home.state / "secret").read_text().strip()
    scripted = await cli(home, "forget", "--yes")
    assert scripted.code == 0, scripted.err
    assert "[y/N]" not in scripted.err
