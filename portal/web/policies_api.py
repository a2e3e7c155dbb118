"""Insurers register policies (with the customer's phone, kept only as a keyed hash) so
web reviewers can prove they are customers. Signed like every call-centre request."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal import audit, credentials, policies, policies_in_force
from portal.errors import BadRequest, Invalid
from portal.models import Insurer
from portal.web.api import read_body, read_json_bytes
from portal.web.routing import Router

router = Router()
MAX_POLICIES = 1000  # per request: larger files go through `portal policies import`


async def signed_client(request: Request) -> tuple[Any, bytes]:
    """The API client behind X-Client-Id / X-Timestamp / X-Signature, and the raw body."""
    raw = await read_body(request)
    headers = request.headers
    client = await request.state.portal.read(
        credentials.authenticate_client,
        headers.get("x-client-id", ""),
        headers.get("x-timestamp", ""),
        headers.get("x-signature", ""),
        raw,
    )
    return client, raw


def _rows(body: dict[str, Any], key: bytes) -> list[tuple[str, str]]:
    """Every row valid, or a 422 naming the first bad one: bad input stores nothing."""
    items = body.get("policies")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_POLICIES:
        raise BadRequest(
            "Send “policies”: a list of 1 to %(max)s objects.",
            field="policies",
            code="malformed_policies",
            max=MAX_POLICIES,
        )
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("policy_no", "phone")
        ):
            raise BadRequest(
                "Each policy needs policy_no and phone as strings.",
                field=f"policies[{i}]",
                code="malformed_policies",
            )
        try:
            rows.append(
                (
                    policies.normalise_policy_no(item["policy_no"]),
                    policies.phone_hash(key, policies.normalise_phone(item["phone"])),
                )
            )
        except Invalid as err:
            err.field = f"policies[{i}].{err.field}"
            raise
    return rows


def _register(conn: Connection, client: Any, rows: list[tuple[str, str]]) -> dict[str, int]:
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for policy_no, digest in rows:
        counts[policies.register(conn, client.insurer_id, policy_no, digest)] += 1
    audit.log(conn, f"client:{client.client_id}", "policies.register", str(len(rows)), **counts)
    return counts


@router.route("/api/v1/policies", roles="client", methods=("POST",))
async def register_policies(request: Request) -> Response:
    portal = request.state.portal
    client, raw = await signed_client(request)
    rows = _rows(read_json_bytes(request, raw), portal.phone_key)
    return JSONResponse(await portal.write(_register, client, rows))


def _months(body: dict[str, Any], insurer: str) -> list[policies_in_force.Report]:
    items = body.get("months")
    if not isinstance(items, list) or not 1 <= len(items) <= 120:
        raise BadRequest(
            "Send “months”: a list of 1 to %(max)s objects.",
            field="months",
            code="malformed_months",
            max=120,
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("month"), str):
            raise BadRequest(
                "Each entry needs month (YYYY-MM) and policies (a whole number).",
                field=f"months[{i}]",
                code="malformed_months",
            )
        month = policies_in_force.parse_month(item["month"], f"months[{i}].month")
        count = policies_in_force.parse_count(item.get("policies"), f"months[{i}].policies")
        out.append(policies_in_force.Report(insurer, month, count))
    return out


def _report(conn: Connection, client: Any, body: dict[str, Any]) -> dict[str, int]:
    code = conn.execute(select(Insurer.code).where(Insurer.id == client.insurer_id)).scalar_one()
    counts = policies_in_force.apply(conn, _months(body, code), f"client:{client.client_id}")
    audit.log(conn, f"client:{client.client_id}", "policies_in_force.report", code, **counts)
    return counts


@router.route("/api/v1/policies-in-force", roles="client", methods=("POST",))
async def report_policies_in_force(request: Request) -> Response:
    """The client's own insurer's policies in force per month (a month again replaces it)."""
    client, raw = await signed_client(request)
    body = read_json_bytes(request, raw)
    return JSONResponse(await request.state.portal.write(_report, client, body))
