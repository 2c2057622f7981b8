"""Where a bench writes its results: its own ``## Title`` section of docs/performance.md, replaced whole."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_section"]

PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def write_section(title: str, section: str, path: Path = PERFORMANCE_MD) -> None:
    """Replace the ``## {title}`` section of ``path`` with ``section`` (which starts with that heading), or append it."""
    text = path.read_text("utf-8") if path.exists() else "# Performance\n\n"
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text, "utf-8")
