"""docs/architecture.md names every product module, and every module it names exists."""

from __future__ import annotations

import re

from tests.conftest import ROOT

_DOC = (ROOT / "docs" / "architecture.md").read_text("utf-8")
_SKIP = {"__init__.py", "__main__.py", "_version.py"}


def test_every_module_is_placed_in_the_architecture_page() -> None:
    """A new module gets a line in docs/architecture.md (the page a newcomer reads first)."""
    missing = [
        str(path.relative_to(ROOT))
        for package in ("schema", "agent", "collector", "demo")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name not in _SKIP and f"{path.name}`" not in _DOC and f"{path.name}," not in _DOC
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_every_path_the_page_names_exists() -> None:
    """Paths written as `package/.../module.py` are real (the page follows the code when it moves)."""
    named = set(re.findall(r"`((?:schema|agent|collector|demo|web|storage|reports|cli|probes)/[\w/]+\.py)`", _DOC))
    roots = [ROOT / "schema", ROOT / "agent", ROOT / "collector", ROOT / "demo", ROOT]
    missing = [p for p in sorted(named) if not any((root / p).exists() for root in roots)]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
