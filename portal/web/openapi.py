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
UNAVAILABLE = {
    **_json(
        _ref("Error"),
        "The database is briefly unavailable (code `unavailable`). Send the same request "
        "again, same idempotency key, after Retry-After seconds: if it was stored after "
        "all, the answer is the original receipt (200)",
    ),
    "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
}
ERRORS = {str(code): ERROR for code in (400, 401, 403, 404, 409, 413, 422, 429)}
ERRORS["503"] = UNAVAILABLE
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with offset"}
STAGE = {"type": "string", "enum": ["issuance", "renewal", "claim"]}
KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "Client-chosen idempotency key: same key and body returns the "
    "original response (200), another body 409.",
}

NUMBER_OR_NULL = {"type": ["number", "null"]}
SUMMARY = {
    "n": {"type": "integer", "description": "verified ratings"},
    "mean": {**NUMBER_OR_NULL, "description": "average score 0-100; null without ratings"},
    "top_share": {**NUMBER_OR_NULL, "description": "percent satisfied / 5 stars"},
    "bottom_share": {**NUMBER_OR_NULL, "description": "percent dissatisfied / 1-2 stars"},
}
STARS = {
    "type": "object",
    "description": "Verified ratings per star, keys 1-5 (3-level ratings: 5, 3, 1)",
    "additionalProperties": {"type": "integer"},
}
COUNTS = {
    "type": "object",
    "properties": {"total": {"type": "integer"}, "verified": {"type": "integer"}},
}
PUBLIC_SCHEMAS: dict[str, Any] = {
    "Summary": {"type": "object", "required": list(SUMMARY), "properties": SUMMARY},
    "Distribution": {
        "type": "object",
        "required": [*SUMMARY, "stars"],
        "properties": {**SUMMARY, "stars": STARS},
    },
    "InsurerSummary": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "name": {"type": "string"},
            "ratings": COUNTS,
            "score": _ref("Summary"),
            "stages": {"type": "object", "additionalProperties": _ref("Summary")},
        },
    },
    "InsurerList": {
        "type": "object",
        "properties": {
            "insurers": {"type": "array", "items": _ref("InsurerSummary")},
            "count": {"type": "integer"},
        },
    },
    "InsurerDetail": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "name": {"type": "string"},
            "ratings": COUNTS,
            "score": _ref("Distribution"),
            "stages": {"type": "object", "additionalProperties": _ref("Distribution")},
            "channels": {"type": "object", "additionalProperties": _ref("Distribution")},
            "trend": {
                "type": "array",
                "description": "the last 12 months (China time), oldest first",
                "items": {
                    "type": "object",
                    "properties": {
                        "month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                        "n": {"type": "integer"},
                        "mean": NUMBER_OR_NULL,
                    },
                },
            },
            "replies": {
                "type": "object",
                "properties": {
                    "replied": {"type": "integer"},
                    "rate": {**NUMBER_OR_NULL, "description": "percent of written reviews"},
                    "median_working_days": {
                        **NUMBER_OR_NULL,
                        "description": "statutory working days from the rating to the reply",
                    },
                    "change_share": {
                        **NUMBER_OR_NULL,
                        "description": "percent of replies that report a change made",
                    },
                },
            },
        },
    },
    "Review": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "insurer": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "name": {"type": "string"}},
            },
            "stage": STAGE,
            "channel": {"type": "string", "enum": ["counter", "phone", "web"]},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "level": {
                "type": ["string", "null"],
                "enum": ["satisfied", "basic", "dissatisfied", None],
                "description": "for 3-level ratings, when known",
            },
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "verified": {"type": "boolean"},
            "occurred_at": TIME,
            "branch": {
                "type": ["object", "null"],
                "properties": {
                    "name": {"type": "string"},
                    "region": {"type": ["string", "null"]},
                    "province": {"type": ["string", "null"]},
                },
            },
            "text": {
                "type": ["string", "null"],
                "description": "masked for personal data; null when removed",
            },
            "removed": {
                "type": "boolean",
                "description": "the text was taken down by regulator decision; the score counts",
            },
            "removed_at": {"type": ["string", "null"], "format": "date-time"},
            "removed_reason": {
                "type": ["string", "null"],
                "enum": ["personal_data", "abuse", "defamation", "spam", "unrelated", None],
            },
            "replies": {
                "type": "array",
                "description": "the insurer's public reply, then the reviewer's follow-up",
                "items": {
                    "type": "object",
                    "properties": {
                        "author": {"type": "string", "enum": ["insurer", "reviewer"]},
                        "body": {"type": "string", "description": "masked for personal data"},
                        "change_made": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "edited_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
        },
    },
    "ReviewPage": {
        "type": "object",
        "properties": {
            "reviews": {"type": "array", "items": _ref("Review")},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
            "total_is_lower_bound": {"type": "boolean"},
            "pages": {"type": "integer"},
            "facets": {
                "type": ["object", "null"],
                "description": "with q: counts per insurer, stage, channel, stars, region, "
                "province, verified",
            },
            "next": {"type": ["string", "null"]},
            "prev": {"type": ["string", "null"]},
        },
    },
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
    **PUBLIC_SCHEMAS,
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


def _param(
    name: str,
    where: str,
    kind: str = "string",
    *,
    enum: list[str] | None = None,
    description: str | None = None,
    digits: int | None = None,
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, **({"enum": enum} if enum else {})}
    if digits:  # a path id: routing.IdConvertor (9 digits) or Id64Convertor (18)
        schema |= {"minimum": 0, "maximum": 10**digits - 1}
    param = {"name": name, "in": where, "required": where == "path", "schema": schema}
    return param | ({"description": description} if description else {})


POLICIES_IN = {
    "type": "object",
    "required": ["policies"],
    "properties": {
        "policies": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["policy_no", "phone"],
                "properties": {
                    "policy_no": {"type": "string"},
                    "phone": {"type": "string", "description": "mainland mobile"},
                },
            },
        }
    },
}
SCHEMAS["PoliciesIn"] = POLICIES_IN
_policies_op = _op(
    "Register policies with the customer's mobile (addition to the contract; the phone is "
    "stored only as a keyed hash; all rows valid or nothing stored)",
    {
        "200": _json(
            {
                "type": "object",
                "properties": {k: {"type": "integer"} for k in ("added", "updated", "unchanged")},
            },
            "Counts",
        )
    },
    body="PoliciesIn",
)
_policies_op["security"] = [{"client": []}]

PHONE_SCHEMAS: dict[str, Any] = {
    "PhoneRatingIn": {
        "type": "object",
        "required": ["call_id", "kind", "stage", "digits", "scale", "occurred_at"],
        "properties": {
            "call_id": {**KEY, "description": "The call's id: idempotency key per client"},
            "kind": {"type": "string", "enum": ["hotline", "return_visit"]},
            "stage": STAGE,
            "agent_no": {
                "type": ["string", "null"],
                "description": "hotline: the call agent rated (required)",
            },
            "digits": {"type": "string", "pattern": "^[1-5]$"},
            "scale": {
                "type": "integer",
                "enum": [3, 5],
                "description": "3: 1 satisfied, 2 basic, 3 dissatisfied; 5: 5 best, 1 worst",
            },
            "occurred_at": TIME,
            "policy_no": {
                "type": ["string", "null"],
                "description": "return_visit: the policy of the visit (required); the sale "
                "(stage issuance) or claim (stage claim) service is rated",
            },
            "caller_phone": {
                "type": ["string", "null"],
                "description": "return_visit: must be the number recorded on the task",
            },
        },
    },
    "PhoneCallIn": {
        "type": "object",
        "required": ["call_id", "agent_no", "survey_offered", "hung_up_before_survey"],
        "properties": {
            "call_id": KEY,
            "agent_no": {"type": "string"},
            "survey_offered": {
                "type": "boolean",
                "description": "the agent passed the caller to the keypad survey",
            },
            "hung_up_before_survey": {
                "type": "boolean",
                "description": "the caller ended the call before it could be offered",
            },
            "ended_at": {**TIME, "type": ["string", "null"], "description": "default: now"},
        },
    },
    "PhoneCall": {
        "type": "object",
        "properties": {
            "call_id": {"type": "string"},
            "agent_no": {"type": "string"},
            "survey_offered": {"type": "boolean"},
            "hung_up_before_survey": {"type": "boolean"},
            "ended_at": TIME,
        },
    },
    "VisitsIn": {
        "type": "object",
        "required": ["visits"],
        "properties": {
            "visits": {
                "type": "array",
                "minItems": 1,
                "maxItems": 300,  # phone_api.MAX_VISITS: realistic rows stay under 64 KiB
                "items": {
                    "type": "object",
                    "required": ["kind", "policy_no", "phone", "staff_no", "date", "customer"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["new_policy", "claim"]},
                        "policy_no": {"type": "string"},
                        "phone": {"type": "string", "description": "the customer's mobile"},
                        "staff_no": {"type": "string", "description": "sales agent or adjuster"},
                        "date": {
                            "type": "string",
                            "format": "date",
                            "description": "issued or closed",
                        },
                        "customer": {
                            "type": "string",
                            "description": "your customer id (kept only as a keyed hash)",
                        },
                    },
                },
            }
        },
    },
    "DueVisits": {
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date"},
            "call_day": {"type": "boolean", "description": "false on statutory holidays"},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as `cursor` for the next page; null on the last",
            },
            "visits": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "task_id": {"type": "integer"},
                        "kind": {"type": "string", "enum": ["new_policy", "claim"]},
                        "stage": STAGE,
                        "policy_no": {"type": "string"},
                        "phone": {"type": "string", "description": "E.164"},
                        "staff_no": {"type": "string"},
                        "window": {"type": "string", "examples": ["09:30-12:00"]},
                        "attempt": {"type": "integer", "minimum": 1, "maximum": 3},
                        "cycle": {"type": "integer"},
                        "due_until": {"type": "string", "format": "date"},
                        "overdue": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "AttemptIn": {
        "type": "object",
        "required": ["outcome", "at"],
        "properties": {
            "outcome": {
                "type": "string",
                "enum": ["answered", "no_answer", "refused", "wrong_number"],
            },
            "at": {
                **TIME,
                "description": "inside a call window; with the task, the idempotency key",
            },
        },
    },
    "VisitState": {
        "type": "object",
        "properties": {
            "task_id": {"type": "integer"},
            "status": {
                "type": "string",
                "enum": ["open", "reached", "rated", "refused", "unreachable"],
            },
            "attempts": {"type": "integer"},
            "cycle": {"type": "integer"},
        },
    },
}
SCHEMAS.update(PHONE_SCHEMAS)
_INTERVAL = {
    "type": ["object", "null"],
    "properties": {k: {"type": "number"} for k in ("value", "low", "high")},
}
SCHEMAS["Ranking"] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "scope": {"type": "string", "enum": ["public"]},
        "slice": {
            "type": "object",
            "description": "period, period_kind, from, to, scope, region, stage, channel, "
            "recency_weighted, level",
        },
        "published_at": TIME,
        "checkpoint": {
            "type": "object",
            "properties": {"tree_size": {"type": ["integer", "null"]}, "root_hash": {}},
        },
        "method": {"type": "object", "description": "prior_weight, min_count, half_life_days"},
        "industry_mean": NUMBER_OR_NULL,
        "medians": {"type": "object"},
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "description": "insurer code"},
                    "name": {"type": "string"},
                    "rank": {"type": ["integer", "null"]},
                    "rank_change": {"type": ["integer", "null"]},
                    "insufficient_data": {"type": "boolean"},
                    "count": {"type": "number"},
                    "score": NUMBER_OR_NULL,
                    "grade": {"type": ["string", "null"]},
                    "mean": _INTERVAL,
                    "satisfied_pct": _INTERVAL,
                    "dissatisfied_pct": _INTERVAL,
                    "dissatisfied_per_10k_policies": NUMBER_OR_NULL,
                    "complaint_index": NUMBER_OR_NULL,
                    "channel_mix": {"type": "object"},
                },
            },
        },
    },
}
SCHEMAS["PoliciesInForceIn"] = {
    "type": "object",
    "required": ["months"],
    "properties": {
        "months": {
            "type": "array",
            "minItems": 1,
            "maxItems": 120,
            "items": {
                "type": "object",
                "required": ["month", "policies"],
                "properties": {
                    "month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                    "policies": {"type": "integer", "minimum": 1},
                },
            },
        }
    },
}
SCHEMAS["RankingList"] = {
    "type": "object",
    "properties": {
        "rankings": {"type": "array", "items": _ref("Ranking")},
        "count": {"type": "integer"},
    },
}


def _signed(op: dict[str, Any]) -> dict[str, Any]:
    op["security"] = [{"client": []}]
    return op


PHONE_PATHS: dict[str, Any] = {
    "/api/v1/phone/ratings": {
        "post": _signed(
            _op(
                "A keypad rating after a hotline call or a return visit",
                {"201": _json(_ref("Receipt"), "Stored and committed")},
                body="PhoneRatingIn",
                created=True,
            )
        )
    },
    "/api/v1/phone/calls": {
        "post": _signed(
            _op(
                "Every ended call, rated or not (addition to the contract): survey offer "
                "and completion rates per agent",
                {"201": _json(_ref("PhoneCall"), "Recorded")},
                body="PhoneCallIn",
                created=True,
            )
        )
    },
    "/api/v1/phone/return-visits": {
        "get": _signed(
            _op(
                "The calls due on a day (call windows, holidays and the 3-attempt rule); "
                "signed over an empty body",
                {"200": _json(_ref("DueVisits"), "Due calls, 500 per page")},
                params=[
                    _param("date", "query", description="YYYY-MM-DD, default today (UTC+8)"),
                    _param(
                        "cursor",
                        "query",
                        description="next_cursor of the previous page (keyset pages: a "
                        "call tried meanwhile never shifts the rest)",
                    ),
                ],
            )
        ),
        "post": _signed(
            _op(
                "New policies and closed claims to visit (addition to the contract; all "
                "rows valid or nothing stored)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                k: {"type": "integer"}
                                for k in ("added", "updated", "unchanged", "reopened")
                            },
                        },
                        "Counts",
                    )
                },
                body="VisitsIn",
            )
        ),
    },
    "/api/v1/phone/return-visits/{task_id}/attempts": {
        "post": _signed(
            _op(
                "Record a call attempt; a third unanswered one makes the task unreachable",
                {"201": _json(_ref("VisitState"), "Recorded")},
                body="AttemptIn",
                params=[_param("task_id", "path", "integer", digits=9)],
                created=True,
            )
        )
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/policies": {"post": _policies_op},
    **PHONE_PATHS,
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
            params=[_param("tree_size", "path", "integer", digits=18)],
        )
    },
    "/api/v1/ratings/{rating_id}/proof": {
        "get": _op(
            "Inclusion proof of a rating",
            {"200": _json({"type": "object"}, "Proof")},
            params=[_param("rating_id", "path")],
        )
    },
    "/api/v1/insurers": {
        "get": _op(
            "Every insurer: counts and verified score, overall and per stage",
            {"200": _json(_ref("InsurerList"), "Insurers")},
            params=[
                _param("q", "query", description="Chinese name, pinyin or initials"),
                _param("sort", "query", enum=["score", "count", "name"]),
                _param("dir", "query", enum=["asc", "desc"]),
            ],
        )
    },
    "/api/v1/insurers/{code}": {
        "get": _op(
            "One insurer: score summary and star distribution per stage and channel",
            {"200": _json(_ref("InsurerDetail"), "Insurer")},
            params=[_param("code", "path")],
        )
    },
    "/api/v1/reviews": {
        "get": _op(
            "Published reviews. Without q: newest first from the database, removed "
            "texts shown as removed. With q: full-text search (removed texts never match)",
            {
                "200": _json(_ref("ReviewPage"), "A page of reviews"),
                "503": _json(_ref("Error"), "Search is unavailable (only with q)"),
            },
            params=[
                _param("insurer", "query", description="insurer code"),
                _param("stage", "query", enum=["issuance", "renewal", "claim"]),
                _param("channel", "query", enum=["counter", "phone", "web"]),
                _param("stars", "query", description="1-5, or a range such as 1-2"),
                _param("verified", "query", "boolean"),
                _param("region", "query", description="province: 2 or 6 digits of GB/T 2260"),
                _param("q", "query", description="words that must all occur"),
                _param(
                    "sort", "query", enum=["relevance", "newest", "oldest", "lowest", "highest"]
                ),
                _param("page", "query", "integer"),
                _param("per_page", "query", "integer", description="1-100, default 20"),
            ],
        )
    },
    "/api/v1/policies-in-force": {
        "post": _signed(
            _op(
                "Policies in force of the client's insurer per month (addition to the "
                "contract): the denominators of the rankings' per-10,000 figures; all entries "
                "valid or nothing stored, a month reported again is replaced",
                {
                    "200": _json(
                        {"type": "object", "properties": {"months": {"type": "integer"}}},
                        "Insurer-months stored",
                    )
                },
                body="PoliciesInForceIn",
            )
        )
    },
    "/api/v1/rankings": {
        "get": _op(
            "Published rankings of the public scope, newest first (at most 20); each frozen "
            "with the ledger checkpoint it was computed on (docs/rankings.md)",
            {"200": _json(_ref("RankingList"), "Published rankings")},
        )
    },
    "/api/v1/rankings/{snapshot_id}": {
        "get": _op(
            "One published ranking of the public scope (others answer 404)",
            {"200": _json(_ref("Ranking"), "A published ranking")},
            params=[_param("snapshot_id", "path", "integer", digits=9)],
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
            },
            "client": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Signature",
                "description": "Call-centre / insurer systems: X-Client-Id, X-Timestamp (unix "
                "seconds, at most 300 s off) and X-Signature: sha256=<hex HMAC-SHA256 keyed "
                "with the client secret over timestamp + '.' + raw body>.",
            },
        },
    },
}


@router.route("/api/v1/openapi.json", roles="public")
async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
