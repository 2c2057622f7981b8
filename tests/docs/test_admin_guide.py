"""The admin guide's agent commands, run in the guide's order as an admin types them, all work.

Each `sudo -u telemetry-agent telemetry-agent ...` line of docs/admin.md runs the installed `telemetry-agent`
found on PATH, with the guide's own config file (its paths pointed at a temporary directory and its endpoint at
a local collector). Two things differ from a real install, for want of root's files and a service user on a test
machine: the config file is named by ``TELEMETRY_AGENT_CONFIG`` (the documented override of
``/etc/telemetry-agent/agent.toml``), and the commands run as the test's user, who owns the state directory as the
service user would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import orjson
import pytest

from schema import CATALOGUE, policy_document
from tests.agent.conftest import RECORDED, FakeCollector
from tests.conftest import DATA, ROOT
from tests.docs.test_guides import _FENCE, _admin_lines

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _guide_config(tmp_path: Path, collector_url: str) -> Path:
    """admin.md's first TOML block (section 2), its paths moved under ``tmp_path`` and its endpoint local."""
    text = (ROOT / "docs" / "admin.md").read_text("utf-8")
    body = next(b for kind, b in _FENCE.findall(text) if kind == "toml")
    (tmp_path / "data").mkdir()
    usage = tmp_path / "usage.json"
    usage.write_text('{"projects": 12, "deployments": 3400}')
    for old, new in (("https://telemetry.example.com", collector_url), ("/var/lib/telemetry-agent", str(tmp_path / "state")),
                     ("/var/lib/deployserver", str(tmp_path / "data"))):  # fmt: skip
        assert f'"{old}"' in body, old
        body = body.replace(f'"{old}"', f'"{new}"')
    body, n = re.subn(r"^command = \[.*\]$", f'file = "{usage}"', body, flags=re.MULTILINE)
    assert n == 1
    path = tmp_path / "etc" / "agent.toml"
    path.parent.mkdir()
    path.write_text(body)
    return path


async def _run(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run_until_started(argv: list[str], env: dict[str, str], state: Path) -> tuple[int, str]:
    """`run` in the foreground, stopped with Ctrl-C (SIGINT) once it has taken its start snapshot."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    for _ in range(200):
        if (state / "schedule.json").exists():
            break
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.skipif(not (BIN / "telemetry-agent").exists(), reason="the telemetry-agent script is not installed")
async def test_admin_guide_agent_commands_work_as_typed(tmp_path: Path, collector: FakeCollector) -> None:
    """From `run` in the foreground to `forget`, every admin command of the guide exits 0 without a traceback, on
    the guide's config: the start snapshot, consent and its reset, collect, preview, seal, approve, send, status,
    history, an upgrade to a newer catalogue and the approval of its new metric, export, a policy import,
    remote and a confirmed forget."""
    config = _guide_config(tmp_path, collector.url)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_") and k != "DO_NOT_TRACK"}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "TELEMETRY_AGENT_CONFIG": str(config),
                "TELEMETRY_AGENT_FAKE_HOST": str(RECORDED / "linux-debian12.json")})  # fmt: skip
    usb = tmp_path / "usb"
    policy = tmp_path / "policy.json"  # what the vendor's version-1 collector serves at GET /v1/policy
    policy.write_bytes(orjson.dumps(policy_document(CATALOGUE)))
    outputs: dict[str, str] = {}
    for line in _admin_lines():
        if line[:3] != ["sudo", "-u", "telemetry-agent"]:
            continue
        argv = line[3:]
        assert argv[0] == "telemetry-agent"
        words = " ".join(argv[1:])
        if argv[1] == "run":
            code, err = await _run_until_started(argv, env, state)
            assert code == 0, err
            assert "snapshot" in err
            continue
        if argv[1] in ("remote", "forget"):
            status = orjson.loads((await _run(["telemetry-agent", "--json", "status"], env))[1])
            collector.installs[status["install_id"]] = (state / "secret").read_text().strip()
        if argv[1] == "metrics" and "TELEMETRY_CATALOGUE" not in env:
            # The section after the upgrade: the product now ships the version-2 catalogue.
            env["TELEMETRY_CATALOGUE"] = str(DATA / "catalogues" / "v2.toml")
        if "BATCH_ID" in argv:
            sent = [h["batch_id"] for h in orjson.loads((state / "history.json").read_bytes())]
            argv = [sent[-1] if a == "BATCH_ID" else a for a in argv]
        argv = [str(usb) if a == "/media/usb/telemetry" else str(policy) if a == "/media/usb/policy.json" else a
                for a in argv]  # fmt: skip
        code, out, err = await _run(argv, env, stdin=b"yes\n" if argv[1] == "forget" else b"")
        assert code == 0, f"{words}: {err}"
        assert "Traceback" not in err
        outputs[words] = out
    assert f"config:           {config}\n" in outputs["status"]
    assert outputs["consent reset"].startswith("Consent: review (from config).\nConsent covers catalogue version 1:")
    assert "usage.environments      v2     awaiting approval" in outputs["metrics"]
    assert "Approved 1 metric(s): usage.environments." in outputs["metrics approve usage.environments"]
    assert "imported from" in outputs["policy"]
    assert "Approved 1 batch(es)." in outputs["approve --all"]
    assert "delivered (HTTP 200" in outputs["send"]
    assert len(collector.bodies) == 1
    assert outputs["history --show BATCH_ID"].encode().strip() == collector.bodies[0]
    assert "The collector erased install" in outputs["forget"]
