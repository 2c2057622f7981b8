"""``POST /v1/batches``: read the body within limits, validate it, store it once, answer a receipt.

Order of checks, cheapest first: content type and encoding (415), overload of the store (503), declared
size (413), body read under ``read_timeout_s`` with pauses of at most ``idle_timeout_s`` (408), capped at
``max_body_bytes`` (413) and within the process's ``max_body_buffer_bytes`` (503), then an ingest slot
(``max_inflight_requests``, 503: taken only once the body is in, so clients that connect and stop
sending hold none), gzip
inflated here with ``max_length`` so a bomb stops at the cap (413) and a broken stream is a 400,
malformed JSON or a key repeated in one object (400), the batch format and the catalogue (422, with the JSON path), timestamps too
far ahead (422 ``in_future``), then dedup and the durable spool append in
:meth:`collector.storage.Storage.ingest` (either backend). aiohttp's own decompression is off (``auto_decompress``
False in ``create_app``) so that every encoding decision, and its error body, is made here.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import zlib
from datetime import datetime
from typing import Any, Final

import orjson
from aiohttp import web

from collector.config import CollectorConfig
from collector.errors import (
    BadRequestError,
    CollectorError,
    InvalidBatchError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaError,
)
from collector.storage import Receipt, Storage
from collector.web.keys import CONFIG, LIMITS, MONITOR, STORE
from collector.web.server import receiving_body
from schema import CATALOGUE, Batch, Catalogue, SchemaError, decode_json, parse_batch_obj, parse_hour

__all__ = ["check_batch", "gunzip_capped", "post_batch"]

_ENCODINGS: Final = frozenset({"gzip", "identity", ""})


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing (413) output over ``max_bytes`` without producing more than that."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
        if len(out) > max_bytes:
            raise PayloadTooLargeError(f"the body is over {max_bytes} bytes after decompression")
        if not inflater.eof:
            raise BadRequestError("the gzip stream is truncated", code="bad_encoding")
    except zlib.error:
        raise BadRequestError("the body is not a valid gzip stream", code="bad_encoding") from None
    if inflater.unused_data:
        # Concatenated gzip members are legal but no agent sends them; refusing keeps one meaning per body.
        raise BadRequestError("unexpected bytes after the gzip stream", code="bad_encoding")
    return out


def check_batch(
    body: bytes, *, now: datetime, max_future_s: int, catalogue: Catalogue = CATALOGUE
) -> tuple[Batch, Any]:
    """Validate a decompressed body; return the batch and its decoded JSON, or raise a CollectorError.

    Shared by the HTTP handler and the offline ``import`` command, so both accept exactly the same.
    ``catalogue`` is the collector's (``catalogue`` setting): a batch of an older catalogue version is checked
    against what that version allowed, one of a newer version is accepted when every key in it is known to
    ``catalogue`` (else 422 naming ``catalogue``'s version).
    """
    try:
        # orjson refuses nesting deeper than 1024 here, before any recursion of ours; a repeated key
        # (which orjson would resolve to its last value) is refused too: one meaning per body.
        obj = decode_json(body)
    except SchemaError as exc:
        if exc.code == "invalid_json":
            raise BadRequestError("the body is not valid UTF-8 JSON", code="invalid_json") from None
        raise BadRequestError(exc.message, path=exc.path, code=exc.code) from None
    try:
        batch = parse_batch_obj(obj, catalogue=catalogue)
    except SchemaError as exc:
        raise InvalidBatchError(exc.message, path=exc.path, code=exc.code) from None
    # taken_at <= created_at is already checked, so created_at bounds every timestamp in the batch.
    ahead_s = (parse_hour(batch.created_at, "created_at") - now).total_seconds()
    if ahead_s > max_future_s:
        raise InvalidBatchError(
            f"created_at is {int(ahead_s)} s ahead of the collector's clock (at most {max_future_s} s allowed)",
            path="created_at",
            code="in_future",
        )
    return batch, obj


async def post_batch(request: web.Request) -> web.Response:
    """Store one batch and answer its receipt (200), or raise the CollectorError that explains why not."""
    started = time.perf_counter()
    monitor = request.app[MONITOR]
    try:
        receipt = await _ingest(request)
    except CollectorError as exc:
        monitor.reject(exc.code)
        monitor.observe(time.perf_counter() - started)
        raise
    if receipt.duplicate:
        monitor.duplicate()
    else:
        monitor.accept(receipt.snapshots)
    monitor.observe(time.perf_counter() - started)
    return web.Response(body=orjson.dumps(receipt.to_json()), content_type="application/json")


async def _ingest(request: web.Request) -> Receipt:
    config = request.app[CONFIG]
    store = request.app[STORE]
    if request.content_type != "application/json":
        raise UnsupportedMediaError("Content-Type must be application/json", path="Content-Type")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise UnsupportedMediaError("Content-Encoding must be gzip or identity", path="Content-Encoding")
    store.admit()  # 503 at once when the store cannot take more (or a part of it is down)
    body = await _read_body(request, config)
    if store.inflight_requests >= config.max_inflight_requests:
        raise OverloadedError("too many requests in progress", retry_after_s=config.retry_after_s)
    store.inflight_requests += 1
    try:
        return await _store(body, store, config, gzipped=encoding == "gzip")
    finally:
        store.inflight_requests -= 1


async def _read_body(request: web.Request, config: CollectorConfig) -> bytes:
    declared = request.content_length
    if declared is not None and declared > config.max_body_bytes:
        raise PayloadTooLargeError(f"the body is over {config.max_body_bytes} bytes")
    if request.content.is_eof():
        # Already fully received (the common case): in aiohttp's buffer, at most max_body_bytes.
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLargeError(f"the body is over {config.max_body_bytes} bytes") from None
    # Connections opened together (a flood of slow bodies) would all expire together, and answering and
    # replacing a thousand of them at once stalls the event loop for a second: each gets 75-100% of the time.
    read_timeout_s = config.read_timeout_s * random.uniform(0.75, 1.0)  # noqa: S311  # spread, not a secret
    try:
        with receiving_body(request):  # evictable by a newcomer when the server is full
            return await _read_chunks(request, config, read_timeout_s)
    except TimeoutError:
        raise RequestTimeoutError(
            f"the body did not arrive within {config.read_timeout_s} s, or paused over {config.idle_timeout_s} s"
        ) from None


async def _read_chunks(request: web.Request, config: CollectorConfig, read_timeout_s: float) -> bytes:
    budget = request.app[LIMITS].bodies
    chunks: list[bytes] = []
    held = 0
    try:
        async with asyncio.timeout(read_timeout_s):
            while chunk := await _next_chunk(request, config.idle_timeout_s):
                if held + len(chunk) > config.max_body_bytes:
                    raise PayloadTooLargeError(f"the body is over {config.max_body_bytes} bytes")
                budget.take(len(chunk))
                held += len(chunk)
                chunks.append(chunk)
        return b"".join(chunks)  # one buffer, freed whole (see collector.web.server.return_freed_memory)
    finally:
        # On a reset, aiohttp keeps the exception in the request's stream and its traceback holds this
        # frame: a cycle that only a full garbage collection would free. Drop the data now, not then.
        budget.give_back(held)
        chunks.clear()


async def _next_chunk(request: web.Request, idle_timeout_s: float) -> bytes:
    async with asyncio.timeout(idle_timeout_s):
        return await request.content.readany()


async def _store(body: bytes, store: Storage, config: CollectorConfig, *, gzipped: bool) -> Receipt:
    if gzipped:
        body = gunzip_capped(body, config.max_body_bytes)
    batch, obj = check_batch(
        body, now=store.clock(), max_future_s=config.max_future_s, catalogue=config.catalogue_in_force
    )
    sha256 = hashlib.sha256(body).hexdigest()
    return await store.ingest(batch, obj, sha256, len(body))
