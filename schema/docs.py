"""Generated documents: the metric dictionary (``docs/metrics.md``) and the batch JSON Schema file.

Both are derived from the catalogue, never written by hand; ``python -m schema`` rewrites them and
``python -m schema --check`` (run by the tests) fails when either is stale.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from .batch import MAX_SNAPSHOTS
from .catalogue import CATALOGUE, Catalogue, Entry
from .jsonschema import batch_json_schema

__all__ = ["generated_files", "render_metrics_md"]


def _allowed(entry: Entry) -> str:
    if entry.type == "int":
        return f"integer {entry.min} to {entry.max:,}".replace(",", " ")
    if entry.type == "enum":
        return "one of " + ", ".join(f"`{v}`" for v in entry.values)
    return f"pattern `{entry.pattern}`".replace("|", "\\|")


def _table(entries: list[Entry]) -> list[str]:
    rows = [
        "| key | allowed values | unit | kind | coarsening | category | policy clause | since |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows += [
        f"| `{e.key}` | {_allowed(e)} | {e.unit or '-'} | {e.kind} | `{e.coarsening}` | {e.category} "
        f"| [{e.clause}](#clause-{e.clause}) | v{e.since} |"
        for e in entries
    ]
    return rows


def _details(entries: list[Entry]) -> list[str]:
    lines: list[str] = []
    for e in entries:
        lines += [f"### `{e.key}`", "", e.description, "", f"- **Why:** {e.purpose}",
                  f"- **Rests on:** clause `{e.clause}` of the privacy policy", ""]  # fmt: skip
    return lines


_RULES = {
    "exact": "sent as read (integers, labels from a closed list).",
    "round": "rounded half-up to a whole number.",
    "round_sig2": "rounded to two significant digits (487 -> 490, 1234 -> 1200); values under 100 stay whole numbers.",
    "major_minor": "only the name and `major.minor` are kept (`Ubuntu 22.04.3 LTS` -> `Ubuntu 22.04`).",
}


def render_metrics_md(catalogue: Catalogue = CATALOGUE) -> str:
    """The metric dictionary as Markdown."""
    header = list(catalogue.header.values())
    metrics = list(catalogue.metrics.values())
    lines = [
        "# Metric dictionary",
        "",
        "<!-- Generated from schema/catalogue.toml by `python -m schema`. Do not edit by hand. -->",
        "",
        f"Catalogue version **{catalogue.version}**. This is everything an install can ever send: the agent "
        "collects nothing else and the collector refuses anything else. Timestamps are UTC truncated to the "
        f"hour; a batch holds at most {MAX_SNAPSHOTS} snapshots, one per hour at most.",
        "",
        "## Privacy-policy clauses",
        "",
    ]
    for name, text in catalogue.clauses.items():
        lines += [f'<a id="clause-{name}"></a>**`{name}`**: {text}', ""]
    lines += ["## Batch header fields", "", *_table(header), "", "## Snapshot metrics", "", *_table(metrics), ""]
    lines += ["## Coarsening rules", ""]
    lines += [f"- `{rule}`: {text}" for rule, text in _RULES.items()]
    lines += ["", "## Details", "", *_details(header + metrics)]
    return "\n".join(lines).rstrip() + "\n"


def generated_files(root: Path, catalogue: Catalogue = CATALOGUE) -> dict[Path, str]:
    """Every generated file under the repository ``root`` and the text it must hold."""
    json_schema = orjson.dumps(batch_json_schema(catalogue), option=orjson.OPT_INDENT_2).decode() + "\n"
    return {
        root / "docs" / "metrics.md": render_metrics_md(catalogue),
        root / "schema" / "batch-v1.schema.json": json_schema,
    }
