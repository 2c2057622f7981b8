"""Human-readable renderings of metric states, consent's catalogue version and the collector's policy.

Split from :mod:`agent.render`; used by `metrics`, `policy`, `consent`, `status` and `preview --explain`.
"""

from __future__ import annotations

from .metrics import MetricState, MetricsView
from .remote_policy import CollectorPolicy

__all__ = ["not_collected_lines", "render_consent_scope", "render_metrics", "render_policy", "render_policy_import"]


def _collector(policy: CollectorPolicy | None) -> str:
    if policy is None:
        return "no collector policy is known yet, so the agent's own catalogue applies"
    how = "fetched from" if policy.source == "collector" else "imported from"
    return f"the collector's catalogue is version {policy.version} ({how} {policy.origin} at {policy.at})"


def _why(m: MetricState, view: MetricsView) -> str:
    if m.state == "collected":
        return "collected" + (f" (approved {m.approved_at})" if m.approved_at else "")
    if m.state == "retired":
        return f"retired in catalogue version {m.removed_in}: no longer collected"
    if m.state == "disabled":
        return "disabled by the admin (disabled_metrics)"
    if m.state == "awaiting_approval":
        return f"awaiting approval: added in version {m.since}, after your consent; `telemetry-agent metrics approve {m.key}`"
    version = view.policy.version if view.policy is not None else "?"
    return f"not accepted by the collector (its catalogue version {version} lacks it): left out until it takes it"


def not_collected_lines(view: MetricsView, *, prefix: str) -> list[str]:
    """What is not collected now and why, one line per reason (for `status` and `preview --explain`)."""
    lines = []
    waiting = view.keys("awaiting_approval")
    if waiting:
        lines.append(
            f"awaiting approval: {', '.join(waiting)} (added after the catalogue version you consented to): "
            f"`telemetry-agent metrics approve {' '.join(waiting)}` (or --all)"
        )
    refused = view.keys("not_accepted")
    if refused:
        version = view.policy.version if view.policy is not None else "?"
        lines.append(
            f"not accepted:      {', '.join(refused)} (the collector's catalogue version {version} lacks "
            "them): left out until it takes them"
        )
    disabled = view.keys("disabled")
    if disabled:
        lines.append(f"disabled:          {', '.join(disabled)} (disabled_metrics)")
    retired = [m for m in view.metrics if m.state == "retired"]
    if retired:
        lines.append("retired:           " + ", ".join(f"{m.key} (in version {m.removed_in})" for m in retired))
    if prefix and not lines:
        return [f"{prefix}Every metric of catalogue version {view.catalogue_version} is collected."]
    if prefix:
        return [f"{prefix}Not collected now:"] + [f"{prefix}  {line}" for line in lines]
    return lines


def render_metrics(view: MetricsView, mode: str) -> str:
    """`telemetry-agent metrics`: every metric of the agent's catalogue with its state."""
    if view.consented_version is None:
        consent = "no consent recorded yet (opting in consents to this version)"
    else:
        consent = f"consent given for version {view.consented_version}"
    lines = [f"Catalogue version {view.catalogue_version}; {consent}; {_collector(view.policy)}."]
    if mode == "off":
        lines.append(
            "Consent is off: nothing is collected or sent. Below is what would be, once you opt in "
            "(`telemetry-agent consent review`)."
        )
    width = max(len("metric"), *(len(m.key) for m in view.metrics))
    lines += ["", f"{'metric':<{width}}  since  state"]
    lines += [f"{m.key:<{width}}  v{m.since:<5} {_why(m, view)}" for m in view.metrics]
    waiting = view.keys("awaiting_approval")
    if waiting:
        lines += [
            "",
            f"{len(waiting)} metric(s) wait for your approval: `telemetry-agent metrics approve "
            f"{' '.join(waiting)}` (or `--all`); `telemetry-agent preview --explain` shows what is sent.",
        ]
    return "\n".join(lines)


def render_consent_scope(view: MetricsView) -> str:
    """What `consent review|auto` consented to."""
    collected = len(view.keys("collected"))
    text = (
        f"Consent covers catalogue version {view.consented_version}: {collected} of {len(view.metrics)} metrics "
        "are collected (`telemetry-agent metrics` lists each with its state)."
    )
    waiting = view.keys("awaiting_approval")
    if waiting:
        text += f" Awaiting your approval: {', '.join(waiting)}."
    return text


def render_policy(policy: CollectorPolicy | None, version: int) -> str:
    """`telemetry-agent policy`: the collector policy the agent goes by."""
    if policy is None:
        return (
            f"No collector policy is known: the agent's own catalogue (version {version}) applies. It is "
            "fetched from the collector when the agent sends; on an air-gapped install, save the collector's "
            "GET /v1/policy as a file and run `telemetry-agent policy import FILE`."
        )
    how = "fetched from" if policy.source == "collector" else "imported from"
    return (
        f"The agent goes by the collector's policy: its catalogue version {policy.version} ({how} {policy.origin} "
        f"at {policy.at}). This agent's catalogue is version {version}."
    )


def render_policy_import(policy: CollectorPolicy, view: MetricsView) -> str:
    """What `policy import FILE` did."""
    text = f"Imported the collector's catalogue version {policy.version} from {policy.origin}."
    refused = view.keys("not_accepted")
    if refused:
        text += f" Left out of batches from now on, as that collector does not accept them: {', '.join(refused)}."
    return text
