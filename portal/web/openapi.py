"""OpenAPI description of the channel API at /api/v1/openapi.json.

Written by hand from channel-api.md (the contract vendors build against); a test
checks that every /api/v1 route is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal.web.routing import Router

router = Router()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "Error; the body says which field and why")
ERRORS = {str(code): ERROR for code in (400, 401, 403, 404, 409, 413, 422, 429)}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with offset"}
STAGE = {"type": "string", "enum": ["issuance", "renewal", "claim"]}
KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "Client-chosen idempotency key: same key and body returns the "
    "original response (200), another body 409.",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Receipt": {
        "type": "object",
        "required": ["id", "leaf_hash", "recorded_at"],
        "properties": {
            "id": {"type": "string"},
            "leaf_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "recorded_at": TIME,
        },
    },
    "Staff": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "staff_no": {"type": "string"},
            "stars": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
            "new": {"type": "boolean", "description": "too few ratings for a star level"},
        },
    },
    "SessionIn": {
        "type": "object",
        "required": ["staff_no", "stage", "idempotency_key"],
        "properties": {
            "staff_no": {"type": "string"},
            "stage": STAGE,
            "ticket": {"type": ["string", "null"], "maxLength": 16},
            "idempotency_key": KEY,
        },
    },
    "Session": {
        "type": "object",
        "properties": {
            "session_id": {"type": "string"},
            "expires_at": TIME,
            "staff": _ref("Staff"),
        },
    },
    "CounterRatingIn": {
        "type": "object",
        "required": ["session_id", "level", "idempotency_key", "occurred_at"],
        "properties": {
            "session_id": {"type": "string"},
            "level": {"type": "string", "enum": ["satisfied", "basic", "dissatisfied"]},
            "idempotency_key": KEY,
            "occurred_at": TIME,
        },
    },
    "Device": {
        "type": "object",
        "properties": {
            "device_id": {"type": "integer"},
            "label": {"type": ["string", "null"]},
            "insurer": {"type": "string"},
            "insurer_code": {"type": "string"},
            "branch": {"type": "string"},
            "staff": {"type": "array", "items": _ref("Staff")},
        },
    },
    "Checkpoint": {
        "type": "object",
        "properties": {
            "origin": {"type": "string"},
            "tree_size": {"type": "integer"},
            "root_hash": {"type": "string"},
            "timestamp": TIME,
            "note": {"type": "string", "description": "C2SP tlog-checkpoint body"},
            "signature": {"type": "string", "description": "base64 Ed25519 over note"},
            "key_id": {"type": "string"},
        },
    },
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    secured: bool = False,
    params: list[dict[str, Any]] | None = None,
    created: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **ERRORS}}
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if secured:
        op["security"] = [{"device": []}]
    if params:
        op["parameters"] = params
    if created:
        op["responses"]["200"] = _json(
            ok["201"]["content"]["application/json"]["schema"],
            "Replay of an earlier request with the same key",
        )
    return op


def _param(name: str, where: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": kind}}


PATHS: dict[str, Any] = {
    "/api/v1/counter/device": {
        "get": _op(
            "The paired device's branch and staff (addition to the contract)",
            {"200": _json(_ref("Device"), "Device")},
            secured=True,
        )
    },
    "/api/v1/counter/sessions": {
        "post": _op(
            "Open a service session",
            {"201": _json(_ref("Session"), "Session opened")},
            body="SessionIn",
            secured=True,
            created=True,
        )
    },
    "/api/v1/counter/ratings": {
        "post": _op(
            "Rate a session (once)",
            {"201": _json(_ref("Receipt"), "Stored and committed")},
            body="CounterRatingIn",
            secured=True,
            created=True,
        )
    },
    "/api/v1/checkpoints/latest": {
        "get": _op("Latest signed checkpoint", {"200": _json(_ref("Checkpoint"), "Checkpoint")})
    },
    "/api/v1/checkpoints/key": {
        "get": _op(
            "Ledger public key", {"200": _json({"type": "object"}, "key_id, algorithm, public_key")}
        )
    },
    "/api/v1/checkpoints/consistency": {
        "get": _op(
            "Consistency proof",
            {"200": _json({"type": "object"}, "from, to, proof")},
            params=[_param("from", "query", "integer"), _param("to", "query", "integer")],
        )
    },
    "/api/v1/checkpoints/{tree_size}": {
        "get": _op(
            "Checkpoint of a tree size",
            {"200": _json(_ref("Checkpoint"), "Checkpoint")},
            params=[_param("tree_size", "path", "integer")],
        )
    },
    "/api/v1/ratings/{rating_id}/proof": {
        "get": _op(
            "Inclusion proof of a rating",
            {"200": _json({"type": "object"}, "Proof")},
            params=[_param("rating_id", "path")],
        )
    },
    "/api/v1/openapi.json": {
        "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI")})
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "Gongping channel API",
        "version": "1",
        "description": "Counter devices, phone systems and public read endpoints. "
        "See channel-api.md.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "device": {
                "type": "http",
                "scheme": "bearer",
                "description": "Counter device token, shown once at registration",
            }
        },
    },
}


@router.route("/api/v1/openapi.json", roles="public")
async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
