"""The counters behind ``/metrics``, kept and rendered by ``prometheus_client`` (text exposition format 0.0.4).

Only totals and histograms: no label ever carries an install id, a batch id or a client address.
Names follow Prometheus' rules (``promtool check metrics``): a counter, and only a counter, ends in
``_total``; every family has HELP and TYPE lines; ``prometheus_client`` escapes label values and help texts.
Each :class:`Monitor` has a registry of its own, so several apps can run in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.storage import Gauge

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "Monitor"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the ingest latency histogram, in seconds."""


class _Readings(Collector):
    """The values read when ``/metrics`` is scraped (the store's, the token cache's, the body buffer's)."""

    def __init__(self, gauges: Mapping[str, Gauge]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for name, gauge in sorted(self._gauges.items()):
            if gauge.kind == "counter":
                yield CounterMetricFamily(name, gauge.help, value=gauge.read())
            else:
                yield GaugeMetricFamily(name, gauge.help, value=gauge.read())


class _WithoutCreated(Collector):
    """The registry's families without the ``_created`` series (the metric names stay what dashboards know)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class Monitor:
    """Ingest counters, updated on the event loop, and the readings of :attr:`gauges`, rendered on demand."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._accepted = Counter(
            "telemetry_batches_accepted", "Batches stored (not counting duplicates).", registry=registry
        )
        self._snapshots = Counter("telemetry_snapshots_accepted", "Snapshots in the batches stored.", registry=registry)
        self._duplicates = Counter(
            "telemetry_batches_duplicate", "Batches acknowledged as already stored.", registry=registry
        )
        self._rejected = Counter(
            "telemetry_batches_rejected", "Ingest requests rejected, by error code.", ["code"], registry=registry
        )
        self._client_events = Counter(
            "telemetry_client_events",
            "Client connections reset, too slow, evicted when idle, refused when full, or rate limited.",
            ["event"],
            registry=registry,
        )
        self._latency = Histogram(
            "telemetry_ingest_duration_seconds",
            "Time from request to receipt for POST /v1/batches.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.gauges: dict[str, Gauge] = {}
        """Values read at render time (the store's and the app's), by metric name."""
        registry.register(_Readings(self.gauges))

    def accept(self, snapshots: int) -> None:
        """Count one stored batch of ``snapshots`` snapshots."""
        self._accepted.inc()
        self._snapshots.inc(snapshots)

    def duplicate(self) -> None:
        """Count one batch acknowledged as already stored."""
        self._duplicates.inc()

    def reject(self, code: str) -> None:
        """Count one rejected ingest request by its error code."""
        self._rejected.labels(code=code).inc()

    def client_event(self, event: str) -> None:
        """Count one client event (never an error of ours: no log line, no traceback): ``aborted`` (reset or
        closed mid-request), ``header_timeout``, ``evicted_idle``, ``refused_full``, ``rate_limited``..."""
        self._client_events.labels(event=event).inc()

    def observe(self, seconds: float) -> None:
        """Record the duration of one ingest request."""
        self._latency.observe(seconds)

    def render(self) -> str:
        """The exposition text."""
        return generate_latest(_WithoutCreated(self.registry)).decode()
