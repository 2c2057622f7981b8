"""Every command, setting and config block the guides and the README show works as written."""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.cli import _parser as agent_parser
from agent.config import DEFAULT_CONFIG, AgentConfig, env_name, load_config
from collector.cli.main import build_parser
from collector.config import ENV_PREFIX, CollectorConfig
from tests.conftest import ROOT

GUIDES = [ROOT / "README.md", ROOT / "docs" / "admin.md", ROOT / "docs" / "integration.md"]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HOOKS = {
    "TELEMETRY_AGENT_CONFIG",
    "TELEMETRY_AGENT_FAKE_NOW",
    "TELEMETRY_AGENT_FAKE_SPEED",
    "TELEMETRY_AGENT_FAKE_HOST",
}


def _blocks(lang: str) -> list[tuple[str, str]]:
    return [(path.name, body) for path in GUIDES for kind, body in _FENCE.findall(path.read_text("utf-8"))
            if kind == lang]  # fmt: skip


def _collector_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # The demo package adds `demo` through its entry point (pyproject.toml): the collector never imports it.
    assert "demo" in sub.choices, (
        "telemetry-collector demo is missing: reinstall (pip install -e .) for its entry point"
    )
    return parser


def _command_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for name, body in _blocks("sh") + _blocks("powershell"):
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip())
            for part in line.split("&&"):
                argv = shlex.split(part.replace("\\", "/"))
                if argv[:2] == ["sudo", "-u"]:
                    argv = argv[3:]  # an admin command run as the service user
                argv = [a.rsplit("/", 1)[-1] if a.endswith(("telemetry-agent", "telemetry-collector")) else a
                        for a in argv]  # fmt: skip
                if argv and argv[0] in ("telemetry-agent", "telemetry-collector"):
                    lines.append((name, argv))
    return lines


@pytest.mark.parametrize(("doc", "argv"), _command_lines(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_documented_command_parses(doc: str, argv: list[str]) -> None:
    """Each `telemetry-agent ...` / `telemetry-collector ...` line in the guides is accepted by the real CLI."""
    parser = agent_parser() if argv[0] == "telemetry-agent" else _collector_parser()
    args = [a.replace("BATCH_ID", "00000000-0000-4000-8000-000000000000") for a in argv[1:]]
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        if exc.code == 0:  # --help
            return
        pytest.fail(f"{doc}: {' '.join(argv)} is rejected (exit {exc.code})")


def test_guides_show_every_agent_command() -> None:
    """The admin guide mentions every agent subcommand at least once."""
    text = (ROOT / "docs" / "admin.md").read_text("utf-8")
    sub = next(a for a in agent_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"telemetry-agent {name}" not in text]
    assert not missing


@pytest.mark.parametrize(("doc", "body"), _blocks("toml"))
def test_toml_blocks_are_valid_agent_config(tmp_path: Path, doc: str, body: str) -> None:
    """Every TOML config block loads with the agent's own loader (known keys, valid values); a catalogue entry
    (integration.md's walk-through) is, word for word, the one of the version-2 fixture the tests run with."""
    if body.lstrip().startswith("[[metric]]"):
        fixture = (ROOT / "tests" / "data" / "catalogues" / "v2.toml").read_text("utf-8")
        assert textwrap.dedent(body) in fixture
        return
    path = tmp_path / "agent.toml"
    path.write_text(body.replace("/etc/ssl/certs/internal-ca.pem", str(path)), "utf-8")
    load_config(path, environ={})


def test_documented_environment_variables_exist() -> None:
    """Every TELEMETRY_* variable the guides name is a real setting or a documented hook."""
    known = {env_name(f.name) for f in dataclasses.fields(AgentConfig)} | _HOOKS
    known |= {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(CollectorConfig)}
    named = {m for path in GUIDES for m in re.findall(r"\bTELEMETRY_[A-Z_]+\b(?!\*)", path.read_text("utf-8"))}
    assert named - known == set()


def test_systemd_unit_runs_the_agent_daemon() -> None:
    """The systemd unit in admin.md is well-formed and its ExecStart is a valid `telemetry-agent run`."""
    [unit] = [body for _, body in _blocks("ini") if "[Service]" in body]
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit)
    assert parser.sections() == ["Unit", "Service", "Install"]
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/telemetry-agent")
    args = agent_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert service["User"] != "root"
    assert service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == "telemetry-agent"


@pytest.mark.slow
def test_readme_demo_prints_reports_and_dashboard(tmp_path: Path) -> None:
    """The README's demo (`telemetry-collector demo`, small fleet, --exit) prints report tables and a dashboard URL."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert ".venv/bin/telemetry-collector demo" in readme
    _collector_parser()  # the README's command is there
    done = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--exit", "--installs", "40", "--days", "14", "--dir", str(tmp_path / "demo")],
        capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    for title in ("Active installs", "Version adoption", "OS family share", "Deployments"):
        assert f"== {title}" in out
    assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/dashboard#token=tct_\S+$", out, re.MULTILINE)
    assert "simulating fleet:" in done.stderr.decode()  # the progress line
    active = out.split("== Active installs")[1].split("== Version adoption")[0]
    assert max(int(n) for n in re.findall(r"^\S+\s+(\d+)$", active, re.MULTILINE)) >= 20


def _admin_lines() -> list[list[str]]:
    """The argv of every line of admin.md's shell blocks that runs `telemetry-agent`, in order, as written."""
    text = (ROOT / "docs" / "admin.md").read_text("utf-8")
    lines = []
    for kind, body in _FENCE.findall(text):
        for line in body.splitlines() if kind == "sh" else []:
            argv = shlex.split(re.sub(r"\s+#.*$", "", line.strip()))
            command = argv[3:] if argv[:2] == ["sudo", "-u"] else argv
            if command and command[0].rsplit("/", 1)[-1] == "telemetry-agent":
                lines.append(argv)
    return lines


def test_admin_guide_runs_every_admin_command_as_the_service_user() -> None:
    """Each `telemetry-agent` command of admin.md, but `--help` right after installing, is typed as the service
    user (`sudo -u telemetry-agent telemetry-agent ...`), finds the command on PATH and the default config, and
    is accepted by the real CLI."""
    guide = (ROOT / "docs" / "admin.md").read_text("utf-8")
    lines = [argv for argv in _admin_lines() if argv != ["telemetry-agent", "--help"]]
    assert len(lines) >= 15
    for argv in lines:
        assert argv[:4] == ["sudo", "-u", "telemetry-agent", "telemetry-agent"], argv
        assert "--config" not in argv, argv  # /etc/telemetry-agent/agent.toml is found by default
        agent_parser().parse_args([a.replace("BATCH_ID", "00000000-0000-4000-8000-000000000000") for a in argv[4:]])
    assert "ln -s /opt/telemetry-agent/bin/telemetry-agent /usr/local/bin/telemetry-agent" in guide
    assert "`/etc/telemetry-agent/agent.toml`" in guide
    assert str(DEFAULT_CONFIG) == "/etc/telemetry-agent/agent.toml" or sys.platform == "win32"


def test_agent_reference_unit_agrees_with_the_admin_guide() -> None:
    """The systemd lines in agent.md name the same user, config file and ExecStart as admin.md's full unit."""

    def service(path: Path) -> configparser.SectionProxy:
        [unit] = [b for kind, b in _FENCE.findall(path.read_text("utf-8")) if kind == "ini" and "[Service]" in b]
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit)
        return parser["Service"]

    full, short = service(ROOT / "docs" / "admin.md"), service(ROOT / "docs" / "agent.md")
    for key in short:
        assert short[key] == full[key], key
    assert full["User"] == "telemetry-agent"
    assert "--config /etc/telemetry-agent/agent.toml run" in full["ExecStart"]
    assert full["RestartPreventExitStatus"] == "2"
    text = (ROOT / "docs" / "agent.md").read_text("utf-8")
    assert "User=telemetry\n" not in text
    assert "/etc/telemetry-agent.toml" not in text
