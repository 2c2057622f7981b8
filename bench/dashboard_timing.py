"""How long the dashboard takes to draw its ten charts, in headless Chromium, against a real collector.

Starts ``telemetry-collector serve`` on the given database (127.0.0.1, a free port), creates an analyst
token, opens ``/dashboard#token=...`` in Debian's Chromium through Playwright, and times from navigation to
``body[data-loaded=true]`` (every chart drawn), best of three loads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from collector import CollectorConfig, open_storage
from collector.storage.tokens import create_token

__all__ = ["time_dashboard"]

CHROMIUM = "/usr/bin/chromium"
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(url: str, loads: int) -> float:
    from playwright.async_api import async_playwright

    best = float("inf")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        for _ in range(loads):
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            start = time.perf_counter()
            await page.goto(url)
            await page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
            best = min(best, time.perf_counter() - start)
            charts = await page.locator("svg.chart").count()
            assert charts >= 10, f"only {charts} charts drawn"
            await page.close()
        await browser.close()
    return best


def time_dashboard(db: Path, *, loads: int = 3) -> float:
    """Seconds for the dashboard's ten charts over ``db`` (best of ``loads``)."""
    with open_storage(CollectorConfig(db_path=db)) as store:
        _, token = store.write_sync(lambda con: create_token(con, "analyst", dt.datetime.now(dt.UTC)))
    port = _free_port()
    env = {**os.environ, "no_proxy": "*"}
    proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--db", str(db), "--port", str(port),
                             "--log-level", "warning"], env=env)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5):  # our own URL
                    break
            except OSError:
                time.sleep(0.5)
        return asyncio.run(_load(f"{base}/dashboard#token={token}", loads))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
