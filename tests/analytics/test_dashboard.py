"""The dashboard in real headless Chromium: charts, summary row, partial periods, one date axis, CSV downloads."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from collector import CollectorConfig, create_app
from collector.reports import REPORTS
from tests.analytics.conftest import Client, load, new_token
from tests.analytics.fleet import NOW, Install, make_fleet

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium driven by Playwright (installed by .ci/run)."""
    if not shutil.which(CHROMIUM):
        # CI (.ci/run) installs Debian's chromium and must run this test; a newcomer's laptop may lack it.
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no /usr/bin/chromium here (apt-get install chromium to run the dashboard test)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


async def test_dashboard_draws_every_report(
    client: Client, loaded: list[Install], browser: Browser, tmp_path: Path
) -> None:
    """Opened with #token=..., the page draws an SVG chart with marks for each report, shows notes, logs no error."""
    token = await new_token(client, "analyst")
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))

    await page.goto(str(client.make_url("/dashboard")) + f"#token={token}")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert token not in page.url  # the fragment is dropped from the address bar
    await page.fill("#from", "2026-05-01")
    await page.fill("#to", "2026-06-30")
    await page.select_option("#interval", "week")
    await page.click("#controls button[type=submit]")
    await expect(page.locator("#status")).to_have_text(re.compile(r"^weekly, 2026-04-27 to 2026-07-05"))

    for name in REPORTS:
        marks = await page.locator(f"#report-{name} svg.chart .mark").count()
        assert marks > 0, name
    charts = await page.locator("svg.chart").count()
    assert charts == len(REPORTS) + 5  # hardware: one chart per dimension (four); projects, deployments: total too
    note = await page.locator("#report-os-families .suppression").inner_text()
    assert "fewer than 5 installs" in note
    assert await page.locator("#product option").all_inner_texts() == ["all products", "deployserver"]
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert problems == []
    assert all(url.startswith(str(client.make_url("/"))) for url in requests), "nothing loaded from elsewhere"


async def test_dashboard_asks_for_a_token(client: Client, loaded: list[Install], browser: Browser) -> None:
    """Without a token the page shows the form; a wrong token is refused there, a good one opens the reports."""
    page = await browser.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda exc: errors.append(exc))
    await page.goto(str(client.make_url("/dashboard")))
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("#token-input", "tct_00000000_" + "A" * 43)
    await page.click("#login button")
    await page.wait_for_selector("#status.error")
    assert "refused" in await page.locator("#status").inner_text()
    await page.fill("#token-input", await new_token(client, "analyst"))
    await page.click("#login button")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert await page.locator("svg.chart .mark").count() > 0
    assert errors == []


async def _open(client: Client, browser: Browser, path: str = "/dashboard", **controls: str) -> Page:
    """The dashboard with a fresh analyst token, loaded, then updated with ``controls`` (from, to, interval)."""
    token = await new_token(client, "analyst")
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(str(client.make_url(path)) + f"#token={token}")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    if controls:
        for name, value in controls.items():
            if name == "interval":
                await page.select_option("#interval", value)
            else:
                await page.fill(f"#{name}", value)
        await page.evaluate("document.body.dataset.loaded = 'false'")
        await page.click("#controls button[type=submit]")
        await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert errors == []
    return page


async def _api(client: Client, path: str, **query: str) -> Any:
    headers = {"Authorization": f"Bearer {await new_token(client, 'analyst')}"}
    resp = await client.get(path, params=query, headers=headers)
    assert resp.status == 200, await resp.text()
    return await (resp.json() if query.get("format") != "csv" else resp.text())


def _change(now: int, before: int) -> str:
    diff = now - before
    sign = "+" if diff > 0 else "\u2212" if diff < 0 else "\u00b1"  # the page's minus and plus-minus signs
    return f"{sign}{abs(diff):,} ({sign}{abs(round(100 * diff / before))} %)"


async def test_dashboard_summary_row_shows_the_headline_numbers(
    client: Client, loaded: list[Install], browser: Browser
) -> None:
    """Active installs (with their change), the newest version's share and deployments come from the reports."""
    q = {"from": "2026-05-04", "to": "2026-06-14", "interval": "week"}
    page = await _open(client, browser, "/", **q)  # "/" leads to the dashboard
    assert page.url.split("#")[0].endswith("/dashboard")
    active = (await _api(client, "/v1/reports/active-installs", **q))["rows"]
    last, before = active[-1], active[-2]
    assert last["period"] == "2026-06-08"
    assert last["installs"]
    assert before["installs"]
    card = page.locator("#summary-active")
    assert await card.locator(".figure").inner_text() == f"{last['installs']:,}"
    detail = await card.locator(".detail").inner_text()
    assert detail == f"in the week of 8 Jun 2026; {_change(last['installs'], before['installs'])} vs the week before"

    versions = await _api(client, "/v1/reports/versions", **q, product="deployserver")
    named = [r for r in versions["rows"] if r["period"] == "2026-06-08" and r["group"] != "(other)"]
    newest = max(named, key=lambda r: tuple(int(p) for p in r["group"].split(".")))
    card = page.locator("#summary-version")
    assert await card.locator(".figure").inner_text() == f"{newest['share_pct']:g} %"
    assert await card.locator(".label").inner_text() == f"deployserver {newest['group']}"

    deployments = (await _api(client, "/v1/reports/deployments", **q))["rows"]
    assert deployments[-1]["period"] == "2026-06-08"
    card = page.locator("#summary-deployments")
    assert await card.locator(".figure").inner_text() == f"{deployments[-1]['total']:,}"
    assert (await card.locator(".detail").inner_text()).startswith("in the week of 8 Jun 2026")


async def test_dashboard_marks_the_partial_period(client: Client, loaded: list[Install], browser: Browser) -> None:
    """Today (2026-06-30, a Tuesday) is in a week of which 2 of 7 days have passed: every chart and the status say so."""
    page = await _open(client, browser)
    status = await page.locator("#status").inner_text()
    assert "(today is 2026-06-30: the week from 2026-06-29 is partial, 2 of 7 days)" in status
    charts = await page.locator("svg.chart").count()
    assert await page.locator("svg.chart .partial-band").count() == charts
    assert await page.locator("svg.chart text.partial-label").all_text_contents() == ["2/7 d"] * charts
    band = page.locator("#report-deployments svg.chart .partial-band title").first
    assert await band.text_content() == "29 Jun 2026: partial, 2 of 7 days so far"
    rows = (await _api(client, "/v1/reports/deployments", to="2026-06-30"))["rows"]
    assert rows[-1]["period"] == "2026-06-22"  # no install reported the counter in the last two days
    assert await page.locator("#summary-deployments .figure").inner_text() == "\u2013"  # an en dash: no figure
    detail = await page.locator("#summary-deployments .detail").inner_text()
    assert detail.startswith("so far in the week of 29 Jun 2026 (2 of 7 days): no install has reported the counter yet")

    await page.select_option("#interval", "month")
    await page.click("#controls button[type=submit]")
    await expect(page.locator("#status")).to_contain_text("the month from 2026-06-01 is partial, 30 of 30 days")
    mark = page.locator("#report-active-installs svg.chart .mark.partial")
    assert await mark.count() == 1
    assert (await mark.locator("title").text_content() or "").endswith("(partial: 30 of 30 days so far)")


async def test_dashboard_charts_share_one_axis_of_unambiguous_dates(
    client: Client, loaded: list[Install], browser: Browser
) -> None:
    """By default the range starts at the first data; every chart has the same periods, labelled '4 May 2026'."""
    first = min(when for install in loaded for when, _, _ in install.snapshots).date()
    listing = await _api(client, "/v1/reports")
    assert listing["first_day"] == first.isoformat()
    page = await _open(client, browser)
    assert await page.locator("#from").input_value() == first.isoformat()
    charts = page.locator("svg.chart")
    periods = {await charts.nth(i).get_attribute("data-periods") for i in range(await charts.count())}
    assert periods == {"9"}  # the weeks of 2026-05-04 to 2026-06-29, in every chart, with or without data
    firsts = {await charts.nth(i).locator("text.tick").first.text_content() for i in range(await charts.count())}
    assert firsts == {"4 May 2026"}
    ticks = await page.locator("svg.chart text.tick").all_text_contents()
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4}", t) for t in ticks), ticks

    await page.select_option("#interval", "month")
    await page.click("#controls button[type=submit]")
    await expect(page.locator("#status")).to_contain_text("monthly")
    assert set(await page.locator("svg.chart text.tick").all_text_contents()) == {"May 2026", "Jun 2026"}


async def test_dashboard_has_totals_and_a_csv_link_per_chart(
    client: Client, loaded: list[Install], browser: Browser
) -> None:
    """Projects and deployments draw their totals; each report's CSV link downloads the API's CSV for the range."""
    q = {"from": "2026-05-04", "to": "2026-06-14", "interval": "week"}
    page = await _open(client, browser, **q)
    for name in ("projects", "deployments"):
        body = await _api(client, f"/v1/reports/{name}", **q)
        totals = page.locator(f"#report-{name} svg.chart[data-series=total] .mark title")
        titles = await totals.all_text_contents()
        assert titles[0] == f"4 May 2026: {body['rows'][0]['total']:,} {body['unit']}"
    assert await page.locator("section.report a.csv").count() == len(REPORTS)
    async with page.expect_download() as info:
        await page.click("#report-deployments a.csv")
    download = await info.value
    assert download.suggested_filename == "deployments.csv"
    saved = Path(await download.path()).read_text("utf-8")
    assert saved == await _api(client, "/v1/reports/deployments", **q, format="csv")
    assert saved.splitlines()[0].endswith(",partial,days_elapsed,days_total")


async def test_dashboard_keeps_within_the_tokens_report_slots(
    aiohttp_client: Callable[..., Any], tmp_path: Path, browser: Browser
) -> None:
    """With one report in progress allowed per token, the page still draws every report (429s are waited out)."""
    config = CollectorConfig(db_path=tmp_path / "slots.duckdb", load_interval_s=0.05, max_reports_per_token=1)
    client: Client = await aiohttp_client(create_app(config, clock=lambda: NOW))
    await load(client, make_fleet())
    page = await _open(client, browser)
    assert await page.locator("section.report").count() == len(REPORTS)
    assert await page.locator("#status").get_attribute("class") != "error"
    assert await page.locator("#summary .card").count() == 3
