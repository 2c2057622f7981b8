"""Shared fixtures: golden batches and paths. Fixtures used by one area stay next to its tests."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def load_golden(name: str) -> bytes:
    """The bytes of a golden file under tests/data (e.g. ``v1/valid/full-day.json``)."""
    return (DATA / name).read_bytes()


@pytest.fixture
def golden_batch() -> dict[str, object]:
    """A valid 24-snapshot batch as a mutable JSON object."""
    obj = orjson.loads(load_golden("v1/valid/full-day.json"))
    assert isinstance(obj, dict)
    return obj
