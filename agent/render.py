"""Human-readable (and ``--json``) renderings of the agent's answers for the CLI."""

from __future__ import annotations

from typing import Any

import orjson

from .config import DEFAULT_CONFIG
from .engine import CollectResult, Preview, SendReport
from .metrics import MetricsView
from .records import ErrorInfo, HistoryEntry
from .render_metrics import (
    not_collected_lines,
    render_consent_scope,
    render_metrics,
    render_policy,
    render_policy_import,
)
from .status import EndpointLine, Status

__all__ = [
    "render_collect",
    "render_consent_scope",
    "render_history",
    "render_metrics",
    "render_policy",
    "render_policy_import",
    "render_preview",
    "render_send",
    "render_status",
]


def _explain(data: bytes, view: MetricsView) -> list[str]:
    batch = orjson.loads(data)
    lines = []
    keys = sorted({k for snap in batch["snapshots"] for k in snap["metrics"]})
    version = batch.get("catalogue_version", 1)
    lines.append(f"#   built against catalogue version {version}")
    for key in keys:
        e = view.catalogue.metrics.get(key)
        if e is None:  # a batch sealed by a release whose catalogue this one does not have
            lines.append(f"#   {key}: not in this agent's catalogue (version {view.catalogue_version})")
            continue
        unit = f" [{e.unit}]" if e.unit else ""
        lines.append(f"#   {key}{unit}: {e.description}")
        lines.append(
            f"#       why: {e.purpose} (policy clause: {e.clause}; coarsening: {e.coarsening}; "
            f"since catalogue version {e.since})"
        )
    if not keys:
        lines.append("#   (no metrics)")
    return lines


def render_preview(preview: Preview, *, explain: bool) -> bytes:
    """The preview: a header line per batch (``#``-prefixed), then its exact bytes on one line.

    With ``explain``, each batch's metrics are annotated from the catalogue, and a last block says which
    metrics are not collected now and why (waiting for approval, not accepted by the collector, ...).
    ``preview --json`` is :meth:`Preview.to_json <agent.engine.Preview.to_json>`.
    """
    items, mode, view = preview.items, preview.consent, preview.metrics
    out: list[bytes] = []
    sealed = [i for i in items if i.kind == "sealed"]
    if not items:
        out.append(b"# Nothing collected yet: no sealed batch and no open batch.\n")
    for n, item in enumerate(items, 1):
        data = item.data
        snaps = len(orjson.loads(data)["snapshots"])
        if item.kind == "sealed":
            if mode == "off":
                fate = "consent is off: it will not be sent"
            elif mode == "review":
                fate = "approved: goes at the next send" if item.status == "approved" else "waiting for approval"
            else:
                fate = "goes at the next send"
            head = (
                f"# Sealed batch {n} of {len(sealed)}: {item.batch_id} ({snaps} snapshots, {len(data)} bytes; {fate})"
            )
        else:
            head = f"# Open batch {item.batch_id} ({snaps} snapshots so far), as it would be sealed now:"
        out.append(head.encode() + b"\n")
        out.append(data + b"\n")
        if explain:
            out.append("\n".join(_explain(data, view)).encode() + b"\n")
    if explain:
        out.append("\n".join(not_collected_lines(view, prefix="# ")).encode() + b"\n")
    return b"".join(out)


def render_collect(result: CollectResult) -> str:
    """One snapshot's summary: what went in, what was dropped and why (never a dropped value), what it replaced,
    and what became of the usage provider."""
    if not result.stored:
        return f"Snapshot {result.taken_at} skipped."
    lines = [f"Snapshot {result.taken_at}: {len(result.metrics)} metrics ({', '.join(sorted(result.metrics))})."]
    if result.replaced:
        kept = f"; kept from that one what this reading lacks: {', '.join(result.kept)}" if result.kept else ""
        lines.append(f"It replaced the snapshot taken earlier in this hour (one per hour is kept){kept}.")
    if result.dropped:
        lines.append(f"Dropped {len(result.dropped)} key(s): " + ", ".join(f"{k} ({r})" for r, k in result.dropped))
    if result.provider is None:
        lines.append(
            "No usage provider is configured ([usage] command, file or url), so no usage counts were "
            "taken; an embedded product's callable is asked only by its own agent."
        )
    elif result.provider_error is not None:
        lines.append(f"Usage provider failed, so this reading has no usage counts: {result.provider_error}")
    return "\n".join(lines)


def _error_text(err: ErrorInfo) -> str:
    return f"{err.code} {err.message or ''}" + (f" at {err.path}" if err.path else "")


def render_send(report: SendReport) -> str:
    """One line per batch sent."""
    if report.skipped:
        return report.skipped[0].upper() + report.skipped[1:] + "."
    lines = []
    for r in report.results:
        if r.outcome == "held":
            err = r.error or ErrorInfo(code="")
            lines.append(
                f"batch {r.batch_id}: held, not sent: the collector's policy would refuse it "
                f"({err.code} at {err.path or ''}: {err.message or ''}); it waits in the outbox until the collector "
                "takes it"
            )
            continue
        status = f"HTTP {r.status}" if r.status else "no answer"
        line = f"batch {r.batch_id}: {r.outcome} ({status} from {r.endpoint}, {r.attempts} attempt(s))"
        if r.error and r.outcome not in ("delivered", "duplicate"):
            line += ": " + _error_text(r.error)
        lines.append(line)
    return "\n".join(lines)


def _drops(counters: dict[str, Any]) -> str:
    parts = []
    for reason, slot in sorted(counters.get("dropped_keys", {}).items()):
        keys = ", ".join(f"{k} x{n}" for k, n in sorted(slot.get("keys", {}).items()))
        parts.append(f"{reason} {slot.get('total', 0)} ({keys})")
    return "; ".join(parts) or "none"


def _endpoint_lines(endpoints: tuple[EndpointLine, ...]) -> list[str]:
    if len(endpoints) <= 1:
        return [f"endpoint:         {endpoints[0].url if endpoints else '(not set)'}"]
    # Named like the config errors name them, so `endpoint[1]` means the same thing everywhere.
    return [f"{f'endpoint[{n}]:':<18}{e.url}" + (" (current)" if e.current else "") for n, e in enumerate(endpoints)]


def _consent_line(s: Status) -> str:
    if s.consent_source == "consent command":
        how = (f"set at {s.consent_set_at}; " if s.consent_set_at else "") + (
            f"`telemetry-agent consent reset` returns to the config's {s.config_consent}"
        )
    elif s.consent_source == "config":
        how = "change it with `telemetry-agent consent off|review|auto`"
    else:
        how = "unset them to let the config or `telemetry-agent consent` decide"
    return f"consent:          {s.consent} (from {s.consent_source}; {how})"


def _daemon_lines(s: Status) -> list[str]:
    if not s.daemon_running:
        return [
            "daemon:           not running: nothing is collected or sent on schedule until "
            "`telemetry-agent run` (the service) runs"
        ]
    pid = f"pid {s.daemon_pid}" if s.daemon_pid else "pid unknown"
    if s.consent == "off":
        return [f"daemon:           running ({pid}); consent is off, so it reads and sends nothing"]
    n = s.next
    lines = [f"daemon:           running ({pid})"]
    if n.snapshot_at:
        lines.append(f"next snapshot:    {n.snapshot_at}")
    if n.seal_at:
        lines.append(f"next seal:        {n.seal_at}")
    send = {
        "scheduled": f"{n.send_at}",
        "pending": "within a minute (batches may go; the daemon picks the moment)",
        "after_seal": "after the next seal, within send_window_s",
        "after_approval": "once you approve a batch"
        if s.waiting_approval
        else "after the next seal, once you approve its batch",
    }
    if n.send is not None:
        lines.append(f"next send:        {send[n.send]}")
    return lines


def _provider_lines(s: Status) -> list[str]:
    r = s.provider_record
    if s.provider is not None:
        what = s.provider + (f" (last answered {r.last_ok_at})" if r.last_ok_at else "")
    elif r.kind == "callable":
        what = "callable (embedded in the product)" + (f", last answered {r.last_ok_at}" if r.last_ok_at else "")
    else:
        what = "none configured: snapshots carry no usage counts (set [usage] command, file or url)"
    failures = s.counters.get("provider_failures", 0)
    errors = f"{failures}" + (f", the last at {r.last_error_at}: {r.last_error}" if r.last_error else "")
    return [f"usage provider:   {what}", f"provider errors:  {errors}"]


def _status_metrics_lines(view: MetricsView) -> list[str]:
    consented = "" if view.consented_version is None else f"; consent given for version {view.consented_version}"
    policy = view.policy
    collector = (
        "no collector policy known: the agent's own catalogue applies"
        if policy is None
        else (
            f"collector's catalogue version {policy.version} ({'fetched from' if policy.source == 'collector' else 'imported from'}"
            f" {policy.origin} at {policy.at})"
        )
    )
    collected = len(view.keys("collected"))
    lines = [
        f"catalogue:        version {view.catalogue_version}{consented}; {collected} of "
        f"{len(view.metrics)} metrics collected; {collector}"
    ]
    return lines + [f"{'':<18}{line}" for line in not_collected_lines(view, prefix="")]


def render_status(s: Status) -> str:
    """The admin's overview: settings in force, what waits, what happens next and when."""
    last = s.last_attempt
    if last:
        status = f"HTTP {last.status}" if last.status else "no answer"
        if last.endpoint:
            status += f" from {last.endpoint}"
        last_text = f"{last.at} batch {last.batch_id}: {last.outcome} ({status})"
        if last.error:
            last_text += f" {last.error.code}: {last.error.message or ''}"
    else:
        last_text = "never"
    c = s.counters
    config = (
        s.config_file
        or f"none (no --config, no TELEMETRY_AGENT_CONFIG, no {DEFAULT_CONFIG}): defaults and "
        f"TELEMETRY_* variables apply"
    )
    lines = [
        f"config:           {config}",
        _consent_line(s),
        f"install id:       {s.install_id or '(none yet)'}",
        *_endpoint_lines(s.endpoints),
        f"state dir:        {s.state_dir}",
        *_daemon_lines(s),
        f"outbox:           {s.outbox_batches} sealed batch(es) waiting ({s.outbox_approved} approved; "
        f"limit {s.max_outbox_batches})",
    ]
    if s.waiting_approval:
        lines.append(
            f"approval:         {s.waiting_approval} batch(es) wait for your approval: "
            f"`telemetry-agent preview`, then `telemetry-agent approve --all` (or BATCH_ID)"
        )
    for h in s.held:
        lines.append(
            f"held:             {h.batch_id}: not sent, the collector's policy would refuse it "
            f"({h.code} at {h.path}: {h.message})"
        )
    lines += [
        f"open batch:       {s.open_snapshots} snapshot(s)",
        f"last attempt:     {last_text}",
    ]
    for r in s.rejected:
        err = r.error or ErrorInfo(code="")
        lines.append(
            f"rejected:         {r.batch_id} HTTP {r.status} {err.code}: {err.message or ''}"
            + (f" at {err.path}" if err.path else "")
        )
    lines += [
        *_status_metrics_lines(s.metrics),
        *_provider_lines(s),
        f"dropped keys:     {_drops(c)}",
        f"dropped batches:  {c.get('dropped_batches', 0)} (outbox full)",
        f"quarantined:      {c.get('quarantined', 0)} corrupt outbox file(s)",
        *(f"problem:          {p}" for p in s.problems),
    ]
    return "\n".join(lines)


def render_history(history: list[HistoryEntry]) -> str:
    """One line per attempt, oldest first."""
    if not history:
        return "No delivery attempt yet."
    # Entries written before endpoints were recorded, and exports, went to no endpoint: shown as "-".
    width = max(len("endpoint"), *(len(h.endpoint or "-") for h in history))
    lines = [f"{'time':<20} {'batch id':<36} {'sha256':<12} {'bytes':>6} {'endpoint':<{width}} {'http':>4} outcome"]
    for h in history:
        extra = f" {h.error.code}: {h.error.message or ''}" if h.error else ""
        if h.exported_to:
            extra += f" to {h.exported_to} (carried by hand; left the outbox)"
        lines.append(
            f"{h.at:<20} {h.batch_id:<36} {h.sha256[:12]:<12} {h.size:>6} "
            f"{h.endpoint or '-':<{width}} {h.status or '-':>4} {h.outcome}{extra}"
        )
    return "\n".join(lines)
