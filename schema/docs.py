"""Generated documents: the metric dictionary (``docs/metrics.md``), the privacy page and the batch JSON Schemas.

All are derived from the catalogue, never written by hand; ``python -m schema`` rewrites them and
``python -m schema --check`` (run by the tests) fails when one is stale.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from .batch import MAX_SNAPSHOTS
from .catalogue import CATALOGUE, Catalogue, Entry
from .jsonschema import batch_json_schema

__all__ = ["generated_files", "render_metrics_md", "render_privacy_md"]


def _allowed(entry: Entry) -> str:
    if entry.type == "int":
        return f"integer {entry.min} to {entry.max:,}".replace(",", " ")
    if entry.type == "enum":
        return "one of " + ", ".join(f"`{v}`" for v in entry.values)
    return f"pattern `{entry.pattern}`".replace("|", "\\|")


def _table(entries: list[Entry], *, retired: bool) -> list[str]:
    rows = [
        "| key | allowed values | unit | kind | coarsening | category | policy clause | since |"
        + (" retired |" if retired else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if retired else ""),
    ]
    rows += [
        f"| `{e.key}` | {_allowed(e)} | {e.unit or '-'} | {e.kind} | `{e.coarsening}` | {e.category} "
        f"| [{e.clause}](#clause-{e.clause}) | v{e.since} |"
        + ((f" v{e.removed_in} |" if e.removed_in else " - |") if retired else "")
        for e in entries
    ]
    return rows


def _keys(entries: list[Entry]) -> str:
    return ", ".join(f"`{e.key}`" for e in entries)


def _changelog(catalogue: Catalogue) -> list[str]:
    """Newest version first: what each version added and retired."""
    lines = [
        "## Changelog",
        "",
        "A catalogue of version N describes every version up to N: entries are never edited or deleted, only "
        "added (`since`) and retired (`removed_in`). A batch records the version it was built against "
        "(`catalogue_version`), and the collector checks it against what that version allowed.",
        "",
    ]
    for version in range(catalogue.version, 0, -1):
        added, retired = catalogue.added_in(version), catalogue.retired_in(version)
        lines += [f"### Version {version}", ""]
        if version == 1:
            lines.append(f"- First version: {len(added)} snapshot metrics, {_keys(added)}.")
        elif added:
            lines.append(
                f"- Added: {_keys(added)}. Installs that consented to an earlier version send "
                "it only once their admin approves it (`telemetry-agent metrics approve`)."
            )
        if retired:
            lines.append(
                f"- Retired: {_keys(retired)}. No longer collected; batches built against an earlier "
                "version may still hold it, and the collector still accepts them."
            )
        if version > 1 and not added and not retired:
            lines.append("- No change to the metrics.")
        lines.append("")
    return lines


def _details(entries: list[Entry]) -> list[str]:
    lines: list[str] = []
    for e in entries:
        lines += [
            f"### `{e.key}`",
            "",
            e.description,
            "",
            f"- **Why:** {e.purpose}",
            f"- **Rests on:** clause `{e.clause}` of the privacy policy",
        ]
        lines.append(f"- **Versions:** since {e.since}" + (f", retired in {e.removed_in}" if e.removed_in else ""))
        lines.append("")
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
        "Integers are written without a fraction or exponent: `8`, never `8.0` or `8e0`. The collector refuses "
        "the others (422 `wrong_type`), although JSON Schema, which has no way to tell them apart, lets a "
        "validator in another language accept them. No key may appear twice in one object (400 `duplicate_key`).",
        "",
        "## Privacy-policy clauses",
        "",
    ]
    for name, text in catalogue.clauses.items():
        lines += [f'<a id="clause-{name}"></a>**`{name}`**: {text}', ""]
    lines += [
        "## Batch header fields",
        "",
        *_table(header, retired=False),
        "",
        "## Snapshot metrics",
        "",
        *_table(metrics, retired=True),
        "",
    ]
    lines += _changelog(catalogue)
    lines += ["## Coarsening rules", ""]
    lines += [f"- `{rule}`: {text}" for rule, text in _RULES.items()]
    lines += ["", "## Details", "", *_details(header + metrics)]
    return "\n".join(lines).rstrip() + "\n"


_NEVER = [
    "IP addresses: the collector does not store or log them (its access log omits the peer address).",
    "Host names, domain names, MAC addresses, serial numbers or cloud instance ids.",
    "User names, e-mail addresses, licence keys, customer or project names.",
    "File system paths, command lines, environment variables, configuration contents.",
    "Free-form text of any kind: every string is from a closed list or matches a tight pattern (see the table).",
    "Exact timestamps: every time is truncated to the hour, in UTC.",
    "Anything not in the catalogue: the agent drops such keys (and counts them), the collector refuses the batch.",
]


def _consent_versions(catalogue: Catalogue) -> list[str]:
    newest = ", ".join(
        f"version {v} added {_keys(catalogue.added_in(v))}"
        for v in range(2, catalogue.version + 1)
        if catalogue.added_in(v)
    )
    return [
        "## Consent follows the catalogue version",
        "",
        f"This is catalogue version {catalogue.version}. Consent is given to a version: `telemetry-agent consent "
        "review` or `auto` records the catalogue version the admin agreed to (with `consent` set in the "
        "configuration, the version in force when the agent first collects). A later release of the product may "
        "ship a newer catalogue with more metrics: each added metric is **not collected** until the admin approves "
        "it (`telemetry-agent metrics` lists every metric and its state, `telemetry-agent metrics approve KEY` or "
        "`--all` approves). A retired metric stops being collected at once, with no approval needed. "
        + (f"Since version 1, {newest}. " if newest else "")
        + "Each batch records the catalogue version it was built against, so what an install sent can always be "
        "read against the definitions of that version (the [changelog](metrics.md#changelog)).",
        "",
        "The admin can also narrow the catalogue (`disabled_metrics`), never widen it, and the agent leaves out "
        "any metric the vendor's collector does not accept (it learns that from the collector's `GET /v1/policy`, "
        "or from a policy file carried over to an air-gapped install with `telemetry-agent policy import`).",
        "",
    ]


def render_privacy_md(catalogue: Catalogue = CATALOGUE) -> str:
    """The privacy page: what is collected and why (from the catalogue), what never is, how anonymity holds."""
    lines = [
        "# Privacy",
        "",
        "<!-- Generated from schema/catalogue.toml and schema/docs.py by `python -m schema`. Do not edit by hand. -->",
        "",
        "Telemetry is **off** until an administrator of the install turns it on (`consent = review` or `auto`). "
        "`DO_NOT_TRACK=1` or `TELEMETRY_DISABLED=1` turn it off whatever the configuration says, and off means no "
        "network connection at all. In `review` mode nothing leaves until the admin approves each batch, after "
        "seeing its exact bytes with `telemetry-agent preview`.",
        "",
        "## What is collected, and why",
        "",
        "| what | sent as | why | policy clause |",
        "|---|---|---|---|",
    ]
    for e in [*catalogue.header.values(), *catalogue.metrics.values()]:
        when = (
            f" (retired in version {e.removed_in}: no longer collected)"
            if e.removed_in
            else (f" (since version {e.since})" if e.since > 1 else "")
        )
        lines.append(
            f"| `{e.key}`{when}: {e.description} | {_allowed(e)}, coarsening `{e.coarsening}` | {e.purpose} "
            f"| `{e.clause}` |"
        )
    lines += ["", "The policy clauses these rest on:", ""]
    lines += [f"- `{name}`: {text}" for name, text in catalogue.clauses.items()]
    lines += [
        "",
        "The full definitions are in the [metric dictionary](metrics.md).",
        "",
        *_consent_versions(catalogue),
        "## What is never collected",
        "",
    ]
    lines += [f"- {item}" for item in _NEVER]
    lines += [
        "",
        "## How anonymity holds",
        "",
        "- **Install id.** Each install makes a random 256-bit secret, kept only on the install (file mode 0600). "
        "The install id is the first 128 bits of SHA-256 over a fixed label and that secret, written as a UUID. It is "
        "derived from nothing about the machine or its owner, and it changes when the admin runs `telemetry-agent forget`.",
        "- **Coarsening.** Values are rounded before they leave (memory to whole GiB, disk to two significant digits, "
        "OS version to major.minor, CPU usage to a whole percent), and the collector refuses values that are not coarse.",
        "- **Small groups.** Every report suppresses groups of fewer than `min_group_size` installs (default 5) and says "
        "how much it suppressed; no report returns one install's rows to an analyst.",
        "- **Access and erasure.** The secret proves ownership: `telemetry-agent remote` shows everything the collector "
        "holds about the install, `telemetry-agent forget` erases it (every table, rollups included) and starts over "
        "with a new secret and id. A wrong secret learns nothing, not even whether the install exists.",
        "- **Retention.** Raw snapshots are deleted after `retention_days` (default 400); only aggregates without an "
        "install id may be kept longer.",
        "- **Audit.** `telemetry-agent history` lists every delivery attempt with the SHA-256 and size of the bytes "
        "sent, and `history --show BATCH_ID` prints them; the collector's receipt echoes the SHA-256 it stored.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def generated_files(root: Path, catalogue: Catalogue = CATALOGUE) -> dict[Path, str]:
    """Every generated file under the repository ``root`` and the text it must hold."""
    json_schema = orjson.dumps(batch_json_schema(catalogue, 1), option=orjson.OPT_INDENT_2).decode() + "\n"
    json_schema_v2 = orjson.dumps(batch_json_schema(catalogue, 2), option=orjson.OPT_INDENT_2).decode() + "\n"
    return {
        root / "docs" / "metrics.md": render_metrics_md(catalogue),
        root / "docs" / "privacy.md": render_privacy_md(catalogue),
        root / "schema" / "batch-v1.schema.json": json_schema,
        root / "schema" / "batch-v2.schema.json": json_schema_v2,
    }
