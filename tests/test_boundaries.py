"""Package boundaries: schema imports only the stdlib and orjson; agent and collector never import each other
(nor demo, the dev tools that drive both)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ALLOWED_THIRD_PARTY = {
    "schema": {"orjson"},
    "agent": {"schema", "orjson", "aiohttp", "psutil", "yarl", "multidict"},
    "collector": {"schema", "orjson", "aiohttp", "duckdb", "prometheus_client", "yarl", "multidict"},
    # Dev tools (the fleet simulator, the demo): the one place that drives both sides, so neither imports the other.
    "demo": {"agent", "collector", "schema", "orjson", "aiohttp"},
}
ONLY_UNDER = {"psycopg": ROOT / "collector" / "storage" / "lake"}
"""Imports allowed in one folder only: the lake backend's PostgreSQL client (the [lake] extra)."""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED_THIRD_PARTY))
def test_package_imports_stay_inside_boundaries(package: str) -> None:
    """Each package imports only the stdlib, itself and what its boundary allows."""
    allowed = ALLOWED_THIRD_PARTY[package] | {package} | set(sys.stdlib_module_names)
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name not in allowed and not (name in ONLY_UNDER and path.is_relative_to(ONLY_UNDER[name]))
    }
    assert not offenders, sorted(offenders)


def test_agent_and_collector_import_schema() -> None:
    """Both sides enforce the same contract: each imports schema somewhere."""
    for package in ("agent", "collector"):
        assert any("schema" in _imports(p) for p in (ROOT / package).rglob("*.py")), package
