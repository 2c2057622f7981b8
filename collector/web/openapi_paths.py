"""OpenAPI 3.1 path items for the routes :func:`collector.web.routes.setup` adds (merged into /v1/openapi.json)."""

from __future__ import annotations

from typing import Any, Final

from collector.reports import INTERVALS, REPORTS
from collector.storage.tokens import ROLES
from collector.web.openapi import json_ok, response_ref
from schema import CATALOGUE

__all__ = ["OPENAPI_PATHS"]

_AUTH_NOTE: Final = " Needs `Authorization: Bearer <token>` with the analyst or admin role (401 otherwise)."
_ADMIN_NOTE: Final = " Needs `Authorization: Bearer <token>` with the admin role (401 without, 403 for analyst)."
_OWNER_NOTE: Final = (
    " Needs `Authorization: Bearer <install secret>`; a missing or wrong secret gets 401, the same answer"
    " whether or not the install exists."
)


# Security requirements (schemes in collector.web.openapi.SECURITY_SCHEMES): alternatives, any one suffices.
_Security = list[dict[str, list[str]]]
_ANALYST: Final[_Security] = [{"analystToken": []}, {"adminToken": []}]
_ADMIN: Final[_Security] = [{"adminToken": []}]
_OWNER: Final[_Security] = [{"installSecret": []}]
_PUBLIC: Final[_Security] = []


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties, "additionalProperties": extra}


_STRING: Final = {"type": "string"}
_INT: Final = {"type": "integer", "minimum": 0}
_SUPPRESSION: Final = _object(
    {
        "min_group_size": _INT,
        "groups": {**_INT, "description": "Groups (or, for count and statistics reports, periods) merged or withheld."},
        "installs": {**_INT, "description": "Install-periods in those groups, summed over periods."},
        "merged_groups": {**_INT, "description": "Small groups shown together as one `(other)` row."},
        "merged_installs": {
            **_INT,
            "description": "Install-periods in the merged groups (still counted in `(other)`).",
        },
        "withheld_groups": {**_INT, "description": "Groups or periods shown with no number at all."},
        "withheld_installs": {**_INT, "description": "Install-periods in the withheld groups or periods."},
        "note": {
            **_STRING,
            "description": "What was merged and what withheld, in one sentence; empty when nothing was.",
        },
    }
)
_CELL: Final = {"type": ["string", "number", "boolean", "null"]}
_REPORT_ROW: Final = {
    "type": "object",
    "required": ["period", "partial", "days_elapsed", "days_total"],
    "properties": {
        "period": {"type": "string", "format": "date", "description": "The period's first day."},
        "partial": {
            "type": "boolean",
            "description": "The period has not ended by `today`: it holds only `days_elapsed` of its days so far.",
        },
        "days_elapsed": {**_INT, "description": "Days of the period up to and including `today` (0 for a future one)."},
        "days_total": {**_INT, "description": "Days in the period (1, 7, or 28 to 31)."},
    },
    "additionalProperties": _CELL,
}
_REPORT_RESULT: Final = _object(
    {
        "report": {"type": "string", "enum": list(REPORTS)},
        "title": _STRING,
        "definition": _STRING,
        "unit": _STRING,
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "today": {
            "type": "string",
            "format": "date",
            "description": "The collector's today (UTC); days after it hold no data yet.",
        },
        "interval": {"type": "string", "enum": list(INTERVALS)},
        "product": {"type": ["string", "null"]},
        "columns": {"type": "array", "items": _STRING},
        "rows": {"type": "array", "items": _REPORT_ROW},
        "suppression": _SUPPRESSION,
    }
)
_REPORT_LIST: Final = _object(
    {
        "reports": {
            "type": "array",
            "items": _object(
                {
                    "name": _STRING,
                    "title": _STRING,
                    "definition": _STRING,
                    "shape": _STRING,
                    "unit": _STRING,
                    "columns": {"type": "array", "items": _STRING},
                }
            ),
        },
        "intervals": {"type": "array", "items": _STRING},
        "products": {"type": "array", "items": _STRING},
        "min_group_size": _INT,
        "lost_after_days": _INT,
        "today": {"type": "string", "format": "date"},
        "first_day": {
            "type": ["string", "null"],
            "format": "date",
            "description": "The earliest day any report has data for (null when none): the dashboard's default `from`.",
        },
    }
)
_TOKEN_REQUEST: Final = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": list(ROLES)},
        "label": {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$",
            "description": "What the token is for (optional).",
        },
    },
    "additionalProperties": False,
}
_TOKEN_INFO: Final = _object(
    {
        "token_id": _STRING,
        "role": {"type": "string", "enum": list(ROLES)},
        "label": {"type": ["string", "null"]},
        "created_at": _STRING,
        "last_used_on": {"type": ["string", "null"], "description": "UTC day of the last use."},
        "revoked_at": {"type": ["string", "null"]},
    }
)
_INSTALL_ID: Final = {
    "name": "install_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "description": "The install's id (derived from its secret).",
}
_ROW: Final = {"type": "object", "additionalProperties": _CELL}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_REPORT_PARAMS: Final = [
    _query(
        "from",
        {"type": "string", "format": "date"},
        "First UTC day, 2000-01-01 to 2099-12-31 (default: 89 days before `to`); widened to its period's start.",
    ),
    _query(
        "to",
        {"type": "string", "format": "date"},
        "Last UTC day, included, 2000-01-01 to 2099-12-31 (default: today); widened to its period's end.",
    ),
    _query(
        "interval", {"type": "string", "enum": list(INTERVALS)}, "Period length (default week; weeks start on Monday)."
    ),
    _query(
        "product",
        {"type": "string", "pattern": f"^{CATALOGUE.header['product.name'].pattern}$"},
        "Only this product (default: every product).",
    ),
    _query("format", {"type": "string", "enum": ["json", "csv"]}, "Response format (default json)."),
]

OPENAPI_PATHS: Final[dict[str, Any]] = {
    "/": {
        "get": {
            "operationId": "getRoot",
            "security": _PUBLIC,
            "tags": ["reports"],
            "summary": "Redirects to the dashboard.",
            "responses": {
                "302": {
                    "description": "To `/dashboard`.",
                    "headers": {"Location": {"schema": {"type": "string"}, "description": "`/dashboard`."}},
                },
                "405": response_ref("405"),
            },
        }
    },
    "/v1/reports": {
        "get": {
            "operationId": "listReports",
            "security": _ANALYST,
            "tags": ["reports"],
            "summary": "The reports, their exact definitions, and the products large enough to report on.",
            "description": "Products with fewer than min_group_size installs are not listed." + _AUTH_NOTE,
            "responses": {
                "200": json_ok("The report catalogue.", _REPORT_LIST),
                "401": response_ref("401"),
                "405": response_ref("405"),
            },
        }
    },
    "/v1/reports/{name}": {
        "get": {
            "operationId": "getReport",
            "security": _ANALYST,
            "tags": ["reports"],
            "summary": "One report over a range of days, by period, after small-group suppression.",
            "description": (
                "Groups of fewer than min_group_size distinct installs are merged into an `(other)` row or"
                " withheld; `suppression` (JSON) or the Telemetry-* headers (CSV) say how much. Every row says"
                " whether its period is `partial` (not over by `today`) and how many of its days have passed."
                " A product no install has sent data for is a 404 (path `product`)." + _AUTH_NOTE
            ),
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(REPORTS)}},
                *_REPORT_PARAMS,
            ],
            "responses": {
                "200": {
                    "description": "The report.",
                    "headers": {
                        name: {"schema": {"type": "integer"}, "description": text}
                        for name, text in (
                            ("Telemetry-Min-Group-Size", "CSV only: the suppression threshold."),
                            ("Telemetry-Suppressed-Groups", "CSV only: groups merged into (other) or withheld."),
                            ("Telemetry-Suppressed-Installs", "CSV only: install-periods in those groups."),
                            ("Telemetry-Merged-Groups", "CSV only: groups merged into (other)."),
                            ("Telemetry-Withheld-Groups", "CSV only: groups or periods withheld."),
                        )
                    }
                    | {
                        "Telemetry-Suppression-Note": {
                            "schema": {"type": "string"},
                            "description": "CSV only: the suppression note (empty when nothing was suppressed).",
                        }
                    },
                    "content": {
                        "application/json": {"schema": _REPORT_RESULT},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **{code: response_ref(code) for code in ("400", "401", "404", "405")},
            },
        }
    },
    "/v1/tokens": {
        "get": {
            "operationId": "listTokens",
            "security": _ADMIN,
            "tags": ["tokens"],
            "summary": "Every token's id, role, creation and revocation time (never the token).",
            "description": _ADMIN_NOTE.strip(),
            "responses": {
                "200": json_ok("The tokens.", _object({"tokens": {"type": "array", "items": _TOKEN_INFO}})),
                **{code: response_ref(code) for code in ("401", "403", "405")},
            },
        },
        "post": {
            "operationId": "createToken",
            "security": _ADMIN,
            "tags": ["tokens"],
            "summary": "Create a token; the response is the only time it is shown.",
            "description": _ADMIN_NOTE.strip(),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _TOKEN_REQUEST}},
            },
            "responses": {
                "201": json_ok(
                    "Created.",
                    _object(
                        {
                            "token_id": _STRING,
                            "role": {"type": "string", "enum": list(ROLES)},
                            "label": {"type": ["string", "null"]},
                            "token": _STRING,
                        }
                    ),
                ),
                **{code: response_ref(code) for code in ("400", "401", "403", "405")},
            },
        },
    },
    "/v1/tokens/{token_id}": {
        "delete": {
            "operationId": "revokeToken",
            "security": _ADMIN,
            "tags": ["tokens"],
            "summary": "Revoke a token by its id.",
            "description": _ADMIN_NOTE.strip(),
            "parameters": [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": json_ok("Revoked.", _object({"token_id": _STRING, "revoked": {"type": "boolean"}})),
                **{code: response_ref(code) for code in ("401", "403", "404", "405")},
            },
        }
    },
    "/v1/installs/{install_id}": {
        "get": {
            "operationId": "getInstall",
            "security": _OWNER,
            "tags": ["data subjects"],
            "summary": "Everything the collector holds about an install: batches, snapshots, rollup rows.",
            "description": _OWNER_NOTE.strip(),
            "parameters": [_INSTALL_ID],
            "responses": {
                "200": json_ok(
                    "All data held.",
                    _object(
                        {
                            "install_id": _STRING,
                            "batches": {"type": "array", "items": _ROW},
                            "snapshots": {"type": "array", "items": {"type": "object"}},
                            "report_days": {"type": "array", "items": _ROW},
                        }
                    ),
                ),
                **{code: response_ref(code) for code in ("401", "405")},
            },
        },
        "delete": {
            "operationId": "deleteInstall",
            "security": _OWNER,
            "tags": ["data subjects"],
            "summary": "Erase the install from every table (rollups included), after loading what was acknowledged.",
            "description": _OWNER_NOTE.strip(),
            "parameters": [_INSTALL_ID],
            "responses": {
                "200": json_ok(
                    "Erased.",
                    _object({"install_id": _STRING, "deleted": _object({"batches": _INT, "snapshots": _INT})}),
                ),
                **{code: response_ref(code) for code in ("401", "405")},
            },
        },
    },
    "/dashboard": {
        "get": {
            "operationId": "getDashboard",
            "security": _PUBLIC,
            "tags": ["reports"],
            "summary": "The dashboard page (static; it asks for a token or reads #token=... from the URL).",
            "responses": {
                "200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "405": response_ref("405"),
            },
        }
    },
    "/dashboard/{file}": {
        "get": {
            "operationId": "getDashboardAsset",
            "security": _PUBLIC,
            "tags": ["reports"],
            "summary": "The dashboard's scripts and style sheet.",
            "parameters": [
                {
                    "name": "file",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["charts.js", "dashboard.js", "dashboard.css"]},
                }
            ],
            "responses": {
                "200": {
                    "description": "The asset.",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                    },
                },
                **{code: response_ref(code) for code in ("404", "405")},
            },
        }
    },
}
"""Path items for every route :func:`collector.web.routes.setup` adds."""
