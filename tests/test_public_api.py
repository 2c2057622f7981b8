"""The public API of each package is exactly its ``__all__`` (httpx style): nothing public slips in unlisted."""

from __future__ import annotations

from types import ModuleType

import pytest

import agent
import collector
import schema


@pytest.mark.parametrize("package", [agent, collector, schema], ids=lambda p: p.__name__)
def test_all_is_exactly_the_public_names(package: ModuleType) -> None:
    """Anything public in the package's __init__ is in __all__, and nothing in __all__ is missing."""
    public = {n for n in vars(package) if not n.startswith("_") and not isinstance(getattr(package, n), ModuleType)}
    assert sorted(package.__all__) == sorted(public)
