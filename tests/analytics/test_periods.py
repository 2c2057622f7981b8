"""What every report answer says besides its numbers: partial periods, today, what was merged or withheld, products."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import jsonschema
import pytest

from tests.analytics import fleet as f
from tests.analytics.conftest import Client
from tests.analytics.fleet import Install, K
from tests.analytics.test_reports import report


async def test_the_current_period_is_marked_partial_with_its_days(
    client: Client, analyst: dict[str, str], loaded: list[Install]
) -> None:
    """Today is Tuesday 2026-06-30: its week has 2 of 7 days, June 30 of 30; later periods 0; earlier ones are whole."""
    body = await report(client, analyst, "active-installs", interval="week", to="2026-06-30")
    assert (body["to"], body["today"]) == ("2026-07-05", "2026-06-30")
    progress = [(r["period"], r["partial"], r["days_elapsed"], r["days_total"]) for r in body["rows"]]
    assert progress[-2:] == [("2026-06-22", False, 7, 7), ("2026-06-29", True, 2, 7)]
    assert all(not partial and elapsed == total == 7 for _, partial, elapsed, total in progress[:-1])

    body = await report(client, analyst, "deployments", interval="month")
    assert [(r["period"], r["partial"], r["days_elapsed"]) for r in body["rows"]] == [
        ("2026-05-01", False, 31), ("2026-06-01", True, 30),
    ]  # fmt: skip
    body = await report(
        client, analyst, "active-installs", interval="day", **{"from": "2026-06-29", "to": "2026-07-01"}
    )
    assert [(r["partial"], r["days_elapsed"], r["days_total"]) for r in body["rows"]] == [
        (False, 1, 1), (True, 1, 1), (True, 0, 1),
    ]  # fmt: skip
    for name in ("versions", "hardware", "cpu-usage"):
        rows = (await report(client, analyst, name, interval="month"))["rows"]
        assert {r["period"]: r["partial"] for r in rows} == {"2026-05-01": False, "2026-06-01": True}, name


async def test_csv_has_the_period_columns(client: Client, analyst: dict[str, str], loaded: list[Install]) -> None:
    """The CSV rows end with partial, days_elapsed and days_total, like the JSON rows."""
    resp = await client.get(
        "/v1/reports/projects", params={"to": "2026-06-30", "interval": "week", "format": "csv"}, headers=analyst
    )
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert list(rows[0])[-3:] == ["partial", "days_elapsed", "days_total"]
    assert {(r["partial"], r["days_elapsed"]) for r in rows} <= {("false", "7"), ("true", "2")}


def _periods(n: int) -> str:
    return f"{n} install-period{'' if n == 1 else 's'}"


async def test_the_suppression_note_says_what_was_merged_and_what_withheld(
    client: Client, analyst: dict[str, str], loaded: list[Install]
) -> None:
    """Small groups are counted as merged into (other) or withheld, as the fleet says; no note when nothing was."""
    body = await report(client, analyst, "os-versions", interval="week")
    merged, withheld = [0, 0], [0, 0]
    for per_install in f.last_per_period(loaded, "week", f.metric("os.version")).values():
        values = list(per_install.values())
        tiny = [values.count(v) for v in set(values) if values.count(v) < K]
        into = merged if sum(tiny) >= K else withheld
        into[0], into[1] = into[0] + len(tiny), into[1] + sum(tiny)
    got = body["suppression"]
    assert (got["merged_groups"], got["merged_installs"]) == tuple(merged)
    assert (got["withheld_groups"], got["withheld_installs"]) == tuple(withheld)
    assert merged[0]  # the fleet has both cases
    assert withheld[0]
    assert (got["groups"], got["installs"]) == (merged[0] + withheld[0], merged[1] + withheld[1])
    assert got["note"] == (
        f"Groups of fewer than {K} installs: {merged[0]} merged into '(other)' ({_periods(merged[1])});"
        f" {withheld[0]} withheld ({_periods(withheld[1])})."
    )

    body = await report(client, analyst, "active-installs", interval="month")
    assert body["suppression"] == {"min_group_size": K, "groups": 0, "installs": 0, "merged_groups": 0,
                                   "merged_installs": 0, "withheld_groups": 0, "withheld_installs": 0, "note": ""}  # fmt: skip
    resp = await client.get(
        "/v1/reports/active-installs", params={"interval": "month", "format": "csv"}, headers=analyst
    )
    assert resp.headers["Telemetry-Suppression-Note"] == ""
    body = await report(client, analyst, "active-installs", interval="month", product="buildfarm")
    hidden = sum(f.active(loaded, "month", product="buildfarm").values())
    assert body["suppression"]["note"] == f"Periods of fewer than {K} installs: 2 withheld ({_periods(hidden)})."
    resp = await client.get("/v1/reports/os-versions", params={"interval": "week", "format": "csv"}, headers=analyst)
    assert resp.headers["Telemetry-Suppression-Note"] == got["note"]
    assert (resp.headers["Telemetry-Merged-Groups"], resp.headers["Telemetry-Withheld-Groups"]) == (
        str(merged[0]), str(withheld[0]),
    )  # fmt: skip


async def test_a_product_no_install_sent_is_404(client: Client, analyst: dict[str, str], loaded: list[Install]) -> None:
    """product=nosuch is a 404 naming the parameter, not an empty answer; a small product still answers."""
    resp = await client.get("/v1/reports/active-installs", params={"product": "nosuch"}, headers=analyst)
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error["path"] == "product"
    assert error["message"].startswith("no such product: no install of 'nosuch' has sent data")
    assert (await report(client, analyst, "active-installs", product="buildfarm"))["rows"]


async def test_root_redirects_to_the_dashboard(client: Client) -> None:
    """GET / answers 302 to /dashboard (no token needed: the page asks for one)."""
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/dashboard"
    assert (await client.get("/")).url.path == "/dashboard"


@pytest.mark.parametrize("name", ["active-installs", "hardware", "deployments"])
async def test_report_answers_match_their_openapi_schema(
    client: Client, analyst: dict[str, str], loaded: list[Install], name: str
) -> None:
    """The document describes today, the period columns and the merged/withheld counts; real answers conform."""
    doc: dict[str, Any] = await (await client.get("/v1/openapi.json")).json()
    schema = doc["paths"]["/v1/reports/{name}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"today", "rows", "suppression"} <= set(schema["required"])
    assert {"partial", "days_elapsed", "days_total"} <= set(schema["properties"]["rows"]["items"]["required"])
    assert {"merged_groups", "withheld_groups"} <= set(schema["properties"]["suppression"]["required"])
    jsonschema.validate(await report(client, analyst, name, to="2026-06-30"), schema)
    listing = doc["paths"]["/v1/reports"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(await (await client.get("/v1/reports", headers=analyst)).json(), listing)
    assert "first_day" in listing["required"]
    first = (await (await client.get("/v1/reports", headers=analyst)).json())["first_day"]
    assert dt.date.fromisoformat(first) == min(when for i in loaded for when, _, _ in i.snapshots).date()
