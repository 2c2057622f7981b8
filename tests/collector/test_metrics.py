"""``/metrics`` is valid Prometheus text (0.0.4), read back with prometheus_client's own parser.

What ``promtool check metrics`` checks, as far as a parser can: every family parses, has HELP and TYPE
lines before its samples, counters (and only counters) are named ``..._total``, and label values are
escaped so that any value reads back unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from collector import CollectorConfig, create_app
from collector.web.keys import MONITOR
from collector.web.monitoring import Monitor
from tests.collector.conftest import BATCHES, batch_obj, canonical, json_headers

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")


def _check_exposition(text: str) -> dict[str, Any]:
    """Assert the rules above on an exposition; return its families by name."""
    assert text.endswith("\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}  # raises on anything malformed
    declared: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert help_text.strip(), line
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name not in declared, f"{name} declared twice"
            declared[name] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match is not None, line
            sample = match[1]
            base = next((n for n in declared if sample == n or sample.removeprefix(n) in
                         ("_bucket", "_sum", "_count")), None)  # fmt: skip
            assert base is not None, f"{sample} has no TYPE line before it"
            assert base in helped, f"{base} has no HELP line"
    for name, kind in declared.items():
        assert kind in ("counter", "gauge", "histogram"), (name, kind)
        if kind == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
            assert not name.removesuffix("_total").endswith("_total"), name
        else:
            assert not name.endswith("_total"), f"{kind} {name} must not end in _total (only counters do)"
    for family in families.values():
        assert family.documentation, family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name == family.name + "_total", sample.name
    return families


async def test_metrics_endpoint_is_valid_prometheus_text(collector: TestClient[Any, Any]) -> None:
    """After an accepted and a rejected batch, every family of /metrics (the store's gauges too) passes."""
    assert (await collector.post(BATCHES, data=canonical(batch_obj()), headers=json_headers())).status == 200
    assert (await collector.post(BATCHES, data=b"{", headers=json_headers())).status == 400
    resp = await collector.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = _check_exposition(await resp.text())
    assert families["telemetry_batches_accepted"].samples[0].value == 1
    rejected = families["telemetry_batches_rejected"].samples
    assert [(s.labels, s.value) for s in rejected] == [({"code": "invalid_json"}, 1)]
    assert "telemetry_segments_loaded" in families, "a count of segments is a counter: its family drops _total"
    assert families["telemetry_segments_loaded"].type == "counter"
    assert families["telemetry_ingest_duration_seconds"].type == "histogram"


def test_lake_metrics_are_valid_prometheus_text(tmp_path: Path) -> None:
    """The lake backend's values pass too (rendered from an app whose store is not opened: no servers needed)."""
    config = CollectorConfig(store="ducklake", catalog="postgresql://u@127.0.0.1:1/x", data_path=f"{tmp_path}/")
    families = _check_exposition(create_app(config)[MONITOR].render())
    for name in ("telemetry_lake_commits", "telemetry_lake_commit_failures", "telemetry_lake_maintenance_passes"):
        assert families[name].type == "counter", name


def test_label_values_are_escaped() -> None:
    """A label value with a backslash, a quote and a newline reads back unchanged."""
    monitor = Monitor()
    odd = 'a\\b"c\nd'
    monitor.reject(odd)
    monitor.reject("plain")
    families = _check_exposition(monitor.render())
    values = {s.labels["code"]: s.value for s in families["telemetry_batches_rejected"].samples}
    assert values == {odd: 1, "plain": 1}
