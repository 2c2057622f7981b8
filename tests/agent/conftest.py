"""Fixtures for the agent tests: a scriptable collector on 127.0.0.1, config files, and the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent import _guard
from tests.conftest import DATA

RECORDED = DATA / "psutil"
START = "2026-11-28T10:05:00Z"


@pytest.fixture(autouse=True)
def strict_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """A swallowed bug in the agent still fails the test."""
    monkeypatch.setattr(_guard, "STRICT", True)


@dataclass
class FakeCollector:
    """A real aiohttp server that answers from a script and records the exact bytes it received.

    Script items: ``"ok"`` (receipt), ``"bad_receipt"``, ``"drop"`` (read the body, then close the
    connection), ``"hold"`` (read the body, then never answer), or ``(status, headers, error_code)``.
    When the script is empty every batch gets a receipt.
    """

    script: list[Any] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[str] = field(default_factory=set)
    url: str = ""
    installs: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] | None = None
    """The document GET /v1/policy answers; None: 404, as from a server without one."""
    policy_requests: int = 0

    async def batches(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        raw = await request.read()  # aiohttp decompresses Content-Encoding: gzip
        self.bodies.append(raw)
        self.received.set()
        action = self.script.pop(0) if self.script else "ok"
        if action == "hold":
            await asyncio.sleep(3600)
        if action == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if isinstance(action, tuple):
            status, headers, code = action
            return web.json_response({"error": {"code": code, "message": f"scripted {status}"}}, status=status,
                                     headers=headers)  # fmt: skip
        batch = orjson.loads(raw)
        digest = hashlib.sha256(raw).hexdigest() if action == "ok" else "0" * 64
        duplicate = batch["batch_id"] in self.seen
        self.seen.add(batch["batch_id"])
        return web.json_response({"batch_id": batch["batch_id"], "sha256": digest,
                                  "snapshots": len(batch["snapshots"]), "duplicate": duplicate})  # fmt: skip

    async def install(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        install_id = request.match_info["install_id"]
        if request.headers.get("Authorization", "") != f"Bearer {self.installs.get(install_id)}":
            return web.json_response({"error": {"code": "unauthorized", "message": "no"}}, status=401)
        if request.method == "DELETE":
            return web.json_response(
                {"install_id": install_id, "deleted": {"batches": len(self.bodies), "snapshots": 2}}
            )
        return web.json_response({"install_id": install_id, "batches": [orjson.loads(b) for b in self.bodies]})

    async def get_policy(self, request: web.Request) -> web.Response:
        self.policy_requests += 1
        if self.policy is None:
            return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)
        return web.json_response(self.policy)


def _app(fake: FakeCollector) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/batches", fake.batches)
    app.router.add_get("/v1/policy", fake.get_policy)
    app.router.add_route("*", "/v1/installs/{install_id}", fake.install)
    return app


@pytest.fixture
async def collector() -> Any:
    """A scriptable collector on 127.0.0.1 (ephemeral port)."""
    fake = FakeCollector()
    server = TestServer(_app(fake), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


class Site:
    """A :class:`FakeCollector` on 127.0.0.1 that can go down and come back on the same port (one of an HA pair).

    Down means the port is closed: a connection is refused, as for a collector whose process died.
    """

    def __init__(self) -> None:
        self.fake = FakeCollector()
        self.port = 0
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        """How history and status name this endpoint."""
        return f"127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = TestServer(_app(self.fake), host="127.0.0.1", port=self.port or None)
        await self._server.start_server()
        self.port = self._server.port or 0
        self.fake.url = self.url

    async def down(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None


@pytest.fixture
async def pair() -> Any:
    """Two collectors of an HA pair, both up; tests take either down with ``await site.down()``."""
    sites = (Site(), Site())
    for site in sites:
        await site.up()
    yield sites
    for site in sites:
        await site.down()


def gunzip_if_needed(body: bytes) -> bytes:
    """The body's bytes, decompressed when gzip magic is present."""
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


@dataclass
class AgentHome:
    """A config file and state dir for one agent, and the environment its subprocesses run with."""

    root: Path
    settings: dict[str, Any]

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    def write_config(self, **overrides: Any) -> None:
        lines: list[str] = []
        tables: dict[str, list[str]] = {"product": [], "usage": []}
        for key, value in {**self.settings, **overrides}.items():
            table, _, sub = key.partition(".")
            text = f"{sub if sub else key} = {_toml(value)}"
            (tables[table] if sub else lines).append(text)
        for table, items in tables.items():
            if items:
                lines += [f"[{table}]", *items]
        self.config_path.write_text("\n".join(lines) + "\n")

    def env(self, now: str = START, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("TELEMETRY_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                                                        "no_proxy", "do_not_track")}  # fmt: skip
        return {**base, "TELEMETRY_AGENT_CONFIG": str(self.config_path),
                "TELEMETRY_AGENT_FAKE_HOST": str(RECORDED / "linux-debian12.json"),
                "TELEMETRY_AGENT_FAKE_NOW": now, **extra}  # fmt: skip


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def home(tmp_path: Path) -> AgentHome:
    """An agent home with a valid config (consent auto, fast retries, a command provider)."""
    provider = tmp_path / "usage.json"
    provider.write_text('{"projects": 3, "deployments": 1200}')
    h = AgentHome(tmp_path, {
        "consent": "auto",
        "state_dir": str(tmp_path / "state"),
        "endpoint": "http://127.0.0.1:9",
        "max_attempts": 3,
        "backoff_base_s": 0.05,
        "max_backoff_s": 0.2,
        "connect_timeout_s": 2,
        "send_timeout_s": 5,
        "product.name": "deployserver",
        "product.version": "4.2.1",
        "usage.file": str(provider),
    })  # fmt: skip
    h.write_config()
    return h


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()

    def json(self) -> Any:
        return orjson.loads(self.out)


async def cli(home: AgentHome, *args: str, now: str = START, env: dict[str, str] | None = None,
              prelude: str = "", stdin: bytes | None = None) -> Result:  # fmt: skip
    """Run `python -m agent ARGS` in a subprocess while the test's event loop keeps serving (``stdin``: what
    the user types; else stdin is empty)."""
    code = f"import sys\n{prelude}\nfrom agent.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env={**home.env(now), **(env or {})},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin or b""), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out, err.decode())


def preview_batches(out: bytes) -> list[bytes]:
    """The batch byte lines of `preview` output (everything that is not a # comment)."""
    return [line for line in out.split(b"\n") if line and not line.startswith(b"#")]
