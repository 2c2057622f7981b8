"""`telemetry-agent status` answers "what is sent next, and when", with the settings in force and where they come from.

The real CLI in subprocesses; the daemon is the real `telemetry-agent run`, started and stopped by each test.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from tests.agent.conftest import START, AgentHome, cli

pytestmark = pytest.mark.slow
Z_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
async def daemon(home: AgentHome) -> AsyncIterator[asyncio.subprocess.Process]:
    """`telemetry-agent run` on the home's state dir (agent time runs at real speed), up once it has written
    its schedule; stopped with SIGTERM afterwards if the test has not stopped it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", env=home.env(), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        if (home.state / "schedule.json").exists():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the daemon wrote no schedule")
    yield proc
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


async def test_status_tells_what_the_running_daemon_does_next_and_stops_telling_once_it_stopped(
    home: AgentHome, daemon: asyncio.subprocess.Process
) -> None:
    """While `run` holds the state dir, status names its pid and the next snapshot, seal and send (Z times);
    in review mode it counts the batches waiting for approval; with consent off, or once the daemon stopped,
    it shows no schedule (the one in schedule.json would never happen)."""
    status = (await cli(home, "status", "--json")).json()
    assert status["daemon"] == {"running": True, "pid": daemon.pid}
    upcoming = status["next"]
    assert upcoming["snapshot_at"].startswith("2026-11-28T11:05:0")  # an interval after the start snapshot
    assert upcoming["seal_at"].startswith("2026-11-29T10:05:0")
    assert Z_TIME.fullmatch(upcoming["snapshot_at"])
    assert Z_TIME.fullmatch(upcoming["seal_at"])
    assert upcoming["send"] == "after_seal"
    text = (await cli(home, "status")).text
    assert f"daemon:           running (pid {daemon.pid})\n" in text
    assert re.search(r"^next snapshot:    2026-11-28T11:05:0\dZ$", text, re.MULTILINE)
    assert "next send:        after the next seal, within send_window_s\n" in text
    assert "+00:00" not in text

    assert (await cli(home, "consent", "review")).code == 0
    assert (await cli(home, "seal")).code == 0  # the start snapshot's batch
    text = (await cli(home, "status")).text
    assert "approval:         1 batch(es) wait for your approval: `telemetry-agent preview`, then" in text
    assert "next send:        once you approve a batch\n" in text
    assert (await cli(home, "approve", "--all")).code == 0
    status = (await cli(home, "status", "--json")).json()
    assert status["outbox"]["waiting_approval"] == 0
    assert status["next"]["send"] == "pending"  # the daemon picks the moment at its next look (within a minute)

    assert (await cli(home, "consent", "off")).code == 0
    text = (await cli(home, "status")).text
    assert "consent is off, so it reads and sends nothing" in text
    assert "next " not in text
    assert (await cli(home, "status", "--json")).json()["next"] == {
        "snapshot_at": None, "seal_at": None, "send_at": None, "send": None,
    }  # fmt: skip

    assert (await cli(home, "consent", "auto")).code == 0
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 20) == 0
    stopped = (await cli(home, "status", "--json")).json()
    assert stopped["daemon"] == {"running": False, "pid": None}
    assert set(stopped["next"].values()) == {None}
    text = (await cli(home, "status")).text
    assert "daemon:           not running: nothing is collected or sent on schedule" in text
    assert "next " not in text
    assert (home.state / "schedule.json").exists()  # still there for the next start, just not shown


async def test_status_names_the_config_file_and_how_to_change_consent(home: AgentHome) -> None:
    """status names the config file it read and, for the consent mode, where it comes from and how to change it;
    `consent reset` undoes `consent MODE`, so the config (or TELEMETRY_CONSENT) decides again."""
    home.write_config(consent="off")
    text = (await cli(home, "status")).text
    assert f"config:           {home.config_path}\n" in text
    assert "consent:          off (from config; change it with `telemetry-agent consent off|review|auto`)\n" in text

    assert (await cli(home, "consent", "review")).code == 0
    env = {"TELEMETRY_CONSENT": "auto"}
    shown = await cli(home, "consent", env=env)
    assert (
        shown.text
        == "Consent: review (from consent command).\nConsent covers catalogue version 1: 9 of 9 metrics are collected "
        "(`telemetry-agent metrics` lists each with its state).\n`telemetry-agent consent reset` returns to the "
        "config's auto.\n"
    )
    text = (await cli(home, "status", env=env)).text
    assert (f"consent:          review (from consent command; set at {START}; `telemetry-agent consent reset` "
            f"returns to the config's auto)\n") in text  # fmt: skip

    reset = await cli(home, "consent", "reset", env=env)
    assert reset.code == 0, reset.err
    assert reset.text == ("Consent: auto (from config).\nConsent covers catalogue version 1: 9 of 9 metrics are "
                          "collected (`telemetry-agent metrics` lists each with its state).\n")  # fmt: skip
    assert not (home.state / "consent.json").exists()
    assert (await cli(home, "consent", "--json")).json() == {
        "consent": "off",
        "source": "config",
        "consented_version": 1,
    }
    forced = (await cli(home, "status", env={"DO_NOT_TRACK": "1"})).text
    assert "consent:          off (from DO_NOT_TRACK / TELEMETRY_DISABLED; unset them" in forced


async def test_status_shows_the_usage_provider_and_its_last_error(home: AgentHome) -> None:
    """status names the configured provider with its last answer, and its last error with the reason and time;
    with no provider configured it says that snapshots carry no usage counts."""
    usage = home.root / "usage.json"
    assert (await cli(home, "collect")).code == 0
    text = (await cli(home, "status")).text
    assert f"usage provider:   file provider {usage} (last answered {START})\n" in text
    assert "provider errors:  0\n" in text
    usage.unlink()
    assert (await cli(home, "collect", now="2026-11-28T11:05:00Z")).code == 0
    text = (await cli(home, "status")).text
    assert (f"provider errors:  1, the last at 2026-11-28T11:05:00Z: file provider {usage}: cannot read (No such "
            f"file or directory)\n") in text  # fmt: skip
    status = (await cli(home, "status", "--json")).json()
    assert status["provider"]["last_ok_at"] == START
    assert status["provider"]["last_error_at"] == "2026-11-28T11:05:00Z"

    home.settings = {k: v for k, v in home.settings.items() if not k.startswith("usage.")}
    home.write_config()
    text = (await cli(home, "status")).text
    assert (
        "usage provider:   none configured: snapshots carry no usage counts (set [usage] command, file or url)" in text
    )
