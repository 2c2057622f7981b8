"""Human-readable (and ``--json``) renderings of the agent's answers for the CLI."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from schema import CATALOGUE

from .engine import CollectResult, SendReport

__all__ = ["render_collect", "render_history", "render_preview", "render_send", "render_status"]


def _explain(data: bytes) -> list[str]:
    batch = orjson.loads(data)
    lines = []
    keys = sorted({k for snap in batch["snapshots"] for k in snap["metrics"]})
    for key in keys:
        e = CATALOGUE.metrics[key]
        unit = f" [{e.unit}]" if e.unit else ""
        lines.append(f"#   {key}{unit}: {e.description}")
        lines.append(f"#       why: {e.purpose} (policy clause: {e.clause}; coarsening: {e.coarsening})")
    if not keys:
        lines.append("#   (no metrics)")
    return lines


def render_preview(items: list[dict[str, Any]], *, explain: bool, as_json: bool, mode: str) -> Any:
    """The preview: a header line per batch (``#``-prefixed), then its exact bytes on one line."""
    if as_json:
        return {
            "consent": mode,
            "batches": [
                {"kind": i["kind"], "batch_id": i["batch_id"], "status": i["status"], "bytes": len(i["data"]),
                 "sha256": hashlib.sha256(i["data"]).hexdigest(), "text": i["data"].decode("utf-8")}
                for i in items
            ],
        }  # fmt: skip
    out: list[bytes] = []
    sealed = [i for i in items if i["kind"] == "sealed"]
    if not items:
        out.append(b"# Nothing collected yet: no sealed batch and no open batch.\n")
    for n, item in enumerate(items, 1):
        data: bytes = item["data"]
        snaps = len(orjson.loads(data)["snapshots"])
        if item["kind"] == "sealed":
            if mode == "off":
                fate = "consent is off: it will not be sent"
            elif mode == "review":
                fate = "approved: goes at the next send" if item["status"] == "approved" else "waiting for approval"
            else:
                fate = "goes at the next send"
            head = f"# Sealed batch {n} of {len(sealed)}: {item['batch_id']} ({snaps} snapshots, {len(data)} bytes; {fate})"
        else:
            head = f"# Open batch {item['batch_id']} ({snaps} snapshots so far), as it would be sealed now:"
        out.append(head.encode() + b"\n")
        out.append(data + b"\n")
        if explain:
            out.append("\n".join(_explain(data)).encode() + b"\n")
    return b"".join(out)


def render_collect(result: CollectResult) -> str:
    """One snapshot's summary: what went in, what was dropped and why (never a dropped value)."""
    if not result.stored:
        return f"Snapshot {result.taken_at} skipped."
    lines = [f"Snapshot {result.taken_at}: {len(result.metrics)} metrics ({', '.join(sorted(result.metrics))})."]
    if result.dropped:
        lines.append(f"Dropped {len(result.dropped)} key(s): " + ", ".join(f"{k} ({r})" for r, k in result.dropped))
    return "\n".join(lines)


def render_send(report: SendReport) -> str:
    """One line per batch sent."""
    if report.skipped:
        return report.skipped[0].upper() + report.skipped[1:] + "."
    lines = []
    for r in report.results:
        status = f"HTTP {r['status']}" if r["status"] else "no answer"
        line = f"batch {r['batch_id']}: {r['outcome']} ({status} from {r['endpoint']}, {r['attempts']} attempt(s))"
        if r["error"] and r["outcome"] not in ("delivered", "duplicate"):
            err = r["error"]
            line += f": {err.get('code', '')} {err.get('message', '')}" + (
                f" at {err['path']}" if err.get("path") else ""
            )
        lines.append(line)
    return "\n".join(lines)


def _drops(counters: dict[str, Any]) -> str:
    parts = []
    for reason, slot in sorted(counters.get("dropped_keys", {}).items()):
        keys = ", ".join(f"{k} x{n}" for k, n in sorted(slot.get("keys", {}).items()))
        parts.append(f"{reason} {slot.get('total', 0)} ({keys})")
    return "; ".join(parts) or "none"


def _endpoint_lines(endpoints: list[dict[str, Any]]) -> list[str]:
    if len(endpoints) <= 1:
        return [f"endpoint:         {endpoints[0]['url'] if endpoints else '(not set)'}"]
    # Named like the config errors name them, so `endpoint[1]` means the same thing everywhere.
    return [
        f"{f'endpoint[{n}]:':<18}{e['url']}" + (" (current)" if e["current"] else "") for n, e in enumerate(endpoints)
    ]


def render_status(s: dict[str, Any]) -> str:
    """The admin's overview."""
    last = s["last_attempt"]
    if last:
        status = f"HTTP {last['status']}" if last.get("status") else "no answer"
        if last.get("endpoint"):
            status += f" from {last['endpoint']}"
        last_text = f"{last['at']} batch {last['batch_id']}: {last['outcome']} ({status})"
        if last.get("error"):
            last_text += f" {last['error'].get('code', '')}: {last['error'].get('message', '')}"
    else:
        last_text = "never"
    c = s["counters"]
    lines = [
        f"consent:          {s['consent']} (from {s['consent_source']})",
        f"install id:       {s['install_id'] or '(none yet)'}",
        *_endpoint_lines(s["endpoints"]),
        f"state dir:        {s['state_dir']}",
        f"outbox:           {s['outbox']['batches']} sealed batch(es) waiting ({s['outbox']['approved']} approved; "
        f"limit {s['outbox']['max_batches']})",
        f"open batch:       {s['open_batch']['snapshots']} snapshot(s)",
        f"last attempt:     {last_text}",
    ]
    for r in s["rejected"]:
        lines.append(f"rejected:         {r['batch_id']} HTTP {r.get('status')} {r.get('code', '')}: "
                     f"{r.get('message', '')}" + (f" at {r['path']}" if r.get("path") else ""))  # fmt: skip
    for key, label in (("next_snapshot_at", "next snapshot"), ("next_seal_at", "next seal"),
                       ("next_send_at", "next send")):  # fmt: skip
        if s["schedule"].get(key):
            lines.append(f"{label + ':':<18}{s['schedule'][key]}")
    lines += [
        f"dropped keys:     {_drops(c)}",
        f"dropped batches:  {c.get('dropped_batches', 0)} (outbox full)",
        f"quarantined:      {c.get('quarantined', 0)} corrupt outbox file(s)",
        f"provider errors:  {c.get('provider_failures', 0)}",
        *(f"problem:          {p}" for p in s.get("problems", [])),
    ]
    return "\n".join(lines)


def render_history(history: list[dict[str, Any]]) -> str:
    """One line per attempt, oldest first."""
    if not history:
        return "No delivery attempt yet."
    # Entries written before endpoints were recorded, and exports, went to no endpoint: shown as "-".
    width = max(len("endpoint"), *(len(h.get("endpoint") or "-") for h in history))
    lines = [f"{'time':<20} {'batch id':<36} {'sha256':<12} {'bytes':>6} {'endpoint':<{width}} {'http':>4} outcome"]
    for h in history:
        err = h.get("error") or {}
        extra = f" {err.get('code', '')}: {err.get('message', '')}" if err else ""
        lines.append(f"{h['at']:<20} {h['batch_id']:<36} {h['sha256'][:12]:<12} {h['bytes']:>6} "
                     f"{h.get('endpoint') or '-':<{width}} {h['status'] or '-':>4} {h['outcome']}{extra}")  # fmt: skip
    return "\n".join(lines)
