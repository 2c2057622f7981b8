"""The OpenAPI document declares how each operation is authorized, and the app behaves as declared.

Which operations need a credential is found by asking the real app without one (401) rather than
listed here, so a new route cannot be documented as public by mistake.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from collector.storage.tokens import create_token
from collector.web.keys import STORE
from tests.collector.conftest import batch_obj, canonical

_PATH_VALUES = {"name": "active-installs", "token_id": "00000000", "install_id": str(uuid.uuid4()),
                "file": "dashboard.js"}  # fmt: skip


async def _call(collector: TestClient[Any, Any], method: str, path: str, headers: dict[str, str]) -> int:
    url = path.format(**_PATH_VALUES)
    body: bytes | None = None
    if path == "/v1/batches":
        body, headers = canonical(batch_obj()), {**headers, "Content-Type": "application/json"}
    elif method == "post":
        body, headers = b'{"role": "analyst"}', {**headers, "Content-Type": "application/json"}
    async with collector.request(method.upper(), url, data=body, headers=headers) as resp:
        return resp.status


async def test_every_operation_declares_the_security_the_app_enforces(collector: TestClient[Any, Any]) -> None:
    """Valid OpenAPI 3.1 with bearer schemes; an operation that answers 401 without credentials lists the
    schemes that open it, every other operation says ``security: []``; a role a scheme stands for is enforced."""
    doc: dict[str, Any] = await (await collector.get("/v1/openapi.json")).json()
    validate(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes, "no security scheme declared"
    for name, scheme in schemes.items():
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer"), name
        assert scheme["description"]
    store = collector.app[STORE]
    now = store.clock()
    _, analyst = await store.write(lambda con: create_token(con, "analyst", now))
    secured = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert "security" in operation, f"{where} does not say how it is authorized"
            security = operation["security"]
            status = await _call(collector, method, path, {})
            if status == 401:
                secured += 1
                assert security, f"{where} answers 401 without credentials but declares no security"
                assert all(len(req) == 1 and set(req) <= set(schemes) for req in security), where
                assert "401" in operation["responses"], where
            else:
                assert security == [], f"{where} answers {status} without credentials: it is public"
                continue
            # The analyst token opens exactly the operations that list analystToken.
            with_analyst = await _call(collector, method, path, {"Authorization": f"Bearer {analyst}"})
            if {"analystToken": []} in security:
                assert with_analyst not in (401, 403), where
            else:
                assert with_analyst in (401, 403), where
    assert secured >= 7  # reports (2), tokens (3), installs (2) at least
