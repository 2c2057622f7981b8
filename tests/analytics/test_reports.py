"""Reports over a fleet loaded through the real ingest path, checked against answers computed in Python."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from typing import Any

import pytest

from collector.web.keys import STORE
from tests.analytics import fleet as f
from tests.analytics.conftest import Client, load
from tests.analytics.fleet import Install, K

RANGE = {"from": "2026-05-01", "to": "2026-06-30"}


async def report(client: Client, headers: dict[str, str], name: str, **query: str) -> dict[str, Any]:
    """GET a report as JSON (asserting 200)."""
    resp = await client.get(f"/v1/reports/{name}", params={**RANGE, **query}, headers=headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def by_period(body: dict[str, Any], column: str = "installs") -> dict[dt.date, Any]:
    """A one-row-per-period report as {period: value}."""
    return {dt.date.fromisoformat(r["period"]): r[column] for r in body["rows"]}


def groups(body: dict[str, Any], dimension: str | None = None) -> dict[dt.date, dict[str, int]]:
    """A group report as {period: {group: installs}}."""
    out: dict[dt.date, dict[str, int]] = {}
    for row in body["rows"]:
        if dimension is None or row["dimension"] == dimension:
            out.setdefault(dt.date.fromisoformat(row["period"]), {})[row["group"]] = row["installs"]
    return out


def counts_expected(counts: dict[dt.date, int], body: dict[str, Any]) -> dict[dt.date, int | None]:
    """Expected count rows: every period of the response, 0 when empty, None when 1..k-1."""
    out: dict[dt.date, int | None] = {}
    for period in by_period(body):
        n = counts.get(period, 0)
        out[period] = None if 0 < n < K else n
    return out


def stats_expected(per_install: dict[dt.date, list[float]]) -> dict[dt.date, tuple[Any, ...]]:
    """Expected (installs, p50, p90, p99) per period; all None below k installs."""
    out: dict[dt.date, tuple[Any, ...]] = {}
    for period, values in per_install.items():
        if len(values) < K:
            out[period] = (None, None, None, None)
        else:
            out[period] = (len(values), *(f.quantile(values, q) for q in (0.5, 0.9, 0.99)))
    return out


def assert_stats(got: dict[dt.date, tuple[Any, ...]], expected: dict[dt.date, tuple[Any, ...]]) -> None:
    """Same periods and counts; percentiles equal up to the last rounding digit (float summation order)."""
    assert got.keys() == expected.keys()
    for period, row in got.items():
        want = expected[period]
        assert row[0] == want[0], period
        assert all(a == b or abs(a - b) <= 0.011 for a, b in zip(row[1:], want[1:], strict=True)), (period, row, want)


def stats_rows(body: dict[str, Any]) -> dict[dt.date, tuple[Any, ...]]:
    """A stats report as {period: (installs, p50, p90, p99)}."""
    return {dt.date.fromisoformat(r["period"]): (r["installs"], r["p50"], r["p90"], r["p99"]) for r in body["rows"]}


@pytest.mark.parametrize("interval", ["day", "week", "month"])
async def test_reports_match_python_computation(
    client: Client, analyst: dict[str, str], loaded: list[Install], interval: str
) -> None:
    """Every report, over every interval, equals the answer computed from the generated snapshots in Python."""
    q = {"interval": interval}
    body = await report(client, analyst, "active-installs", **q)
    assert body["from"] == f.period_of(dt.date(2026, 5, 1), interval).isoformat()
    assert by_period(body) == counts_expected(f.active(loaded, interval), body)

    firsts = [f.period_of(first, interval) for first, _ in f.first_and_last(loaded)]
    body = await report(client, analyst, "new-installs", **q)
    assert by_period(body) == counts_expected({p: firsts.count(p) for p in set(firsts)}, body)

    lost_days = [last + dt.timedelta(days=30) for _, last in f.first_and_last(loaded)]
    lost = [f.period_of(d, interval) for d in lost_days if d <= f.NOW.date()]
    body = await report(client, analyst, "lost-installs", **q)
    assert by_period(body) == counts_expected({p: lost.count(p) for p in set(lost)}, body)

    versions = f.last_per_period(loaded, interval, lambda v, m, i: f"{i.product} {v}")
    assert groups(await report(client, analyst, "versions", **q)) == f.groups_expected(versions)
    for name, key in (("os-families", "os.family"), ("os-versions", "os.version")):
        expected = f.groups_expected(f.last_per_period(loaded, interval, f.metric(key)))
        assert groups(await report(client, analyst, name, **q)) == expected, name

    body = await report(client, analyst, "hardware", **q)
    for dimension, key in (("cpu_cores", "host.cpu.logical_cores"), ("memory_gib", "host.memory.total_gib"),
                           ("disk_total_gib", "host.disk.total_gib"), ("disk_free_gib", "host.disk.free_gib")):  # fmt: skip
        values = f.last_per_period(loaded, interval, f.metric(key, bucket=True))
        assert groups(body, dimension) == f.groups_expected(values), dimension

    body = await report(client, analyst, "cpu-usage", **q)
    assert_stats(stats_rows(body), stats_expected(f.cpu_means(loaded, interval)))

    projects = f.last_per_period(loaded, interval, lambda v, m, i: m["usage.projects"])
    body = await report(client, analyst, "projects", **q)
    assert_stats(stats_rows(body), stats_expected({p: list(v.values()) for p, v in projects.items()}))
    totals = {p: sum(v.values()) for p, v in projects.items() if len(v) >= K}
    assert {p: t for p, t in by_period(body, "total").items() if t is not None} == totals

    deployments = f.deployments(loaded, interval)
    body = await report(client, analyst, "deployments", **q)
    assert_stats(stats_rows(body), stats_expected({p: [float(x) for x in v.values()] for p, v in deployments.items()}))
    totals = {p: sum(v.values()) for p, v in deployments.items() if len(v) >= K}
    assert {p: t for p, t in by_period(body, "total").items() if t is not None} == totals


async def test_four_install_group_is_suppressed(client: Client, analyst: dict[str, str], loaded: list[Install]) -> None:
    """The 4 FreeBSD installs, the 4 on version 4.1.0 and the 4-install product never appear; responses count them."""
    body = await report(client, analyst, "os-families", interval="month")
    assert all(row["group"] != "freebsd" for row in body["rows"])
    small = [
        n
        for per_install in f.last_per_period(loaded, "month", lambda v, m, i: m["os.family"]).values()
        for n in (list(per_install.values()).count(family) for family in set(per_install.values()))
        if n < K
    ]
    assert body["suppression"]["groups"] == len(small) >= 2  # freebsd is small in both May and June
    assert body["suppression"]["installs"] == sum(small)
    assert body["suppression"]["min_group_size"] == K

    body = await report(client, analyst, "versions", interval="month")
    assert not any("4.1.0" in row["group"] or "buildfarm" in row["group"] for row in body["rows"])

    body = await report(client, analyst, "active-installs", interval="month", product="buildfarm")
    assert [(r["installs"], r["suppressed"]) for r in body["rows"]] == [(None, True), (None, True)]
    monthly = f.active(loaded, "month", product="buildfarm")
    assert (body["suppression"]["groups"], body["suppression"]["installs"]) == (2, sum(monthly.values()))
    for name in ("cpu-usage", "projects", "deployments"):
        body = await report(client, analyst, name, interval="month", product="buildfarm")
        assert all(r["installs"] is None and r["p50"] is None and r["suppressed"] for r in body["rows"])

    resp = await client.get("/v1/reports", headers=analyst)
    listing = await resp.json()
    assert listing["products"] == ["deployserver"]
    assert [r["name"] for r in listing["reports"]] == [
        "active-installs", "new-installs", "lost-installs", "versions", "os-families", "os-versions", "hardware",
        "cpu-usage", "projects", "deployments",
    ]  # fmt: skip


async def test_small_groups_merge_into_other(client: Client, analyst: dict[str, str], fleet: list[Install]) -> None:
    """Two groups of 3 installs are not shown by name but together as one '(other)' row of 6."""
    for i, install in enumerate(fleet[4:22]):  # 18 installs: 12 on Ubuntu 22.04, 3 on Debian 12, 3 on RHEL 9
        label = "Ubuntu 22.04" if i < 12 else ("Debian 12" if i < 15 else "RHEL 9")
        for _, _, metrics in install.snapshots:
            metrics.update({"os.family": "linux", "os.version": label})
    await load(client, fleet[4:22])
    body = await report(client, analyst, "os-versions", interval="month")
    versions = f.last_per_period(fleet[4:22], "month", lambda v, m, i: m["os.version"])
    assert groups(body) == f.groups_expected(versions)
    assert any(row["group"] == "(other)" and row["installs"] == 6 for row in body["rows"])
    assert not any(row["group"] in ("Debian 12", "RHEL 9") for row in body["rows"])


async def test_csv_has_the_json_rows_and_suppression_headers(
    client: Client, analyst: dict[str, str], loaded: list[Install]
) -> None:
    """format=csv gives the same rows as JSON, with the suppression summary in Telemetry-* headers."""
    as_json = await report(client, analyst, "versions", interval="week")
    resp = await client.get(
        "/v1/reports/versions", params={**RANGE, "interval": "week", "format": "csv"}, headers=analyst
    )
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["group"] for r in rows] == [r["group"] for r in as_json["rows"]]
    assert [int(r["installs"]) for r in rows] == [r["installs"] for r in as_json["rows"]]
    assert int(resp.headers["Telemetry-Suppressed-Groups"]) == as_json["suppression"]["groups"]
    assert int(resp.headers["Telemetry-Suppressed-Installs"]) == as_json["suppression"]["installs"]


@pytest.mark.parametrize(
    ("query", "status", "path"),
    [
        ({"interval": "year"}, 400, "interval"),
        ({"from": "2026-02-30"}, 400, "from"),
        ({"from": "2026-07-01", "to": "2026-06-01"}, 400, "from"),
        ({"from": "2000-01-01", "to": "2026-01-01"}, 400, "to"),
        ({"product": "Deploy Server"}, 400, "product"),
        ({"format": "xml"}, 400, "format"),
        ({"install_id": "x"}, 400, "install_id"),
    ],
)
async def test_bad_report_parameters_are_400(
    client: Client, analyst: dict[str, str], query: dict[str, str], status: int, path: str
) -> None:
    """Each malformed parameter is refused with 400 and names the parameter."""
    resp = await client.get("/v1/reports/active-installs", params=query, headers=analyst)
    assert resp.status == status
    assert (await resp.json())["error"]["path"] == path


async def test_unknown_report_is_404(client: Client, analyst: dict[str, str]) -> None:
    """A report name that does not exist gets 404 with the JSON error body."""
    resp = await client.get("/v1/reports/raw-snapshots", headers=analyst)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_late_and_out_of_order_batches_give_the_same_reports(
    client: Client, analyst: dict[str, str], fleet: list[Install]
) -> None:
    """Batches arriving in random order, with reports asked in between, end with the same answers as Python's."""
    sends = [(install, body) for install in fleet for body in f.batches(install)]
    random.Random(3).shuffle(sends)
    half = len(sends) // 2
    for chunk in (sends[:half], sends[half:]):
        for _, data in chunk:
            resp = await client.post("/v1/batches", data=data, headers={"Content-Type": "application/json"})
            assert resp.status == 200
        await client.app[STORE].sync()
        await report(client, analyst, "deployments", interval="week")  # folds this chunk into the rollup
    deployments = f.deployments(fleet, "week")
    body = await report(client, analyst, "deployments", interval="week")
    assert_stats(stats_rows(body), stats_expected({p: [float(x) for x in v.values()] for p, v in deployments.items()}))
    body = await report(client, analyst, "active-installs", interval="day")
    assert by_period(body) == counts_expected(f.active(fleet, "day"), body)
