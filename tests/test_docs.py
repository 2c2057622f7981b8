"""Docs that are generated stay in step with their source."""

from __future__ import annotations

from schema.docs import generated_files
from tests.conftest import ROOT


def test_generated_docs_are_fresh() -> None:
    """docs/metrics.md, docs/privacy.md and schema/batch-v1.schema.json match the catalogue (run `python -m schema`)."""
    stale = [str(p.relative_to(ROOT)) for p, text in generated_files(ROOT).items() if p.read_text("utf-8") != text]
    assert not stale, f"stale generated files, run `python -m schema`: {stale}"
