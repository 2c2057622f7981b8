"""The dashboard in real headless Chromium: it loads, draws every report's chart and logs no console error."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright, expect

from collector.reports import REPORTS
from tests.analytics.conftest import Client, new_token
from tests.analytics.fleet import Install

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
    assert charts == len(REPORTS) + 3  # hardware draws one chart per dimension (four)
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
