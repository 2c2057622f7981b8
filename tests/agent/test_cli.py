"""The real `telemetry-agent` CLI in subprocesses against a real aiohttp collector on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import sys

import orjson
import pytest

from schema import parse_batch
from tests.agent.conftest import START, AgentHome, FakeCollector, Site, cli, preview_batches

pytestmark = pytest.mark.slow
LATER = "2026-11-28T11:05:00Z"


async def _two_snapshots_sealed(home: AgentHome) -> None:
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "collect", now=LATER)).code == 0
    assert (await cli(home, "seal", now=LATER)).code == 0


async def test_cli_preview_bytes_equal_received_and_history_bytes(home: AgentHome, collector: FakeCollector) -> None:
    """The bytes `preview` shows are the bytes the collector receives and the bytes `history --show` prints."""
    home.write_config(endpoint=collector.url)
    await _two_snapshots_sealed(home)
    preview = await cli(home, "preview")
    [shown] = preview_batches(preview.out)
    sent = await cli(home, "send")
    assert sent.code == 0, sent.err
    assert "delivered" in sent.text
    assert collector.bodies == [shown]
    method, path, headers = collector.requests[0]
    assert (method, path) == ("POST", "/v1/batches")
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/json"
    batch_id = parse_batch(shown).batch_id
    assert (await cli(home, "history", "--show", batch_id)).out == shown
    history = (await cli(home, "history", "--json")).json()
    assert history[-1]["sha256"] == hashlib.sha256(shown).hexdigest()
    assert history[-1]["bytes"] == len(shown)
    assert history[-1]["status"] == 200
    status = (await cli(home, "status", "--json")).json()
    assert status["outbox"]["batches"] == 0
    assert status["last_attempt"]["outcome"] == "delivered"


async def test_cli_preview_of_open_batch_matches_what_seal_stores(home: AgentHome) -> None:
    """The open batch previewed in the hour it is sealed is byte for byte the sealed batch."""
    assert (await cli(home, "collect")).code == 0
    [open_bytes] = preview_batches((await cli(home, "preview")).out)
    assert (await cli(home, "seal")).code == 0
    [sealed] = preview_batches((await cli(home, "preview", "--explain")).out)
    assert sealed == open_bytes


async def test_cli_provider_extra_key_is_dropped_and_counted(home: AgentHome, collector: FakeCollector) -> None:
    """A provider's `customer_email` never reaches the batch, and status counts one dropped key without its value."""
    (home.root / "usage.json").write_text('{"projects": 3, "customer_email": "x@y.z"}')
    home.write_config(endpoint=collector.url)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert (await cli(home, "send")).code == 0
    [body] = collector.bodies
    assert b"x@y.z" not in body
    assert b"customer_email" not in body
    metrics = orjson.loads(body)["snapshots"][0]["metrics"]
    assert metrics["usage.projects"] == 3
    status = await cli(home, "status", "--json")
    dropped = status.json()["counters"]["dropped_keys"]
    assert dropped == {"not_in_catalogue": {"total": 1, "keys": {"customer_email": 1}}}
    human = (await cli(home, "status")).text
    assert "not_in_catalogue 1" in human
    assert "x@y.z" not in human
    assert "x@y.z" not in "".join(p.read_text(errors="replace") for p in home.state.rglob("*") if p.is_file())


async def test_cli_killed_mid_send_resends_same_batch(home: AgentHome, collector: FakeCollector) -> None:
    """An agent killed while the collector holds its request resends the same batch_id and bytes later."""
    home.write_config(endpoint=collector.url)
    await _two_snapshots_sealed(home)
    collector.script = ["hold"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "send", env=home.env(LATER),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(collector.received.wait(), 30)
    proc.kill()
    await proc.wait()
    again = await cli(home, "send", now=LATER)
    assert again.code == 0, again.err
    first, second = collector.bodies
    assert first == second
    assert orjson.loads(first)["batch_id"] == orjson.loads(second)["batch_id"]


async def test_cli_review_mode_sends_only_approved(home: AgentHome, collector: FakeCollector) -> None:
    """In review mode a batch waits until approved, and only approved batches are sent."""
    home.write_config(endpoint=collector.url, consent="review")
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert (await cli(home, "collect", now=LATER)).code == 0
    assert (await cli(home, "seal", now=LATER)).code == 0
    waiting = [orjson.loads(b)["batch_id"] for b in preview_batches((await cli(home, "preview", now=LATER)).out)]
    assert len(waiting) == 2
    nothing = await cli(home, "send", now=LATER)
    assert nothing.code == 0
    assert collector.bodies == []
    assert (await cli(home, "approve", waiting[1], now=LATER)).code == 0
    assert (await cli(home, "send", now=LATER)).code == 0
    assert [orjson.loads(b)["batch_id"] for b in collector.bodies] == [waiting[1]]
    assert (await cli(home, "approve", "00000000-0000-4000-8000-000000000000")).code == 2


async def test_cli_400_is_not_retried_and_batch_kept_as_rejected(home: AgentHome, collector: FakeCollector) -> None:
    """A 422/400 is final: one attempt, the batch is kept as rejected, and status shows the collector's error."""
    home.write_config(endpoint=collector.url)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    collector.script = [(400, {}, "bad_gzip")]
    sent = await cli(home, "send")
    assert sent.code == 1
    assert len(collector.bodies) == 1
    status = (await cli(home, "status", "--json")).json()
    assert status["outbox"]["batches"] == 0
    assert status["rejected"][0]["code"] == "bad_gzip"
    assert "bad_gzip" in (await cli(home, "history")).text
    assert (await cli(home, "send")).code == 0
    assert len(collector.bodies) == 1


async def test_cli_retries_503_then_delivers(home: AgentHome, collector: FakeCollector) -> None:
    """503 and a dropped connection are retried; the third attempt delivers the same bytes."""
    home.write_config(endpoint=collector.url)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    collector.script = [(503, {"Retry-After": "0"}, "overloaded"), "drop"]
    sent = await cli(home, "send")
    assert sent.code == 0, sent.text + sent.err
    assert len(collector.bodies) == 3
    assert len(set(collector.bodies)) == 1
    outcomes = [h["outcome"] for h in (await cli(home, "history", "--json")).json()]
    assert outcomes == ["retry", "retry", "delivered"]


async def test_cli_off_mode_opens_no_connection(home: AgentHome, collector: FakeCollector) -> None:
    """With consent off, `send` and `run` open no socket at all (audit hook) and the collector hears nothing."""
    home.write_config(endpoint=collector.url, consent="off")
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    hook = (
        "def _hook(event, args):\n"
        "    if event == 'socket.connect':\n"
        "        sys.stderr.write('SOCKET-CONNECT\\n'); sys.stderr.flush(); import os; os._exit(99)\n"
        "sys.addaudithook(_hook)"
    )
    sent = await cli(home, "send", prelude=hook)
    assert sent.code == 0, sent.err
    assert "Consent is off" in sent.text
    forced = await cli(home, "send", prelude=hook, env={"DO_NOT_TRACK": "1"})
    assert forced.code == 0
    home.write_config(endpoint=collector.url, consent="auto", snapshot_interval_s=3600, batch_period_s=3600,
                      send_window_s=0)  # fmt: skip
    code = f"import sys\n{hook}\nfrom agent.cli import main\nsys.exit(main(['run']))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=home.env(TELEMETRY_DISABLED="1", TELEMETRY_AGENT_FAKE_SPEED="7200"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(2.5)  # five agent hours
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    assert b"SOCKET-CONNECT" not in err
    assert collector.requests == []


async def test_cli_run_daemon_collects_seals_and_sends(home: AgentHome, collector: FakeCollector) -> None:
    """`run` on a fast fake clock snapshots at start and hourly, seals, sends within the window, and stops on
    SIGTERM; the start snapshot has no CPU usage yet (nothing to average over), the next ones do."""
    home.write_config(endpoint=collector.url, snapshot_interval_s=3600, batch_period_s=3 * 3600, send_window_s=600)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", env=home.env(TELEMETRY_AGENT_FAKE_SPEED="7200"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(collector.received.wait(), 30)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    batch = parse_batch(collector.bodies[0])
    assert 3 <= len(batch.snapshots) <= 4
    assert batch.snapshots[0].taken_at == "2026-11-28T10:00:00Z"  # at start, not an interval later
    assert "host.cpu.usage_pct" not in batch.snapshots[0].metrics
    assert "host.cpu.usage_pct" in batch.snapshots[1].metrics
    assert b"sealed batch" in err
    schedule = orjson.loads((home.state / "schedule.json").read_bytes())
    assert schedule["next_snapshot_at"] > "2026-11-28T12"


async def test_cli_two_agents_on_one_state_dir_get_a_clear_error(home: AgentHome) -> None:
    """A second `run` on the same state dir exits 1 naming the pid that holds it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", env=home.env(), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.readline(), 20)  # "running" once the lock is held
    second = await cli(home, "run")
    proc.send_signal(signal.SIGTERM)
    await proc.wait()
    assert second.code == 1
    assert f"is in use by pid {proc.pid}" in second.err
    assert "Traceback" not in second.err


async def test_cli_corrupt_config_exits_2_naming_the_field(home: AgentHome) -> None:
    """A bad consent value, a bad TOML file, and a bad env var each give exit 2 and a one-line error."""
    home.write_config(consent="sometimes")
    bad = await cli(home, "status")
    assert bad.code == 2
    assert "consent: must be off, review or auto" in bad.err
    assert "Traceback" not in bad.err
    assert len(bad.err.strip().splitlines()) == 1
    home.config_path.write_text("consent = [\n")
    assert "is not valid TOML" in (await cli(home, "status")).err
    home.write_config()
    env_bad = await cli(home, "status", env={"TELEMETRY_SNAPSHOT_INTERVAL_S": "often"})
    assert env_bad.code == 2
    assert "snapshot_interval_s: must be an integer" in env_bad.err


async def test_cli_corrupt_state_file_exits_2_and_bad_outbox_entry_is_quarantined(home: AgentHome) -> None:
    """A corrupt state file names the file (exit 2); a corrupt outbox file is quarantined and counted."""
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    (home.state / "outbox" / "0000000009-0b7e0c3a-52f4-4c55-8a0e-1d2c3b4a5f60.json").write_text("{not json")
    preview = await cli(home, "preview")
    assert preview.code == 0
    assert len(preview_batches(preview.out)) == 1
    assert len(list((home.state / "quarantine").iterdir())) == 1
    assert (await cli(home, "status", "--json")).json()["counters"]["quarantined"] == 1
    (home.state / "history.json").write_text("{oops")
    bad = await cli(home, "history")
    assert bad.code == 2
    assert "history.json: corrupt state file" in bad.err


async def test_cli_secret_is_private_and_forget_starts_over(home: AgentHome, collector: FakeCollector) -> None:
    """The secret file is mode 0600; `remote` shows held data; `forget` deletes it and makes a new id."""
    home.write_config(endpoint=collector.url)
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    assert (await cli(home, "send")).code == 0
    secret = home.state / "secret"
    if os.name == "posix":
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    old_id = (await cli(home, "status", "--json")).json()["install_id"]
    collector.installs[old_id] = secret.read_text().strip()
    remote = await cli(home, "remote")
    assert remote.code == 0, remote.err
    assert remote.json()["install_id"] == old_id
    forget = await cli(home, "forget", "--yes", "--json")
    assert forget.code == 0, forget.err
    assert forget.json()["old_install_id"] == old_id
    status = (await cli(home, "status", "--json")).json()
    assert status["install_id"] != old_id
    assert status["install_id"] == forget.json()["new_install_id"]
    assert status["last_attempt"] is None
    assert (await cli(home, "remote")).code == 1  # the new id is unknown to the collector: 401


async def test_cli_export_writes_exact_batch_files(home: AgentHome) -> None:
    """`export PATH` writes each sealed batch as <batch_id>.json with the exact outbox bytes."""
    assert (await cli(home, "collect")).code == 0
    assert (await cli(home, "seal")).code == 0
    [shown] = preview_batches((await cli(home, "preview")).out)
    assert (await cli(home, "export", str(home.root / "out"))).code == 0
    batch_id = parse_batch(shown).batch_id
    assert (home.root / "out" / f"{batch_id}.json").read_bytes() == shown


async def test_cli_consent_command_persists_and_do_not_track_wins(home: AgentHome) -> None:
    """`consent review` is stored and wins over the config; DO_NOT_TRACK=1 forces off anyway."""
    assert (await cli(home, "consent", "review")).code == 0
    assert (await cli(home, "consent", "--json")).json() == {"consent": "review", "source": "consent command",
                                                             "consented_version": 1}  # fmt: skip
    forced = (await cli(home, "consent", "--json", env={"DO_NOT_TRACK": "1"})).json()
    assert forced["consent"] == "off"
    assert (await cli(home, "consent", "sometimes")).code == 2


async def test_cli_bad_endpoint_entry_exits_2_naming_it(home: AgentHome) -> None:
    """A bad entry in an endpoint list, in the file or the env var, is one line naming `endpoint[N]` (exit 2)."""
    home.write_config(endpoint=["https://c1.example:8443", "c2.example:8443"])
    bad = await cli(home, "status")
    assert bad.code == 2
    assert bad.err.strip() == "telemetry-agent: config error: endpoint[1]: must be an http:// or https:// URL"
    home.write_config()
    dup = await cli(
        home, "send", env={"TELEMETRY_ENDPOINT": "https://c1.example,https://c2.example,https://c1.example"}
    )
    assert dup.code == 2
    assert dup.err.strip() == "telemetry-agent: config error: endpoint[2]: names the same collector as endpoint[0]"


async def test_cli_failover_pair_sticks_across_restarts_and_fails_back(home: AgentHome,
                                                                       pair: tuple[Site, Site]) -> None:  # fmt: skip
    """HA pair: first down -> the second delivers in the same round with no backoff; each new CLI process
    sticks to the second (even with the first back); the second down -> back to the first; `remote` alike."""
    first, second = pair
    # A backoff would be up to 10 minutes: only failing over at once keeps these sends quick (and wait_s 0).
    home.write_config(endpoint=[first.url, second.url], max_attempts=2, backoff_base_s=600, max_backoff_s=600)
    await first.down()

    async def send_one(now: str) -> list[tuple[str, int | None, str, float | None]]:
        before = len((await cli(home, "history", "--json", now=now)).json())
        assert (await cli(home, "collect", now=now)).code == 0
        assert (await cli(home, "seal", now=now)).code == 0
        sent = await cli(home, "send", now=now)
        assert sent.code == 0, sent.text + sent.err
        history = (await cli(home, "history", "--json", now=now)).json()
        return [(h["endpoint"], h["status"], h["outcome"], h["wait_s"]) for h in history[before:]]

    assert await send_one(START) == [(first.label, None, "retry", 0.0), (second.label, 200, "delivered", None)]
    assert len(second.fake.bodies) == 1
    status = (await cli(home, "status", "--json")).json()
    assert status["endpoint"] == second.url
    assert [(e["url"], e["current"]) for e in status["endpoints"]] == [(first.url, False), (second.url, True)]
    human = (await cli(home, "status")).text
    assert f"endpoint[0]:      {first.url}\n" in human
    assert f"endpoint[1]:      {second.url} (current)\n" in human
    assert f"from {second.label})" in human

    await first.up()  # back on the same port, but the agent sticks to the one that answered last
    assert await send_one(LATER) == [(second.label, 200, "delivered", None)]
    assert first.fake.bodies == []

    await second.down()
    assert await send_one("2026-11-28T12:05:00Z") == [(second.label, None, "retry", 0.0),
                                                      (first.label, 200, "delivered", None)]  # fmt: skip
    assert (await cli(home, "status", "--json")).json()["endpoint"] == first.url
    *_, went_second, went_first = (await cli(home, "history")).text.splitlines()
    assert f" {second.label} " in went_second
    assert f" {first.label} " in went_first

    await second.up()
    await first.down()
    install_id = (await cli(home, "status", "--json")).json()["install_id"]
    second.fake.installs[install_id] = (home.state / "secret").read_text().strip()
    remote = await cli(home, "remote")
    assert remote.code == 0, remote.err
    assert remote.json()["install_id"] == install_id
    assert (await cli(home, "status", "--json")).json()["endpoint"] == second.url
