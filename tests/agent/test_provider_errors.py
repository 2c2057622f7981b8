"""A failing usage provider says why: its command, file or URL, the HTTP status, the first line of its stderr.

The real `telemetry-agent collect` in a subprocess against real commands and a tiny aiohttp server; the
callable kind through the engine the embedded agent uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent import AgentConfig, Engine
from tests.agent.conftest import RECORDED, START, AgentHome, cli

pytestmark = pytest.mark.slow


def _provider(home: AgentHome, **usage: object) -> None:
    home.settings = {k: v for k, v in home.settings.items() if not k.startswith("usage.")}
    home.write_config(**{f"usage.{k}": v for k, v in usage.items()})


async def test_command_provider_error_names_the_program_its_status_and_first_stderr_line(home: AgentHome) -> None:
    """A command exiting 3 after writing to stderr: `collect` and `status` give the program, the exit status and
    the first line it wrote (not a bare exception name), with the time of the failure."""
    _provider(home, command=["/bin/sh", "-c", "echo >&2; echo 'database is locked' >&2; echo 'more' >&2; exit 3"])
    collected = await cli(home, "--json", "collect")
    assert collected.code == 0, collected.err
    reason = "command provider /bin/sh: exited with status 3: database is locked"
    assert collected.json()["provider_error"] == reason
    assert f"telemetry-agent: warning: {reason}\n" in collected.err
    status = (await cli(home, "status", "--json")).json()
    assert status["provider"]["last_error"] == reason
    assert status["provider"]["last_error_at"] == START
    assert f"provider errors:  1, the last at {START}: {reason}\n" in (await cli(home, "status")).text


async def test_command_provider_that_cannot_start_is_named(home: AgentHome, tmp_path: Path) -> None:
    """A command that does not exist is named with the OS's reason."""
    missing = tmp_path / "deployserver" / "bin" / "stats"
    _provider(home, command=[str(missing), "--json"])
    collected = await cli(home, "collect")
    assert f"command provider {missing}: cannot start (No such file or directory)" in collected.text


async def test_command_provider_chatty_stderr_neither_blocks_nor_fills_the_message(home: AgentHome) -> None:
    """A command writing 1 MB to stderr before its answer is read to the end (it does not block on a full pipe)
    and its counts are used."""
    _provider(home, command=["/bin/sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo '{\"projects\": 5}'"],
              timeout_s=10)  # fmt: skip
    collected = await cli(home, "--json", "collect")
    assert collected.code == 0, collected.err
    assert collected.json()["metrics"]["usage.projects"] == 5
    assert collected.json()["provider_error"] is None


async def test_url_provider_error_names_the_url_and_the_http_status(home: AgentHome) -> None:
    """A 500 from usage.url is reported with the URL and the status line."""

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_get("/usage", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/usage"))
    try:
        _provider(home, url=url)
        collected = await cli(home, "collect")
    finally:
        await server.close()
    assert f"url provider {url}: answered HTTP 500 Internal Server Error" in collected.err


def test_callable_provider_error_gives_the_exception_and_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A product's callable that raises is reported with the exception's type and the first line of its message."""
    monkeypatch.setenv("TELEMETRY_AGENT_FAKE_HOST", str(RECORDED / "linux-debian12.json"))

    def usage() -> dict[str, object]:
        raise RuntimeError("database closed\nat line 3")

    config = AgentConfig(consent="review", state_dir=tmp_path / "state", product_name="deployserver",
                         product_version="4.2.1")  # fmt: skip
    result = Engine(config, usage=usage).collect()
    assert result.provider == "callable provider"
    assert result.provider_error == "callable provider: failed: RuntimeError: database closed"
    assert "usage.projects" not in result.metrics
