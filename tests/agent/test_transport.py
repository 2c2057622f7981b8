"""Delivery against a real aiohttp collector: backoff schedule, Retry-After, final 4xx, receipt check, proxies."""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

from agent import AgentConfig
from agent.client import HttpTransport, parse_retry_after
from agent.transport import Attempt
from tests.agent.conftest import FakeCollector
from tests.conftest import load_golden

BATCH = orjson.dumps(orjson.loads(load_golden("v1/valid/minimal.json")), option=orjson.OPT_SORT_KEYS)
BATCH_ID = orjson.loads(BATCH)["batch_id"]


def _transport(tmp_path: Path, url: str, waits: list[float], seed: int = 7, **kw: object) -> HttpTransport:
    config = AgentConfig(endpoint=url, state_dir=tmp_path, max_attempts=4, backoff_base_s=1.0, max_backoff_s=5.0,
                         **kw)  # type: ignore[arg-type]  # fmt: skip

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return HttpTransport(config, sleep=sleep, rng=random.Random(seed))


async def test_transport_backoff_is_full_jitter_exponential(collector: FakeCollector, tmp_path: Path) -> None:
    """Two 503s then a receipt: waits are uniform(0, min(cap, base * 2**n)) from the injected RNG."""
    collector.script = [(503, {}, "overloaded"), (502, {}, "bad_gateway")]
    waits: list[float] = []
    attempts: list[Attempt] = []
    delivery = await _transport(tmp_path, collector.url, waits).deliver(BATCH, BATCH_ID, attempts.append)
    assert delivery.outcome == "delivered"
    rng = random.Random(7)
    assert waits == [rng.uniform(0, 1.0), rng.uniform(0, 2.0)]
    assert [a.outcome for a in attempts] == ["retry", "retry", "delivered"]
    assert collector.bodies == [BATCH] * 3


async def test_transport_retry_after_is_a_clamped_minimum(collector: FakeCollector, tmp_path: Path) -> None:
    """429 with Retry-After 3 waits at least 3 s; Retry-After 60 is clamped to max_backoff_s (5 s)."""
    collector.script = [(429, {"Retry-After": "3"}, "slow_down"), (503, {"Retry-After": "60"}, "overloaded")]
    waits: list[float] = []
    delivery = await _transport(tmp_path, collector.url, waits).deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "delivered"
    assert waits[0] >= 3.0
    assert waits[1] == 5.0


def test_transport_parses_retry_after_http_date() -> None:
    """Retry-After as an HTTP date means the seconds until then; garbage is ignored."""
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("soon", now) is None


async def test_transport_final_4xx_is_not_retried(collector: FakeCollector, tmp_path: Path) -> None:
    """A 422 is final: one attempt, outcome rejected, with the collector's error code kept."""
    collector.script = [(422, {}, "out_of_bounds")]
    waits: list[float] = []
    delivery = await _transport(tmp_path, collector.url, waits).deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "rejected"
    assert delivery.error is not None
    assert delivery.error.code == "out_of_bounds"
    assert waits == []
    assert len(collector.bodies) == 1


async def test_transport_receipt_mismatch_is_a_failed_attempt(collector: FakeCollector, tmp_path: Path) -> None:
    """A 200 whose sha256 does not match what was sent is retried, not counted as delivered."""
    collector.script = ["bad_receipt", "bad_receipt", "bad_receipt", "bad_receipt"]
    waits: list[float] = []
    delivery = await _transport(tmp_path, collector.url, waits).deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "failed"
    assert len(collector.bodies) == 4
    assert len(waits) == 3


async def test_transport_duplicate_receipt_counts_as_delivered(collector: FakeCollector, tmp_path: Path) -> None:
    """Sending an already stored batch again is acknowledged as a duplicate and counts as delivered."""
    transport = _transport(tmp_path, collector.url, [])
    assert (await transport.deliver(BATCH, BATCH_ID, lambda _a: None)).outcome == "delivered"
    attempts: list[Attempt] = []
    assert (await transport.deliver(BATCH, BATCH_ID, attempts.append)).outcome == "delivered"
    assert attempts[-1].outcome == "duplicate"


async def test_transport_unreachable_collector_fails_after_max_attempts(tmp_path: Path) -> None:
    """Connection refused is retried with backoff, then the delivery fails (the batch stays for later)."""
    waits: list[float] = []
    delivery = await _transport(tmp_path, "http://127.0.0.1:9", waits).deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "failed"
    assert len(waits) == 3
    assert delivery.error is not None
    assert delivery.error.code == "network"


class ForwardProxy:
    """A minimal HTTP/1.1 forward proxy on 127.0.0.1 that records the absolute targets it relays."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        self.targets.append(target)
        headers = [h for h in header_lines if h and not h.lower().startswith(("proxy-", "connection"))]
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length")), 0)
        body = await reader.readexactly(length)
        url = urlsplit(target)
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        up_writer.write(f"{method} {url.path} HTTP/1.1\r\n".encode() + "\r\n".join([*headers, "Connection: close"]).encode()
                        + b"\r\n\r\n" + body)  # fmt: skip
        await up_writer.drain()
        writer.write(await up_reader.read())
        await writer.drain()
        up_writer.close()
        writer.close()


@pytest.fixture
async def proxy() -> object:
    """A forward proxy on an ephemeral port."""
    fwd = ForwardProxy()
    server = await asyncio.start_server(fwd.handle, "127.0.0.1", 0)
    fwd.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield fwd
    server.close()
    await server.wait_closed()


async def test_transport_goes_through_configured_proxy(collector: FakeCollector, proxy: ForwardProxy,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """With `proxy` set, the batch travels through the HTTP proxy and arrives byte for byte."""
    transport = _transport(tmp_path, collector.url, [], proxy=proxy.url)
    delivery = await transport.deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "delivered"
    assert proxy.targets == [f"{collector.url}/v1/batches"]
    assert collector.bodies == [BATCH]


async def test_transport_honours_proxy_env_vars(collector: FakeCollector, proxy: ForwardProxy, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """HTTP_PROXY from the environment is used when no proxy is configured."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    delivery = await _transport(tmp_path, collector.url, []).deliver(BATCH, BATCH_ID, lambda _a: None)
    assert delivery.outcome == "delivered"
    assert proxy.targets == [f"{collector.url}/v1/batches"]


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made with the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    return cert, key


async def test_transport_verifies_tls_and_accepts_a_ca_bundle(self_signed: tuple[Path, Path], tmp_path: Path) -> None:
    """TLS verification is on: an unknown certificate fails; the same server works with `ca_bundle` naming it."""
    cert, key = self_signed
    fake = FakeCollector()
    app = web.Application()
    app.router.add_post("/v1/batches", fake.batches)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}"
    try:
        refused = await _transport(tmp_path, url, []).deliver(BATCH, BATCH_ID, lambda _a: None)
        assert refused.outcome == "failed"
        assert fake.bodies == []
        trusted = await _transport(tmp_path, url, [], ca_bundle=cert).deliver(BATCH, BATCH_ID, lambda _a: None)
        assert trusted.outcome == "delivered"
        assert fake.bodies == [BATCH]
    finally:
        await runner.cleanup()
