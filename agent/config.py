"""Agent configuration: a TOML file plus ``TELEMETRY_*`` environment variables, validated into :class:`AgentConfig`.

Every field has one TOML key and one environment variable. Top-level fields keep their name
(``consent`` / ``TELEMETRY_CONSENT``); fields of the ``[product]`` and ``[usage]`` tables carry the
table as a prefix (``usage.command`` / ``TELEMETRY_USAGE_COMMAND``). Environment variables win over
the file. ``DO_NOT_TRACK=1`` or ``TELEMETRY_DISABLED=1`` force consent off whatever else is set.
Each field names its parser (a :class:`schema.settings.Kind`, shared with the collector's settings): how an
environment variable's text and a TOML value become the field's value; an empty variable unsets a field
that may be None.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from schema import Catalogue, SchemaError, catalogue_file
from schema.settings import BOOLEAN, INTEGER, NUMBER, PATH, STRINGS, TEXT, TRUE, WORDS, Kind, Optional, kind_of, setting

from .endpoints import MAX_ENDPOINTS, Endpoint, check_url, endpoints_of
from .errors import ConfigError

__all__ = [
    "CONSENT_MODES",
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "MAX_ENDPOINTS",
    "AgentConfig",
    "Endpoint",
    "config_file",
    "env_name",
    "load_config",
    "toml_key",
]

ENV_CONFIG: Final = "TELEMETRY_AGENT_CONFIG"
"""Path of the TOML config file when ``--config`` is not given (it wins over :data:`DEFAULT_CONFIG`)."""
CONSENT_MODES: Final = ("off", "review", "auto")
_TABLES: Final = ("product", "usage")


def _default_config() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "telemetry-agent" / "agent.toml"
    return Path("/etc/telemetry-agent/agent.toml")


DEFAULT_CONFIG: Final = _default_config()
"""The config file read when neither ``--config`` nor ``TELEMETRY_AGENT_CONFIG`` names one, if it exists
(``%PROGRAMDATA%\\telemetry-agent\\agent.toml`` on Windows)."""


def _default_state_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "telemetry-agent"
    if os.geteuid() == 0:
        return Path("/var/lib/telemetry-agent")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "telemetry-agent"


class _Endpoints(Kind[str | tuple[str, ...]]):
    """One URL (kept a plain string, exactly as before lists were allowed) or a list of them, which
    AgentConfig checks one by one (so errors name ``endpoint[N]``)."""

    def text(self, raw: str) -> str | tuple[str, ...]:
        stripped = raw.strip()
        if stripped.startswith("["):
            try:
                return self.value(orjson.loads(stripped))
            except orjson.JSONDecodeError:
                raise ValueError("must be a JSON array of URLs or comma-separated URLs") from None
        if "," in stripped:
            return tuple(part.strip() for part in stripped.split(",") if part.strip())
        return raw

    def value(self, raw: object) -> str | tuple[str, ...]:
        if isinstance(raw, list):
            return tuple(raw)
        if not isinstance(raw, str):
            raise ValueError("must be a URL or a list of URLs")
        return raw


_ENDPOINT: Final = _Endpoints()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Everything the agent may be told; validated on construction (raises :class:`ConfigError`)."""

    endpoint: str | tuple[str, ...] | None = setting(Optional(_ENDPOINT))
    """The collector's base URL, or up to :data:`MAX_ENDPOINTS` of them tried in order (failover)."""
    consent: str = setting(TEXT, "off")
    disabled: bool = setting(BOOLEAN, False)
    state_dir: Path = setting(PATH, factory=_default_state_dir)
    data_dir: Path | None = setting(Optional(PATH))
    snapshot_interval_s: int = setting(INTEGER, 3600)
    batch_period_s: int = setting(INTEGER, 86400)
    send_window_s: int = setting(INTEGER, 3600)
    proxy: str | None = setting(Optional(TEXT))
    ca_bundle: Path | None = setting(Optional(PATH))
    disabled_metrics: tuple[str, ...] = setting(STRINGS, ())
    catalogue: Path | None = setting(Optional(PATH))
    """The policy catalogue file (TOML) this agent collects by; None: the packaged one. The vendor ships it
    with the product release; the admin can only narrow it (``disabled_metrics``)."""
    connect_timeout_s: float = setting(NUMBER, 10.0)
    send_timeout_s: float = setting(NUMBER, 30.0)
    max_attempts: int = setting(INTEGER, 5)
    backoff_base_s: float = setting(NUMBER, 2.0)
    max_backoff_s: float = setting(NUMBER, 300.0)
    max_outbox_batches: int = setting(INTEGER, 31)
    max_history_entries: int = setting(INTEGER, 200)
    product_name: str | None = setting(Optional(TEXT))
    product_version: str | None = setting(Optional(TEXT))
    usage_command: tuple[str, ...] | None = setting(Optional(WORDS))
    usage_file: Path | None = setting(Optional(PATH))
    usage_url: str | None = setting(Optional(TEXT))
    usage_timeout_s: float = setting(NUMBER, 10.0)

    def __post_init__(self) -> None:
        if self.consent not in CONSENT_MODES:
            raise ConfigError("consent", "must be off, review or auto")
        given: object = self.endpoint  # typed as a tuple, but a Python caller may well pass a list
        if isinstance(given, list):
            object.__setattr__(self, "endpoint", tuple(given))  # keeps the config immutable and hashable
        endpoints_of(self.endpoint)
        if self.proxy is not None:
            check_url("proxy", self.proxy, loopback_only=False)
        if self.usage_url is not None:
            check_url("usage.url", self.usage_url, loopback_only=True)
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError("ca_bundle", "file not found")
        _bounds("snapshot_interval_s", self.snapshot_interval_s, 60, 86400)
        # The longest batch the format allows holds 744 hourly snapshots (31 days).
        _bounds("batch_period_s", self.batch_period_s, 3600, 31 * 86400)
        _bounds("send_window_s", self.send_window_s, 0, 7 * 86400)
        _bounds("connect_timeout_s", self.connect_timeout_s, 0.1, 600)
        _bounds("send_timeout_s", self.send_timeout_s, 0.1, 3600)
        _bounds("max_attempts", self.max_attempts, 1, 100)
        _bounds("backoff_base_s", self.backoff_base_s, 0, 3600)
        _bounds("max_backoff_s", self.max_backoff_s, 0, 86400)
        _bounds("max_outbox_batches", self.max_outbox_batches, 1, 10000)
        _bounds("max_history_entries", self.max_history_entries, 1, 100000)
        _bounds("usage.timeout_s", self.usage_timeout_s, 0.1, 600)
        try:
            catalogue = catalogue_file(self.catalogue)
        except SchemaError as exc:
            raise ConfigError("catalogue", exc.message) from None
        for key in self.disabled_metrics:
            if key not in catalogue.metrics:
                raise ConfigError("disabled_metrics", f"{key!r} is not a catalogue metric (see docs/metrics.md)")
        if self.product_name is not None:
            _check_header(catalogue, "product.name", self.product_name)
        if self.product_version is not None:
            _check_header(catalogue, "product.version", self.product_version)
        sources = [s for s in (self.usage_command, self.usage_file, self.usage_url) if s is not None]
        if len(sources) > 1:
            raise ConfigError("usage", "set exactly one of command, file, url")
        if self.usage_command is not None and not self.usage_command:
            raise ConfigError("usage.command", "must be a non-empty list of strings")

    @property
    def catalogue_in_force(self) -> Catalogue:
        """The catalogue of the ``catalogue`` file, or the packaged one (read once per version of the file)."""
        return catalogue_file(self.catalogue)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The configured collector endpoints in failover order (empty when ``endpoint`` is not set)."""
        return endpoints_of(self.endpoint)

    @property
    def data_path(self) -> Path:
        """The directory whose volume the disk metrics describe (``data_dir``, else ``state_dir``)."""
        return self.data_dir if self.data_dir is not None else self.state_dir

    @property
    def consent_forced_off(self) -> bool:
        """Whether ``DO_NOT_TRACK``/``TELEMETRY_DISABLED`` (or ``disabled = true``) force consent off."""
        return self.disabled


def _bounds(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo:g} and {hi:g}")


def _check_header(catalogue: Catalogue, name: str, value: str) -> None:
    entry = catalogue.header[name]
    assert entry.regex is not None
    if entry.regex.fullmatch(value) is None:
        raise ConfigError(name, f"must match {entry.pattern}")


def toml_key(name: str) -> str:
    """The TOML key of a config field: ``usage_command`` -> ``usage.command``."""
    table, _, rest = name.partition("_")
    return f"{table}.{rest}" if table in _TABLES else name


def env_name(name: str) -> str:
    """The environment variable of a config field: ``usage_command`` -> ``TELEMETRY_USAGE_COMMAND``."""
    return f"TELEMETRY_{name.upper()}"


_FIELDS: Final = {f.name: f for f in dataclasses.fields(AgentConfig)}
_BY_TOML: Final = {toml_key(name): name for name in _FIELDS}


def _read(name: str, raw: Any, *, from_text: bool) -> Any:
    # One parser per field (its Kind); an error names the TOML key, in the file and the environment alike.
    kind = kind_of(_FIELDS[name])
    try:
        return kind.text(raw) if from_text else kind.value(raw)
    except ValueError as exc:
        raise ConfigError(toml_key(name), str(exc)) from None


def _flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(key, "must be a table")
            for sub, item in value.items():
                flat[f"{key}.{sub}"] = item
        else:
            flat[key] = value
    return flat


def _present(path: Path) -> bool:
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # there, but not for us (say, a directory only root may enter): reading it says why
    return True


def config_file(
    path: Path | None = None, environ: Mapping[str, str] | None = None, *, default: Path = DEFAULT_CONFIG
) -> Path | None:
    """The config file that applies: ``path``, else ``$TELEMETRY_AGENT_CONFIG``, else ``default`` when it
    exists, else None (defaults and environment variables only)."""
    env = os.environ if environ is None else environ
    if path is not None:
        return path
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return default if _present(default) else None


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None, *, default: Path = DEFAULT_CONFIG
) -> AgentConfig:
    """Read the config file (see :func:`config_file`: ``path``, else ``$TELEMETRY_AGENT_CONFIG``, else
    :data:`DEFAULT_CONFIG` if it exists) and the environment, which wins over the file."""
    env = os.environ if environ is None else environ
    path = config_file(path, env, default=default)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("config", f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
        for key, value in _flatten(raw).items():
            name = _BY_TOML.get(key)
            if name is None:
                raise ConfigError(key, "unknown key (see docs/agent.md)")
            values[name] = _read(name, value, from_text=False)
    for name in _FIELDS:
        if env_name(name) in env:
            values[name] = _read(name, env[env_name(name)], from_text=True)
    if env.get("DO_NOT_TRACK", "").strip().lower() in TRUE:
        values["disabled"] = True
    return AgentConfig(**values)
