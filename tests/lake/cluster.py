"""Collector processes on one lake, for the multi-collector tests: start, SIGKILL, restart, ask.

Each collector is a real ``python -m collector serve`` subprocess on 127.0.0.1; the lake settings go
through the documented environment variables, as an operator would set them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector import CollectorConfig
from collector.config import ENV_PREFIX
from schema import install_id_from_secret, new_secret
from tests.collector.conftest import batch_obj, canonical
from tests.conftest import ROOT

_LAKE_FIELDS = ("store", "catalog", "data_path", "s3_endpoint", "s3_key_id", "s3_secret", "s3_region",
                "maintenance_interval_s", "erasure_max_hours")  # fmt: skip


def lake_env(config: CollectorConfig, **extra: str) -> dict[str, str]:
    """The environment of a collector process on ``config``'s lake (plus ``extra`` TELEMETRY_COLLECTOR_* values)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name in _LAKE_FIELDS:
        value = getattr(config, name)
        if value is not None:
            env[ENV_PREFIX + name.upper()] = str(value)
    env.update({ENV_PREFIX + k.upper(): v for k, v in extra.items()})
    return env


@dataclass
class Collector:
    """One collector process; ``url`` is set once it listens."""

    env: Mapping[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    log: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 60.0) -> Collector:
        """Start (on the same port as before, if it ran already) and wait for its listening line."""
        argv = [sys.executable, "-m", "collector", "serve", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(self.env), cwd=ROOT)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"collector did not start: {line!r} {err.decode()[-2000:]!r}")
        self.url = match[1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        _, err = self.proc.communicate()
        self.log.append(err.decode())
        self.proc = None

    def stop(self) -> tuple[int, str]:
        """SIGTERM and wait; returns the exit code and stderr."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        code, self.proc = self.proc.returncode, None
        self.log.append(err.decode())
        return code, err.decode()


def stopped_logs(collectors: Sequence[Collector], *, tail_chars: int = 8000) -> str:
    """Stop every running collector; the end of all their stderr (a failing assertion's message)."""
    for collector in collectors:
        if collector.proc is not None:
            collector.stop()
    return "\n".join("\n".join(c.log) for c in collectors)[-tail_chars:]


def run_cli(env: Mapping[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m collector ARGS`` with ``env``."""
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          env=dict(env), cwd=ROOT, timeout=timeout_s)  # fmt: skip


@dataclass
class FleetInstall:
    """An install of the test fleet: its secret (to prove ownership) and its batches' bytes."""

    secret: str
    install_id: str
    bodies: dict[str, bytes] = field(default_factory=dict)
    """batch_id -> canonical bytes."""


def make_installs(count: int, batches_each: int, *, snapshots_each: int = 2) -> list[FleetInstall]:
    """Installs with distinct secrets; each batch holds ``snapshots_each`` hourly snapshots, batches back to back."""
    installs = []
    for _ in range(count):
        secret = new_secret()
        install = FleetInstall(secret=secret, install_id=install_id_from_secret(secret))
        for n in range(batches_each):
            start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(hours=(snapshots_each + 1) * n)
            obj = _dated_batch(install.install_id, start, snapshots_each)
            install.bodies[obj["batch_id"]] = canonical(obj)
        installs.append(install)
    return installs


def _dated_batch(install_id: str, start: dt.datetime, snapshots_each: int) -> dict[str, Any]:
    obj = batch_obj(install_id=install_id)
    snapshots = obj["snapshots"][:snapshots_each]
    for i, snapshot in enumerate(snapshots):
        snapshot["taken_at"] = (start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:00:00Z")
    obj["snapshots"] = snapshots
    obj["created_at"] = (start + dt.timedelta(hours=snapshots_each)).strftime("%Y-%m-%dT%H:00:00Z")
    return obj


def bodies_of(installs: list[FleetInstall]) -> Iterator[tuple[FleetInstall, str, bytes]]:
    """Every (install, batch_id, bytes) of the fleet."""
    for install in installs:
        for batch_id, body in install.bodies.items():
            yield install, batch_id, body


def batch_ids(document: bytes) -> list[str]:
    """The batch ids listed by a ``GET /v1/installs/ID`` answer."""
    return [b["batch_id"] for b in orjson.loads(document)["batches"]]
