"""The collector's HTTP surface: OpenAPI document, policy, health, errors for unknown routes, private logs, fuzzing."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from collector import CollectorConfig, create_app
from schema import CATALOGUE, batch_json_schema
from tests.collector.conftest import BATCHES, batch_obj, canonical, json_headers, start_server, stop_server


async def _openapi(collector: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await collector.get("/v1/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_openapi_document_is_valid_openapi_31(collector: TestClient[Any, Any]) -> None:
    """/v1/openapi.json passes the OpenAPI 3.1 validator and embeds the batch schemas from schema/ unchanged."""
    doc = await _openapi(collector)
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    for fmt in (1, 2):
        expected = {k: v for k, v in batch_json_schema(schema_version=fmt).items() if k not in ("$schema", "$id")}
        assert doc["components"]["schemas"][f"BatchV{fmt}"] == expected
    refs = [item["$ref"] for item in doc["components"]["schemas"]["Batch"]["oneOf"]]
    assert refs == ["#/components/schemas/BatchV2", "#/components/schemas/BatchV1"]


async def test_openapi_document_covers_every_route(collector: TestClient[Any, Any]) -> None:
    """Every method and path the app routes (ours and the analytics routes) is described, and nothing else."""
    doc = await _openapi(collector)
    routed = set()
    for route in collector.app.router.routes():
        if route.method in ("HEAD", "*") or not isinstance(route.resource, web.Resource):
            continue
        if isinstance(route.resource, web.StaticResource):
            continue
        routed.add((route.method.lower(), route.resource.canonical))
    documented = {(method, path) for path, item in doc["paths"].items() for method in item if method != "parameters"}
    assert routed == documented


async def test_openapi_error_responses_use_the_error_schema(collector: TestClient[Any, Any]) -> None:
    """Every documented 4xx/5xx of POST /v1/batches has a JSON body with code, message and path."""
    doc = await _openapi(collector)
    responses = doc["paths"]["/v1/batches"]["post"]["responses"]
    for status in ("400", "408", "409", "413", "415", "422", "503"):
        ref = responses[status]["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["responses"][ref]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message", "path"]


async def test_policy_serves_the_catalogue(collector: TestClient[Any, Any]) -> None:
    """GET /v1/policy lists every catalogue metric with its purpose and clause, and needs no token."""
    resp = await collector.get("/v1/policy")
    assert resp.status == 200
    policy = await resp.json()
    assert policy["catalogue_version"] == CATALOGUE.version
    assert [m["key"] for m in policy["metrics"]] == list(CATALOGUE.metrics)
    assert all(m["purpose"] and m["clause"] in policy["clauses"] for m in policy["metrics"])


async def test_health_and_readiness(collector: TestClient[Any, Any]) -> None:
    """/healthz and /readyz answer 200 while the database is open."""
    assert (await collector.get("/healthz")).status == 200
    resp = await collector.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


async def test_unknown_route_and_method_get_json_errors(collector: TestClient[Any, Any]) -> None:
    """aiohttp's own 404 and 405 are rendered as the same JSON error body."""
    resp = await collector.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await collector.get(BATCHES)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


async def test_access_log_has_no_address_agent_or_query(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Access log lines carry method, route template, status and time, never IP, user agent, referer or query."""
    client = await aiohttp_client(create_app(CollectorConfig(db_path=tmp_path / "t.duckdb")))
    headers = {**json_headers(), "User-Agent": "secret-agent/1.0", "Referer": "http://intranet.example/secret",
               "X-Forwarded-For": "203.0.113.9"}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await client.post(BATCHES + "?who=alice", data=canonical(batch_obj()), headers=headers)
        await client.get("/no/such/alice-path?token=abc")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /v1/batches 200 ")
    assert lines[1].startswith("GET <unmatched> 404 ")
    text = "\n".join(lines)
    for secret in ("127.0.0.1", "alice", "abc", "secret", "203.0.113.9", "intranet"):
        assert secret not in text
    await client.close()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_or_nonconforming_response(tmp_path: Path) -> None:
    """Schemathesis, for a bounded number of examples per operation: no 5xx, responses conform to the document."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is installed with the test extra"
    proc, url = start_server(tmp_path / "t.duckdb")
    try:
        run = subprocess.run(
            [st, "run", f"{url}/v1/openapi.json", "--checks",
             "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
             "response_headers_conformance",
             "--max-examples", "15", "--seed", "1", "--workers", "1", "--generation-database", "none",
             "--phases", "examples,coverage,fuzzing", "--no-color", "--report-dir", str(tmp_path / "report"),
             "--request-timeout", "10"],
            capture_output=True, text=True, timeout=100, cwd=tmp_path,
        )  # fmt: skip
    finally:
        code, log = stop_server(proc)
    assert run.returncode == 0, run.stdout[-4000:]
    assert code == 0
    assert "127.0.0.1" not in log, "no client address in any log line"
    assert "Traceback" not in log, log[log.find("Unhandled") - 200 :][:3000]
