"""docs/reports.md's API and command-line examples, typed as written against the demo's data, answer with data."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
GUIDE = ROOT / "docs" / "reports.md"
DOC_URL = "http://127.0.0.1:8080"
_FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _section(title: str) -> list[str]:
    """The shell lines of a section's sh blocks, with backslash continuations joined."""
    text = GUIDE.read_text("utf-8").split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in _FENCE.findall(text):
        lines.extend(line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip())
    return lines


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The README's demo (a small fleet), kept serving; its URL, analyst token, database path and a stop()."""
    if not shutil.which("curl") or not shutil.which("date"):
        pytest.skip("the guide's examples need curl and GNU date")
    where = tmp_path_factory.mktemp("demo")
    argv = [sys.executable, "-m", "collector", "demo", "--installs", "40", "--days", "14", "--dir", str(where)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=where)
    assert proc.stdout is not None
    found: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if match := re.match(r"Dashboard: (http://\S+)/dashboard#token=(\S+)$", line.strip()):
                found.update(url=match[1], token=match[2])
            if line.startswith("demo: ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(150), "the demo did not get ready"
        yield {**found, "db": str(where / "demo.duckdb"), "stop": lambda: _stop(proc)}
    finally:
        _stop(proc)
        reader.join(5)
        proc.stdout.close()


def _run(line: str, demo: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    command = line.replace(DOC_URL, demo["url"]).replace("telemetry.duckdb", demo["db"])
    command = re.sub(r"^telemetry-collector\b", f"{sys.executable} -m collector", command)
    env = {**os.environ, "TOKEN": demo["token"], "no_proxy": "127.0.0.1"}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def test_api_examples_answer_with_the_demos_data(demo: dict[str, Any]) -> None:
    """Each curl line of 'From the HTTP API' gets a report (or the list) holding rows of the demo's fleet."""
    lines = [line for line in _section("From the HTTP API") if line.startswith("curl")]
    assert len(lines) == 3
    for line in lines:
        done = _run(line, demo)
        assert done.returncode == 0, (line, done.stderr)
        if "format=csv" in line:
            rows = list(csv.DictReader(io.StringIO(done.stdout)))
            assert rows, line
            assert any(row["total"] for row in rows), line
            continue
        body = json.loads(done.stdout)
        assert "error" not in body, (line, body)
        if "/v1/reports/" in line:
            assert any(row["installs"] for row in body["rows"]), line
        else:
            assert body["products"] == ["deployserver"]


def test_cli_examples_answer_with_the_demos_data(demo: dict[str, Any]) -> None:
    """Each `telemetry-collector report` line of 'From the command line' exits 0 with rows from the demo."""
    lines = _section("From the command line")
    assert len(lines) == 4
    online = [line for line in lines if "--db" not in line]
    for line in online:
        done = _run(line, demo)
        assert done.returncode == 0, (line, done.stderr)
        assert done.stdout.strip(), line
        if "--format csv" in line:
            assert len(done.stdout.splitlines()) > 1, line
    [offline] = [line for line in lines if "--db" in line]
    held = _run(offline, demo)  # while the demo runs, its collector holds the file
    assert held.returncode == 1
    assert "--url" in held.stderr
    demo["stop"]()
    done = _run(offline, demo)
    assert done.returncode == 0, done.stderr
    assert any(row["total"] for row in json.loads(done.stdout)["rows"])
