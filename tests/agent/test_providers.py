"""Usage providers on a hostile or broken host: redirects, huge output, drips, FIFOs, lingering grandchildren.

Each test runs the real `telemetry-agent collect` in a subprocess against real commands, files and tiny aiohttp
servers on 127.0.0.1. Memory is measured on the agent process (its peak RSS from ``wait4``); time bounds are
generous (a 1 s deadline must not take 15 s, so the bound is 5 s).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.agent.conftest import AgentHome, Result

pytestmark = pytest.mark.slow
RSS_LIMIT_KIB = 100 * 1024  # the bound for a 300 MB answer (the systemd unit has MemoryMax=256M)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GENEROUS_S = 5.0  # for a 1 or 2 s deadline: far above any slow machine, far below the 10-30 s of the bugs


async def _collect(home: AgentHome, limit_s: float = 40.0) -> tuple[Result, float]:
    """`collect --json` in a subprocess, killed after ``limit_s``; the result and its wall time."""
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "--json", "collect", env=home.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"`collect` still running after {limit_s:g} s")
    assert proc.returncode is not None
    return Result(proc.returncode, out, err.decode()), time.monotonic() - began


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _provider(home: AgentHome, **usage: object) -> None:
    """Rewrite the config with this `[usage]` table instead of the fixture's file provider."""
    home.settings = {k: v for k, v in home.settings.items() if not k.startswith("usage.")}
    home.write_config(**{f"usage.{k}": v for k, v in usage.items()})


async def _serve(routes: list[tuple[str, Handler]]) -> tuple[list[TestServer], list[str]]:
    app = web.Application()
    for path, handler in routes:
        app.router.add_get(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return [server], [str(server.make_url("")).rstrip("/")]


async def test_url_provider_does_not_follow_a_redirect(home: AgentHome) -> None:
    """A 302 from usage.url (here to a second local server standing in for 169.254.169.254) is not followed:
    the second server is never asked, and the redirect is a provider error that says so."""
    asked: list[str] = []

    async def metadata(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"projects": 666})

    meta_servers, [meta_url] = await _serve([("/latest/meta-data", metadata)])

    async def usage(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{meta_url}/latest/meta-data")

    servers, [url] = await _serve([("/usage", usage)])
    try:
        _provider(home, url=f"{url}/usage")
        result, _ = await _collect(home)
    finally:
        for server in servers + meta_servers:
            await server.close()
    assert result.code == 0, result.err
    assert asked == []
    assert "usage.projects" not in result.json()["metrics"]
    assert "redirect" in result.err
    assert "HTTP 302" in result.err


async def test_url_provider_deadline_covers_a_dripping_answer(home: AgentHome) -> None:
    """A URL dripping one byte every 0.5 s is cut at `usage.timeout_s` (1 s) for the whole call, not per read."""

    async def drip(request: web.Request) -> web.StreamResponse:
        body = b'{"projects": 3}' + b" " * 15  # 30 bytes: 15 s at one byte per 0.5 s
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for n in range(len(body)):
                await response.write(body[n : n + 1])
                await asyncio.sleep(0.5)
        except (ConnectionError, RuntimeError):
            pass  # the agent hung up: that is the point
        return response

    servers, [url] = await _serve([("/usage", drip)])
    try:
        _provider(home, url=f"{url}/usage", timeout_s=1)
        result, elapsed = await _collect(home)
    finally:
        for server in servers:
            await server.close()
    assert result.code == 0, result.err
    assert elapsed < GENEROUS_S
    assert "timed out after 1 s" in result.err
    assert "usage.projects" not in result.json()["metrics"]


async def test_file_provider_refuses_a_fifo_without_blocking(home: AgentHome) -> None:
    """A FIFO as usage.file (no writer ever comes) costs the usage metrics, never a hang holding agent.lock."""
    fifo = home.root / "usage.fifo"
    os.mkfifo(fifo)
    _provider(home, file=str(fifo), timeout_s=1)
    result, elapsed = await _collect(home, limit_s=20)
    assert result.code == 0, result.err
    assert elapsed < GENEROUS_S
    assert "not a regular file" in result.err
    again, _ = await _collect(home, limit_s=20)  # agent.lock was released
    assert again.code == 0, again.err


def _command(home: AgentHome, script: str, timeout_s: float) -> None:
    _provider(home, command=["/bin/sh", "-c", script], timeout_s=timeout_s)


async def test_command_provider_ends_a_grandchild_holding_stdout(home: AgentHome) -> None:
    """The command printed its counts and exited, but a background grandchild keeps stdout open: the agent uses
    the counts at once (no wait for the deadline) and ends the whole process group."""
    pid_file = home.root / "grandchild.pid"
    _command(home, f"sleep 60 & echo $! > {pid_file}; echo '{{\"projects\": 3}}'", timeout_s=10)
    result, elapsed = await _collect(home)
    assert result.code == 0, result.err
    assert result.json()["metrics"]["usage.projects"] == 3
    assert elapsed < GENEROUS_S
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # the kill is sent before `collect` returns; the reaper may take a moment
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.1)
    assert not _alive(grandchild)


async def test_command_provider_timeout_ends_the_process_group(home: AgentHome) -> None:
    """A command that outlives `usage.timeout_s` is ended with its whole group, grandchildren included."""
    pid_file = home.root / "grandchild.pid"
    _command(home, f"sleep 60 & echo $! > {pid_file}; wait", timeout_s=1)
    result, elapsed = await _collect(home)
    assert result.code == 0, result.err
    assert elapsed < GENEROUS_S
    assert "timed out after 1 s" in result.err
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.1)
    assert not _alive(grandchild)


# Starts the agent and reports its exit status and peak RSS (KiB). A child's ru_maxrss also counts the memory
# of the process it was forked from (Linux folds the pre-exec high-water mark in at exec), so the agent is
# started from this small process, not from the test run itself, which may hold hundreds of MB by then.
_SPAWN_AND_MEASURE = """
import os, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def test_command_provider_huge_output_keeps_the_agent_small(home: AgentHome) -> None:
    """A command printing 300 MB: the agent reads at most 64 KiB + 1 byte, then ends it; its peak RSS stays
    under 100 MB (measured on the real `telemetry-agent collect` process with wait4)."""
    _command(home, "exec head -c 300000000 /dev/zero", timeout_s=30)
    out, err = home.root / "out", home.root / "err"
    measured = subprocess.run(
        [sys.executable, "-c", _SPAWN_AND_MEASURE, str(out), str(err), sys.executable, "-m", "agent", "--json",
         "collect"],
        env=home.env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    returncode, peak_kib = (int(word) for word in measured.stdout.split())
    assert returncode == 0, err.read_text()
    assert "more than 65536 bytes" in err.read_text()
    assert "usage.projects" not in orjson.loads(out.read_bytes())["metrics"]
    assert peak_kib < RSS_LIMIT_KIB, f"peak RSS {peak_kib} KiB"


@pytest.mark.parametrize(
    "answer", ['{"projects": 3, "projects": 4}', '{"deployments": 1, "projects": 3, "pr\\u006fjects": 3}']
)
async def test_provider_answer_with_a_repeated_key_is_a_provider_error(home: AgentHome, answer: str) -> None:
    """A key twice in the provider's answer (verbatim or with an escape) has no one meaning: the answer is a
    provider error naming the key, and none of its values is used (orjson alone would keep the last)."""
    (home.root / "usage.json").write_text(answer)
    result, _ = await _collect(home)
    assert result.code == 0, result.err
    assert "projects" in result.err
    assert "more than once" in result.err
    metrics = result.json()["metrics"]
    assert "usage.projects" not in metrics
    assert "usage.deployments" not in metrics
