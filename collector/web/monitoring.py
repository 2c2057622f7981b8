"""Counters behind ``/metrics``, rendered by hand in the Prometheus text exposition format (0.0.4).

Only totals and histograms: no label ever carries an install id, a batch id or a client address.
Names follow Prometheus' rules (``promtool check metrics``): a counter, and only a counter, ends in
``_total``; every family has HELP and TYPE lines; label values and help texts are escaped.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Final, Literal

__all__ = ["LATENCY_BUCKETS_S", "Monitor"]

Kind = Literal["gauge", "counter"]

LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the ingest latency histogram, in seconds."""


class Monitor:
    """Ingest counters, updated on the event loop (no locks needed) and rendered on demand."""

    def __init__(self) -> None:
        self.batches_accepted = 0
        self.snapshots_accepted = 0
        self.duplicates = 0
        self.rejections: dict[str, int] = {}
        self.client_events: dict[str, int] = {}
        """What clients did to their connections: ``aborted`` (reset or closed mid-request),
        ``header_timeout``, ``evicted_idle``, ``refused_full``, ``rate_limited``."""
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum_s = 0.0
        self.gauges: dict[str, tuple[Kind, str, Callable[[], float]]] = {}
        """Extra values read at render time (the store's): name -> (kind, help text, reader)."""

    def reject(self, code: str) -> None:
        """Count one rejected ingest request by its error code."""
        self.rejections[code] = self.rejections.get(code, 0) + 1

    def client_event(self, event: str) -> None:
        """Count one client event (never an error of ours: no log line, no traceback)."""
        self.client_events[event] = self.client_events.get(event, 0) + 1

    def observe(self, seconds: float) -> None:
        """Record the duration of one ingest request."""
        self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self._latency_sum_s += seconds

    def render(self) -> str:
        """The exposition text."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {_escape(help_text, quote=False)}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric(
            "telemetry_batches_accepted_total",
            "counter",
            "Batches stored (not counting duplicates).",
            [("", self.batches_accepted)],
        )
        metric(
            "telemetry_snapshots_accepted_total",
            "counter",
            "Snapshots in the batches stored.",
            [("", self.snapshots_accepted)],
        )
        metric(
            "telemetry_batches_duplicate_total",
            "counter",
            "Batches acknowledged as already stored.",
            [("", self.duplicates)],
        )
        metric(
            "telemetry_batches_rejected_total",
            "counter",
            "Ingest requests rejected, by error code.",
            [(f'{{code="{_escape(code)}"}}', n) for code, n in sorted(self.rejections.items())],
        )
        metric(
            "telemetry_client_events_total",
            "counter",
            "Client connections reset, too slow, evicted when idle, refused when full, or rate limited.",
            [(f'{{event="{_escape(event)}"}}', n) for event, n in sorted(self.client_events.items())],
        )
        cumulative = 0
        samples: list[tuple[str, float]] = []
        for bound, count in zip(LATENCY_BUCKETS_S, self._latency_counts, strict=False):
            cumulative += count
            samples.append((f'_bucket{{le="{bound}"}}', cumulative))
        cumulative += self._latency_counts[-1]
        samples += [('_bucket{le="+Inf"}', cumulative), ("_sum", self._latency_sum_s), ("_count", cumulative)]
        out.append("# HELP telemetry_ingest_duration_seconds Time from request to receipt for POST /v1/batches.")
        out.append("# TYPE telemetry_ingest_duration_seconds histogram")
        out.extend(f"telemetry_ingest_duration_seconds{suffix} {_number(v)}" for suffix, v in samples)
        for name, (kind, help_text, read) in sorted(self.gauges.items()):
            metric(name, kind, help_text, [("", read())])
        return "\n".join(out) + "\n"


def _escape(text: str, *, quote: bool = True) -> str:
    # The format's escapes: backslash and newline everywhere, the double quote inside label values.
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _number(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)
