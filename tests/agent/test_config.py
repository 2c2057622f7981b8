"""Config: TOML plus TELEMETRY_* env vars, validated with errors that name the field; every field documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from agent import AgentConfig, ConfigError, load_config
from agent.config import config_file, env_name, toml_key
from tests.conftest import ROOT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_config_defaults_are_off_and_hourly() -> None:
    """With nothing set, consent is off, snapshots hourly, batches daily."""
    config = load_config(None, {})
    assert (config.consent, config.snapshot_interval_s, config.batch_period_s) == ("off", 3600, 86400)
    assert config.data_path == config.state_dir


def test_config_env_overrides_file_and_parses_lists(tmp_path: Path) -> None:
    """Env vars win over the file; lists accept a JSON array, a shlex string (command) or commas."""
    path = _write(tmp_path, 'consent = "review"\n[product]\nname = "deployserver"\nversion = "1.2"\n')
    config = load_config(path, {
        "TELEMETRY_CONSENT": "auto",
        "TELEMETRY_USAGE_COMMAND": "deployserver-cli stats --json",
        "TELEMETRY_DISABLED_METRICS": "usage.projects, host.cpu.usage_pct",
        "TELEMETRY_SEND_TIMEOUT_S": "12.5",
    })  # fmt: skip
    assert config.consent == "auto"
    assert config.product_name == "deployserver"
    assert config.usage_command == ("deployserver-cli", "stats", "--json")
    assert config.disabled_metrics == ("usage.projects", "host.cpu.usage_pct")
    assert config.send_timeout_s == 12.5
    assert load_config(None, {"TELEMETRY_USAGE_COMMAND": '["a b", "c"]'}).usage_command == ("a b", "c")


def test_config_endpoint_takes_one_url_or_a_list(tmp_path: Path) -> None:
    """`endpoint` is a URL (kept a plain string, as ever) or a list: a TOML array, or commas/JSON in the env."""
    pair = ("https://c1.example:8443", "https://c2.example:8443")
    one = load_config(_write(tmp_path, 'endpoint = "https://telemetry.example.com"\n'), {})
    assert one.endpoint == "https://telemetry.example.com"
    assert [e.label for e in one.endpoints] == ["telemetry.example.com"]
    listed = load_config(_write(tmp_path, f"endpoint = {list(pair)!r}\n".replace("'", '"')), {})
    assert listed.endpoint == pair
    assert [e.label for e in listed.endpoints] == ["c1.example:8443", "c2.example:8443"]
    assert (
        load_config(None, {"TELEMETRY_ENDPOINT": " https://c1.example:8443 ,https://c2.example:8443"}).endpoint == pair
    )
    assert load_config(None, {"TELEMETRY_ENDPOINT": orjson.dumps(pair).decode()}).endpoint == pair
    assert load_config(None, {"TELEMETRY_ENDPOINT": "https://c1.example:8443"}).endpoint == pair[0]
    assert load_config(None, {"TELEMETRY_ENDPOINT": ""}).endpoints == ()
    assert AgentConfig(endpoint=list(pair)).endpoint == pair  # type: ignore[arg-type]  # a Python caller's list


@pytest.mark.parametrize("variable", ["DO_NOT_TRACK", "TELEMETRY_DISABLED"])
def test_config_do_not_track_forces_off(variable: str) -> None:
    """DO_NOT_TRACK=1 or TELEMETRY_DISABLED=1 force consent off even when auto is configured."""
    config = load_config(None, {"TELEMETRY_CONSENT": "auto", variable: "1"})
    assert config.consent_forced_off


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('consent = "maybe"\n', {}, "consent: must be off, review or auto"),
        ("colour = 1\n", {}, "colour: unknown key"),
        ('[usage]\ncommand = ["x"]\nfile = "/tmp/x"\n', {}, "usage: set exactly one of command, file, url"),
        ('[usage]\nurl = "http://example.com/stats"\n', {}, "usage.url: must point at this machine"),
        ('endpoint = "ftp://x"\n', {}, "endpoint: must be an http:// or https:// URL"),
        ('endpoint = "https://x:99999"\n', {}, "endpoint: has an invalid port"),
        ("endpoint = 8443\n", {}, "endpoint: must be a URL or a list of URLs"),
        ("endpoint = []\n", {}, "endpoint: must list at least one URL"),
        ('endpoint = ["https://c1.example", "ftp://c2"]\n', {}, "endpoint[1]: must be an http:// or https:// URL"),
        ('endpoint = ["https://c1.example", 8443]\n', {}, "endpoint[1]: must be a string"),
        ('endpoint = "https://agent:s3cret@c1.example"\n', {}, "endpoint: must not contain user info"),
        ('endpoint = ["https://agent@c1.example"]\n', {}, "endpoint[0]: must not contain user info"),
        (
            "",
            {"TELEMETRY_ENDPOINT": "https://c1.example,http://:s3cret@c2.example"},
            "endpoint[1]: must not contain user info",
        ),
        (
            'endpoint = ["https://c1.example", "https://C1.example:443/"]\n',
            {},
            "endpoint[1]: names the same collector as endpoint[0]",
        ),
        (
            "endpoint = [" + ", ".join(f'"https://c{n}.example"' for n in range(9)) + "]\n",
            {},
            "endpoint: must list at most 8 URLs",
        ),
        (
            "",
            {"TELEMETRY_ENDPOINT": "https://c1.example,c2.example"},
            "endpoint[1]: must be an http:// or https:// URL",
        ),
        ("", {"TELEMETRY_ENDPOINT": "[oops"}, "endpoint: must be a JSON array of URLs or comma-separated URLs"),
        ("snapshot_interval_s = 5\n", {}, "snapshot_interval_s: must be between 60 and 86400"),
        ('disabled_metrics = ["user.email"]\n', {}, "disabled_metrics: 'user.email' is not a catalogue metric"),
        ('[product]\nname = "My Product!"\n', {}, "product.name: must match"),
        ("", {"TELEMETRY_MAX_ATTEMPTS": "lots"}, "max_attempts: must be an integer"),
        ('ca_bundle = "/nonexistent/ca.pem"\n', {}, "ca_bundle: file not found"),
        ("consent = \n", {}, "is not valid TOML"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    """Every invalid value raises ConfigError whose message starts with the TOML key at fault."""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), env)
    assert message in str(info.value)


def test_config_every_field_and_env_var_is_documented() -> None:
    """docs/agent.md names every config key and its TELEMETRY_* variable."""
    docs = (ROOT / "docs" / "agent.md").read_text("utf-8")
    missing = [
        name for f in dataclasses.fields(AgentConfig) for name in (toml_key(f.name), env_name(f.name))
        if f"`{name}`" not in docs
    ]  # fmt: skip
    for extra in ("DO_NOT_TRACK", "TELEMETRY_AGENT_CONFIG", "TELEMETRY_AGENT_FAKE_NOW", "TELEMETRY_AGENT_FAKE_SPEED",
                  "TELEMETRY_AGENT_FAKE_HOST"):  # fmt: skip
        if f"`{extra}`" not in docs:
            missing.append(extra)
    assert not missing, f"undocumented in docs/agent.md: {missing}"


def test_config_default_file_is_read_when_none_is_named(tmp_path: Path) -> None:
    """Without --config or TELEMETRY_AGENT_CONFIG the default file is read if it exists; either one wins over it."""
    default = _write(tmp_path, '[product]\nname = "deployserver"\nversion = "4.2.1"\n')
    assert config_file(None, {}, default=default) == default
    assert load_config(None, {}, default=default).product_name == "deployserver"
    named = tmp_path / "named.toml"
    named.write_text('consent = "review"\n')
    assert load_config(None, {"TELEMETRY_AGENT_CONFIG": str(named)}, default=default).product_name is None
    assert load_config(named, {}, default=default).consent == "review"
    missing = tmp_path / "missing" / "agent.toml"
    assert config_file(None, {}, default=missing) is None
    assert load_config(None, {}, default=missing).product_name is None
