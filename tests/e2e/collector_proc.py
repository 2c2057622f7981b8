"""A real ``telemetry-collector serve`` subprocess on 127.0.0.1 with a real DuckDB file, for end-to-end tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from collector import CollectorConfig, open_storage
from collector.storage.tokens import create_token

_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass(frozen=True)
class RunningCollector:
    """A collector process, its base URL and an analyst token."""

    url: str
    token: str
    db: Path

    def get(self, path: str, *, bearer: str | None = None) -> Any:
        """GET a JSON document from the collector (no proxy), with an optional bearer credential."""
        token = bearer if bearer is not None else self.token
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as resp:
            return orjson.loads(resp.read())


@contextlib.contextmanager
def running_collector(tmp: Path, env: Mapping[str, str] | None = None) -> Iterator[RunningCollector]:
    """Start ``python -m collector serve`` on a free port with a fresh database; SIGTERM it afterwards."""
    db = tmp / "collector.duckdb"
    with open_storage(CollectorConfig(db_path=db)) as store:
        _, token = store.write_sync(lambda con: create_token(con, "analyst", dt.datetime.now(dt.UTC)))
    argv = [sys.executable, "-m", "collector", "serve", "--db", str(db), "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            match = _LISTENING.search(line.decode())
            if match and not found:
                found.append(match[1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(300):
            if found or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert found, f"the collector did not start (exit status {proc.poll()})"
        yield RunningCollector(url=found[0], token=token, db=db)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        reader.join(5)
        proc.stdout.close()
