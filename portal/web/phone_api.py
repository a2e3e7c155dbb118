"""Phone API (channel-api.md "Phone"): keypad ratings, ended calls and return visits.

Every request is signed by a call-centre client (see policies_api.signed_client); the
handlers are thin over portal.channels.phone and portal.visits.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal import audit, visits
from portal.channels import phone
from portal.errors import BadRequest
from portal.stars import china_today
from portal.web.api import (
    bool_field,
    int_field,
    read_body,
    read_json_bytes,
    required_text,
    text_field,
    time_field,
)
from portal.web.policies_api import signed_client
from portal.web.routing import Router

router = Router()
# Per request: realistic rows (about 170 bytes) stay under the 64 KiB body limit;
# larger files go through `portal visits import`.
MAX_VISITS = 300


@router.route("/api/v1/phone/ratings", roles="client", methods=("POST",))
async def rate(request: Request) -> Response:
    raw = await read_body(request)
    headers = request.headers
    signed = (
        headers.get("x-client-id", ""),
        headers.get("x-timestamp", ""),
        headers.get("x-signature", ""),
    )

    def keypad() -> phone.KeypadRating:
        body = read_json_bytes(request, raw)
        return phone.KeypadRating(
            call_id=required_text(body, "call_id"),
            kind=required_text(body, "kind"),
            stage=required_text(body, "stage"),
            digits=required_text(body, "digits"),
            scale=int_field(body, "scale"),
            occurred_at=time_field(body, "occurred_at"),
            agent_no=text_field(body, "agent_no", required=False),
            policy_no=text_field(body, "policy_no", required=False),
            caller_phone=text_field(body, "caller_phone", required=False),
        )

    # One unit of the writer: the signature is checked first (401 before any 400), then
    # the body, then the rating, all in one transaction.
    receipt = await request.state.portal.commit(phone.signed_rating, signed, raw, keypad)
    return JSONResponse(receipt.as_json(), status_code=200 if receipt.replayed else 201)


@router.route("/api/v1/phone/calls", roles="client", methods=("POST",))
async def report_call(request: Request) -> Response:
    """Addition to the contract: every ended call, so survey offer rates can be shown."""
    client, raw = await signed_client(request)
    body = read_json_bytes(request, raw)
    call = phone.CallReport(
        call_id=required_text(body, "call_id"),
        agent_no=required_text(body, "agent_no"),
        survey_offered=bool_field(body, "survey_offered"),
        hung_up_before_survey=bool_field(body, "hung_up_before_survey"),
        ended_at=time_field(body, "ended_at") if body.get("ended_at") is not None else None,
    )
    result, replayed = await request.state.portal.call(phone.report_call, client, call)
    return JSONResponse(result, status_code=200 if replayed else 201)


def _query_date(request: Request) -> date:
    raw = request.query_params.get("date")
    try:
        return date.fromisoformat(raw) if raw else china_today()
    except ValueError:
        raise BadRequest(
            "Write the date as YYYY-MM-DD.", field="date", code="malformed_date"
        ) from None


def _cursor(request: Request) -> tuple[date, int] | None:
    """Where the page starts: after the `next_cursor` of the previous page."""
    if request.query_params.get("page", "1") != "1":  # the old offset pages skipped calls
        raise BadRequest(
            "Pages are read with the cursor: pass next_cursor as cursor.",
            field="page",
            code="malformed_page",
        )
    raw = request.query_params.get("cursor")
    return visits.parse_cursor(raw[:40]) if raw else None


@router.route("/api/v1/phone/return-visits", roles="client")
async def due_visits(request: Request) -> Response:
    """The calls due that day for the client's insurer (signed over an empty body)."""
    client, _ = await signed_client(request)
    day, cursor = _query_date(request), _cursor(request)
    listing = await request.state.portal.read(visits.due, client.insurer_id, day, cursor)
    return JSONResponse(listing)


def _upload(
    conn: Connection, client: Any, items: list[Any], key: bytes, today: date
) -> dict[str, Any]:
    rows = visits.rows_from_api(conn, client.insurer_id, items, key, today)
    report = visits.apply(conn, rows, today, visits.VisitReport())
    if report.errors:  # a finished visit cannot change: the whole request stores nothing
        first = report.errors[0]
        first.error.field = f"visits[{first.line}].{first.error.field}"
        raise first.error
    counts = {k: v for k, v in report.as_json().items() if k != "errors"}
    audit.log(conn, f"client:{client.client_id}", "visits.upload", str(len(rows)), **counts)
    return counts


@router.route("/api/v1/phone/return-visits", roles="client", methods=("POST",))
async def upload_visits(request: Request) -> Response:
    """Addition to the contract: new policies and closed claims to visit (all or nothing)."""
    portal = request.state.portal
    client, raw = await signed_client(request)
    items = read_json_bytes(request, raw).get("visits")
    if (
        not isinstance(items, list)
        or not 1 <= len(items) <= MAX_VISITS
        or not all(isinstance(i, dict) and _strings(i) for i in items)
    ):
        raise BadRequest(
            "Send “visits”: a list of 1 to %(max)s objects with kind, policy_no, phone, "
            "staff_no, date and customer as strings.",
            field="visits",
            code="malformed_visits",
            max=MAX_VISITS,
        )
    counts = await portal.write(_upload, client, items, portal.phone_key, china_today())
    return JSONResponse(counts)


def _strings(item: dict[str, Any]) -> bool:
    return all(isinstance(item.get(k), str) for k in visits.COLUMNS if k != "insurer")


@router.route(
    "/api/v1/phone/return-visits/{task_id:id}/attempts", roles="client", methods=("POST",)
)
async def record_attempt(request: Request) -> Response:
    client, raw = await signed_client(request)
    body = read_json_bytes(request, raw)
    state = await request.state.portal.write(
        visits.record_attempt,
        client.insurer_id,
        request.path_params["task_id"],
        required_text(body, "outcome"),
        time_field(body, "at"),
        phone.source_of(client),
    )
    return JSONResponse(state, status_code=200 if state.pop("replayed") else 201)
