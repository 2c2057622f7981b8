"""Each usage provider example in docs/examples (and docs/integration.md) works through the real agent CLI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DATA, ROOT

EXAMPLES = ROOT / "docs" / "examples"
FAKE_HOST = DATA / "psutil" / "linux-debian12.json"


def _load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


usage_http = _load_example("usage_http")

pytestmark = pytest.mark.slow


def _env(tmp: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_") and k != "DO_NOT_TRACK"}
    env.update({
        "TELEMETRY_STATE_DIR": str(tmp / "state"),
        "TELEMETRY_PRODUCT_NAME": "deployserver",
        "TELEMETRY_PRODUCT_VERSION": "4.2.1",
        "TELEMETRY_AGENT_FAKE_HOST": str(FAKE_HOST),
        **settings,
    })  # fmt: skip
    return env


def _collect(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "agent", "--json", "collect"], env=env, capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def _usage(result: dict[str, Any]) -> dict[str, Any]:
    metrics = result["metrics"]
    return {k: v for k, v in metrics.items() if k.startswith("usage.")}


def test_command_provider_example(tmp_path: Path) -> None:
    """usage_command.py reads a database in its documented layout (made by its --create-demo) and the agent takes
    its counts; a missing database is one line on stderr that the agent shows as the provider's error."""
    db = tmp_path / "app.db"
    made = subprocess.run([sys.executable, str(EXAMPLES / "usage_command.py"), "--create-demo", str(db)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    command = orjson.dumps([sys.executable, str(EXAMPLES / "usage_command.py"), str(db)]).decode()
    result = _collect(_env(tmp_path, TELEMETRY_USAGE_COMMAND=command))
    assert _usage(result) == {"usage.projects": 4, "usage.deployments": 57}
    missing = tmp_path / "nowhere.db"
    command = orjson.dumps([sys.executable, str(EXAMPLES / "usage_command.py"), str(missing)]).decode()
    failed = _collect(_env(tmp_path / "other", TELEMETRY_USAGE_COMMAND=command))
    assert _usage(failed) == {}
    assert failed["provider_error"] == (f"command provider {sys.executable}: exited with status 1: usage_command.py: "
                                        f"{missing}: unable to open database file")  # fmt: skip


def test_file_provider_example(tmp_path: Path) -> None:
    """usage_file.py writes the file atomically and the agent reads it; a missing folder is one line, exit 1."""
    path = tmp_path / "telemetry-usage.json"
    subprocess.run([sys.executable, str(EXAMPLES / "usage_file.py"), str(path), "12", "3400"], check=True, timeout=30)
    result = _collect(_env(tmp_path, TELEMETRY_USAGE_FILE=str(path)))
    assert _usage(result) == {"usage.projects": 12, "usage.deployments": 3400}
    nowhere = tmp_path / "missing" / "telemetry-usage.json"
    failed = subprocess.run([sys.executable, str(EXAMPLES / "usage_file.py"), str(nowhere), "12", "3400"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr == (f"usage_file.py: cannot write {nowhere} (No such file or directory): create "
                             f"{nowhere.parent} first\n")  # fmt: skip


@pytest.fixture
def usage_server() -> Iterator[str]:
    """usage_http.py's server on a free loopback port; yields its usage URL."""
    server = usage_http.make_server(usage_http.Counts(), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/internal/usage"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_url_provider_example(tmp_path: Path, usage_server: str) -> None:
    """usage_http.py answers on 127.0.0.1 and the agent takes its counts."""
    result = _collect(_env(tmp_path, TELEMETRY_USAGE_URL=usage_server))
    assert _usage(result) == {"usage.projects": 3, "usage.deployments": 120}


def test_embedded_example(tmp_path: Path) -> None:
    """embedded.py runs agent.Agent in the product's process on the real clock (hourly snapshots): within its
    documented run time it logs the snapshot taken at start, and `preview` shows the product's counts in it."""
    env = _env(tmp_path, TELEMETRY_CONSENT="review")
    done = subprocess.run([sys.executable, str(EXAMPLES / "embedded.py"), "--seconds", "3"], env=env,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert "agent: telemetry agent running" in done.stderr
    assert re.search(r"^agent: snapshot \d{4}-\d\d-\d\dT\d\d:00:00Z: 8 metrics, 0 dropped$", done.stderr, re.MULTILINE)
    assert "see what the agent took with `telemetry-agent preview`" in done.stdout
    preview = subprocess.run([sys.executable, "-m", "agent", "--json", "preview"], env=env, capture_output=True,
                             timeout=60, check=True)  # fmt: skip
    [item] = orjson.loads(preview.stdout)["batches"]
    assert item["kind"] == "open"
    metrics = orjson.loads(item["text"])["snapshots"][0]["metrics"]
    assert metrics["usage.projects"] >= 1
    assert metrics["usage.deployments"] >= 1
