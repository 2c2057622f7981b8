"""Every kind of bad input gets its status and a JSON error with a code and path, and nothing is stored."""

from __future__ import annotations

import asyncio
import io
import resource
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector import CollectorConfig, create_app
from tests.collector.conftest import BATCHES, batch_obj, canonical, count_rows, gz, json_headers
from tests.conftest import DATA, load_golden

EXPECTED = orjson.loads(load_golden("v1/invalid/expected.json"))


def _bomb(decompressed_bytes: int) -> bytes:
    """A small gzip stream that inflates to ``decompressed_bytes`` of spaces (valid JSON whitespace)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    parts = [packer.compress(block) for _ in range(decompressed_bytes >> 20)]
    return b"".join(parts) + packer.flush()


def _corrupt_gzip() -> bytes:
    data = bytearray(gz(canonical(batch_obj())))
    data[-8] ^= 0xFF  # the CRC32 trailer no longer matches
    data[20] ^= 0xFF
    return bytes(data)


def _future_batch() -> bytes:
    obj = batch_obj(created_at="2099-01-02T00:00:00Z")
    obj["snapshots"] = [{"taken_at": "2099-01-01T00:00:00Z", "metrics": {"os.family": "linux"}}]
    return canonical(obj)


def _with(**changes: Any) -> bytes:
    return orjson.dumps(batch_obj(**changes))


CASES: dict[str, tuple[bytes, dict[str, str], int, str, str]] = {
    # name: (body, headers, status, code, path)
    "bad json": (b'{"schema_version": 1,', json_headers(), 400, "invalid_json", ""),
    "empty body": (b"", json_headers(), 400, "invalid_json", ""),
    "not utf-8": (b'{"a": "\xff"}', json_headers(), 400, "invalid_json", ""),
    "gzip claimed, not gzip": (b"{}", json_headers(gzipped=True), 400, "bad_encoding", ""),
    "corrupt gzip": (_corrupt_gzip(), json_headers(gzipped=True), 400, "bad_encoding", ""),
    "gzip bomb": (_bomb(256 << 20), json_headers(gzipped=True), 413, "too_large", ""),
    "too big plain": (b" " * (2 << 20), json_headers(), 413, "too_large", ""),
    "wrong content type": (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media", "Content-Type"),
    "no content type": (b"{}", {}, 415, "unsupported_media", "Content-Type"),
    "unknown encoding": (
        b"{}",
        {"Content-Type": "application/json", "Content-Encoding": "br"},
        415,
        "unsupported_media",
        "Content-Encoding",
    ),
    "deep nesting": (b"[" * 5000 + b"]" * 5000, json_headers(), 400, "invalid_json", ""),
    "too many snapshots": (
        load_golden("v1/invalid/too-many-snapshots.json"),
        json_headers(),
        422,
        "too_many_snapshots",
        "snapshots",
    ),
    "unknown metric": (
        load_golden("v1/invalid/unknown-metric.json"),
        json_headers(),
        422,
        "unknown_metric",
        "snapshots[0].metrics.customer_email",
    ),
    "unsupported version": (_with(schema_version=3), json_headers(), 422, "unsupported_version", "schema_version"),
    "future timestamps": (_future_batch(), json_headers(), 422, "in_future", "created_at"),
    "hostname field": (_with(hostname="db01"), json_headers(), 422, "unknown_field", "hostname"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_ingest_rejects_bad_input_with_status_and_code(
    case: str, collector: TestClient[Any, Any], config: CollectorConfig
) -> None:
    """Each bad request gets its documented status and JSON error, and stores nothing."""
    body, headers, status, code, path = CASES[case]
    data = io.BytesIO(body) if len(body) > 1 << 20 else body  # aiohttp warns about big raw bytes bodies
    resp = await collector.post(BATCHES, data=data, headers=headers, skip_auto_headers=["Content-Type"])
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert (error["code"], error["path"]) == (code, path)
    assert error["message"]
    await collector.close()
    assert count_rows(config.db_path) == 0
    assert count_rows(config.db_path, "snapshots") == 0


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "expected.json"))
async def test_ingest_rejects_every_golden_invalid_batch(name: str, collector: TestClient[Any, Any]) -> None:
    """Each golden invalid batch gets 400 (not JSON, or a repeated key) or 422 with the code and path the schema tests expect."""
    expected = EXPECTED[name]
    resp = await collector.post(BATCHES, data=(DATA / "v1/invalid" / name).read_bytes(), headers=json_headers())
    assert resp.status == (400 if expected["code"] in ("invalid_json", "duplicate_key") else 422)
    error = (await resp.json())["error"]
    assert (error["code"], error["path"]) == (expected["code"], expected["path"])


async def test_ingest_gzip_bomb_does_not_inflate_in_memory(collector: TestClient[Any, Any]) -> None:
    """A 512 MiB gzip bomb is refused with 413 while the process's peak memory grows by far less than that."""
    bomb = _bomb(512 << 20)
    assert len(bomb) < 1 << 20, "small enough to pass the compressed-size check"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    resp = await collector.post(BATCHES, data=bomb, headers=json_headers(gzipped=True))
    assert resp.status == 413
    assert "after decompression" in (await resp.json())["error"]["message"]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 128 * 1024


async def test_ingest_slow_body_gets_408(aiohttp_client: Any, tmp_path: Path) -> None:
    """A client that stops sending mid-body is answered 408 request_timeout after read_timeout_s."""
    config = CollectorConfig(db_path=tmp_path / "t.duckdb", read_timeout_s=0.3)
    client = await aiohttp_client(create_app(config))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()
    await client.close()
    assert count_rows(config.db_path) == 0


async def test_ingest_overload_answers_503_with_retry_after(aiohttp_client: Any, tmp_path: Path) -> None:
    """When max_pending_batches are waiting to be loaded, ingest answers 503 overloaded with Retry-After."""
    config = CollectorConfig(db_path=tmp_path / "t.duckdb", max_pending_batches=2, load_interval_s=60, retry_after_s=7)
    client = await aiohttp_client(create_app(config))
    for _ in range(2):
        assert (await client.post(BATCHES, data=canonical(batch_obj()), headers=json_headers())).status == 200
    resp = await client.post(BATCHES, data=canonical(batch_obj()), headers=json_headers())
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "7"
    assert (await resp.json())["error"]["code"] == "overloaded"
    await client.close()
    assert count_rows(config.db_path) == 2


async def test_slow_uploads_hold_no_slot_and_past_the_body_budget_get_503(aiohttp_client: Any, tmp_path: Path) -> None:
    """Slow uploads take no ingest slot; one whose bytes would pass max_body_buffer_bytes gets 503 + Retry-After."""
    config = CollectorConfig(db_path=tmp_path / "t.duckdb", max_inflight_requests=2, read_timeout_s=5,
                             max_body_bytes=4096, max_body_buffer_bytes=4096)  # fmt: skip
    client = await aiohttp_client(create_app(config))
    head = b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    slow = []
    for _ in range(2):  # as many as there are slots: each holds 1,000 bytes of the 4,096 budget
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(head + b"{" + b" " * 999)
        await writer.drain()
        slow.append((reader, writer))
        await asyncio.sleep(0.2)
    resp = await client.post(BATCHES, data=canonical(batch_obj(snapshots=batch_obj()["snapshots"][:1])),
                             headers=json_headers())  # fmt: skip
    assert resp.status == 200, await resp.text()  # the slots are free: the slow ones hold none
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head + b"{" + b" " * 2999)  # 3,000 more bytes: past the budget
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=30)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"Retry-After: 5" in answer
    writer.close()
    for _, slow_writer in slow:
        slow_writer.close()
    await client.close()
