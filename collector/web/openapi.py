"""The OpenAPI 3.1 document served at ``/v1/openapi.json``.

The batch request schema is :func:`schema.batch_json_schema` itself (never restated here), and the
analytics routes' path items are merged in from :data:`collector.web.routes.OPENAPI_PATHS`. A test
checks that every route of the app is described and that the document is valid.

Components others may reference: ``#/components/schemas/Error`` (every error body),
``#/components/responses/<status>`` for 400, 401, 403, 404, 408, 409, 413, 415, 422, 429 and 503, and the
bearer schemes of :data:`SECURITY_SCHEMES`. Every operation states its ``security`` (``[]`` when public);
a test checks that the operations answering 401 without credentials are exactly those that declare one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from schema import CATALOGUE, Catalogue, batch_json_schema

__all__ = ["SECURITY_SCHEMES", "json_ok", "openapi_document", "response_ref"]

_VERSION: Final = "1.0.0"
_ERROR_CODES: Final = {
    "400": "Malformed request: not JSON (`invalid_json`), broken gzip (`bad_encoding`) or a bad parameter.",
    "401": "Missing or wrong credentials (the same answer whether or not the resource exists).",
    "403": "The token's role may not do this.",
    "404": "No such route or resource.",
    "405": "Method not allowed on this route.",
    "408": "The request body did not arrive within `read_timeout_s` (`request_timeout`).",
    "409": "This batch_id was already stored with different bytes (`batch_conflict`).",
    "413": "The body is over `max_body_bytes` after decompression (`too_large`).",
    "415": "Content-Type is not application/json, or Content-Encoding is not gzip/identity (`unsupported_media`).",
    "422": "The batch breaks its wire format or what its catalogue version allows; `code` is the schema error code,"
    " `path` the JSON path.",
    "429": "Too many failed authentications or `/v1/installs` requests from this address, or too many reports "
    "in progress for this token (`rate_limited`, with Retry-After).",
    "503": "Overloaded (`overloaded`, with Retry-After) or not ready.",
}

_BEARER_FORMAT: Final = "tct_<token_id>_<secret>"  # the shape of a report token, not a credential
SECURITY_SCHEMES: Final = {
    "analystToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": _BEARER_FORMAT,
        "description": "A report token with the analyst role (`telemetry-collector token create --role analyst`).",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": _BEARER_FORMAT,
        "description": "A token with the admin role: everything an analyst token opens, plus token management.",
    },
    "installSecret": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "64 lowercase hex characters",
        "description": (
            "The install's secret, kept on the install (`telemetry-agent remote`/`forget` send it); the"
            " collector recomputes the install id from it and stores no secret."
        ),
    },
}
"""Bearer schemes, one per kind of credential (OpenAPI has no roles for http schemes, so a role is a scheme)."""
_PUBLIC: Final[list[dict[str, list[str]]]] = []

_ERROR_SCHEMA: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code", "message", "path"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable reason."},
                "message": {"type": "string", "description": "One line for people."},
                "path": {"type": "string", "description": "JSON path or header at fault; empty if none."},
            },
        }
    },
}

_RECEIPT_SCHEMA: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["batch_id", "sha256", "snapshots", "duplicate"],
    "properties": {
        "batch_id": {"type": "string", "format": "uuid"},
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "SHA-256 of the decompressed request body that is stored.",
        },
        "snapshots": {"type": "integer", "minimum": 1},
        "duplicate": {"type": "boolean", "description": "True when this batch was already stored (stored once)."},
    },
}


def response_ref(code: str) -> dict[str, str]:
    """A reference to the shared response of an error status (``components/responses``)."""
    return {"$ref": f"#/components/responses/{code}"}


def _json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def json_ok(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    return {"description": description, "content": _json_content(schema)}


def _paths() -> dict[str, Any]:
    status_schema = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/v1/batches": {
            "post": {
                "operationId": "postBatch",
                "security": _PUBLIC,
                "tags": ["ingest"],
                "summary": "Store one batch; answered only once it is durable.",
                "parameters": [
                    {
                        "name": "Content-Encoding",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "enum": ["gzip", "identity"]},
                    }
                ],
                "requestBody": {"required": True, "content": _json_content({"$ref": "#/components/schemas/Batch"})},
                "responses": {
                    "200": json_ok(
                        "Stored (or already stored: `duplicate` true).", {"$ref": "#/components/schemas/Receipt"}
                    ),
                    **{code: response_ref(code) for code in ("400", "405", "408", "409", "413", "415", "422", "503")},
                },
            }
        },
        "/v1/policy": {
            "get": {
                "operationId": "getPolicy",
                "security": _PUBLIC,
                "tags": ["public"],
                "summary": "The policy catalogue: every metric the collector accepts, and why.",
                "responses": {
                    "200": json_ok("The catalogue.", {"type": "object", "required": ["catalogue_version", "metrics"]}),
                    "405": response_ref("405"),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "getOpenapi",
                "security": _PUBLIC,
                "tags": ["public"],
                "summary": "This document.",
                "responses": {"200": json_ok("OpenAPI 3.1.", {"type": "object"}), "405": response_ref("405")},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "getHealthz",
                "security": _PUBLIC,
                "tags": ["operations"],
                "summary": "Liveness: the process answers.",
                "responses": {"200": json_ok("Alive.", status_schema), "405": response_ref("405")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadyz",
                "security": _PUBLIC,
                "tags": ["operations"],
                "summary": "Readiness: database open, spool loads succeeding, disk accepting writes.",
                "responses": {
                    "200": json_ok("Ready.", status_schema),
                    "405": response_ref("405"),
                    "503": response_ref("503"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "security": _PUBLIC,
                "tags": ["operations"],
                "summary": "Prometheus text exposition (counters, latency histogram, queue depths).",
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "405": response_ref("405"),
                },
            }
        },
    }


def _batch_schema(catalogue: Catalogue, schema_version: int) -> dict[str, Any]:
    batch = copy.deepcopy(batch_json_schema(catalogue, schema_version))
    # Inside OpenAPI the schema is a component: its own $schema/$id would make tools resolve it elsewhere.
    batch.pop("$schema", None)
    batch.pop("$id", None)
    return batch


def openapi_document(extra_paths: Mapping[str, Any] | None = None, catalogue: Catalogue = CATALOGUE) -> dict[str, Any]:
    """The whole document: ingest and operations paths, plus ``extra_paths`` (the analytics routes).

    The batch schemas are those of ``catalogue``, the collector's catalogue in force.
    """
    batch = {
        "oneOf": [{"$ref": "#/components/schemas/BatchV2"}, {"$ref": "#/components/schemas/BatchV1"}],
        "description": "A batch in wire format 2 (what agents write) or 1 (catalogue version 1 only).",
    }
    responses: dict[str, Any] = {}
    for code, text in _ERROR_CODES.items():
        responses[code] = {"description": text, "content": _json_content({"$ref": "#/components/schemas/Error"})}
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    responses["503"]["headers"] = copy.deepcopy(retry_after)
    responses["429"]["headers"] = copy.deepcopy(retry_after)
    responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    paths = _paths()
    for path, item in (extra_paths or {}).items():
        paths[path] = copy.deepcopy(item)
    for item in paths.values():
        for operation in item.values():
            # Every operation that needs a credential is rate limited (collector.web.limits).
            if isinstance(operation, dict) and operation.get("security"):
                operation["responses"].setdefault("429", {"$ref": "#/components/responses/429"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "onprem-telemetry collector",
            "version": _VERSION,
            "description": "Receives opt-in telemetry batches and serves reports. See docs/collector.md.",
        },
        # Relative: the API is wherever this document was fetched from (behind whatever proxy).
        "servers": [{"url": "/", "description": "The collector that served this document."}],
        "paths": paths,
        "components": {
            "schemas": {
                "Batch": batch,
                "BatchV2": _batch_schema(catalogue, 2),
                "BatchV1": _batch_schema(catalogue, 1),
                "Receipt": _RECEIPT_SCHEMA,
                "Error": _ERROR_SCHEMA,
            },
            "responses": responses,
            "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
        },
    }
