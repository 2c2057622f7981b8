"""schema.settings: one parser per config field, with the same rules in the agent's and the collector's configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from collector.config import CollectorConfig
from collector.errors import ConfigError
from schema.settings import BOOLEAN, INTEGER, NUMBER, PATH, STRINGS, WORDS, Kind, Optional


def test_kinds_read_text_and_typed_values() -> None:
    """Text (a variable, a flag) is parsed; a typed value (TOML) is checked, never parsed from a string."""
    assert INTEGER.text("42") == 42
    assert NUMBER.text("2.5") == 2.5
    assert NUMBER.value(3) == 3.0
    assert BOOLEAN.text(" Yes ") is True
    assert BOOLEAN.text("") is False
    assert STRINGS.text("a, b,,c") == ("a", "b", "c")
    assert STRINGS.text('["a,b"]') == ("a,b",)
    assert WORDS.text("cli 'two words'") == ("cli", "two words")
    assert PATH.text("~/x") == Path.home() / "x"
    cases: list[tuple[Kind[Any], object, str]] = [
        (INTEGER, "5", "must be an integer"),
        (INTEGER, True, "must be an integer"),
        (BOOLEAN, "yes", "must be true or false"),
        (STRINGS, [1], "must be a list of strings"),
    ]
    for kind, raw, message in cases:
        with pytest.raises(ValueError, match=message):
            kind.value(raw)
    with pytest.raises(ValueError, match="must be an integer"):
        INTEGER.text("")


def test_empty_text_unsets_an_optional_setting_on_both_sides() -> None:
    """An empty variable or flag means None for a field that may be None, in the agent and the collector alike."""
    assert Optional(PATH).text("") is None
    assert load_config(None, {"TELEMETRY_CA_BUNDLE": "", "TELEMETRY_PRODUCT_NAME": ""}).product_name is None
    assert CollectorConfig.from_env({"TELEMETRY_COLLECTOR_SPOOL_DIR": ""}).spool_dir is None
    assert CollectorConfig.from_env({}, flags={"catalogue": ""}).catalogue is None
    with pytest.raises(ConfigError, match=r"^--port: must be an integer, got ''$"):
        CollectorConfig.from_env({}, flags={"port": ""})
