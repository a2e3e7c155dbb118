"""Phone channel (电话): keypad ratings after hotline calls and return visits, and the
ended-call reports that show how often agents offer the survey.

A call-centre system is an API client of one insurer (signed requests, see
portal.credentials). `call_id` is the idempotency key of both a rating and a call
report, per client; a rating whose call was reported counts as a completed survey.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.exc import IntegrityError

from portal import credentials, visits
from portal.canonical import parts_fingerprint, timestamp, utc
from portal.errors import Conflict, Invalid
from portal.models import Insurer, PhoneCall, Rating, Staff, VisitTask
from portal.policies import normalise_phone
from portal.prepared import Prepared
from portal.ratings import RatingIn, Receipt, Subjects, Within, check_idempotency_key, record_many
from portal.writer import retrying

KINDS = ("hotline", "return_visit")
CALLS: Any = PhoneCall.__table__
CONTRACT_FIELDS = {"staff_no": "agent_no", "value": "digits", "idempotency_key": "call_id"}


@dataclass(frozen=True)
class KeypadRating:
    """A POST /api/v1/phone/ratings body, fields as the contract names them."""

    call_id: str
    kind: str
    stage: str
    digits: str
    scale: int
    occurred_at: datetime
    agent_no: str | None = None
    policy_no: str | None = None
    caller_phone: str | None = None


def source_of(client: Any) -> str:
    return f"client:{client.id}"


def _value(digits: str, scale: int) -> int:
    """The key the caller pressed: one ASCII digit within the scale.

    str.isdigit() also accepts "³", full-width "４" and Arabic-Indic "٤" (int() of "³"
    raises): a keypad sends ASCII, so only "1" to "5" are keys."""
    if len(digits) != 1 or digits not in "12345"[:scale]:
        raise Invalid(
            "Press a single key from 1 to %(scale)s.",
            field="digits",
            code="score_out_of_range",
            scale=scale,
        )
    return int(digits)


def rate(engine: Engine, client: Any, k: KeypadRating) -> Receipt:
    """One keypad rating in a transaction of its own (see rate_in)."""
    return retrying(engine, lambda conn: rate_in(conn, client, k))


def signed_rating(
    conn: Connection,
    signed: tuple[str, str, str],
    raw: bytes,
    keypad: Callable[[], KeypadRating],
) -> Receipt:
    """A signed keypad rating in the caller's write transaction (the API's unit of group
    commit): the signature (client id, timestamp, signature over `raw`) is checked first,
    then `keypad()` parses the body or raises for a bad one."""
    client = credentials.authenticate_client(conn, *signed, raw)
    return rate_in(conn, client, keypad())


def rate_in(conn: Connection, client: Any, k: KeypadRating) -> Receipt:
    """One keypad rating, through the one write path, in the caller's write transaction
    (the API's unit of group commit). A return visit's rating completes its task in the
    same transaction; a replayed call_id returns the first receipt."""
    if k.kind not in KINDS:
        raise Invalid(
            "Unknown kind “%(value)s”: use hotline or return_visit.",
            field="kind",
            code="invalid_kind",
            value=k.kind[:40],
        )
    try:
        key = check_idempotency_key(k.call_id)
        if k.scale not in (3, 5):
            raise Invalid(
                "The phone channel rates on a 3- or 5-point scale.",
                field="scale",
                code="invalid_scale",
            )
        value = _value(k.digits, k.scale)
    except Invalid as err:
        err.field = CONTRACT_FIELDS.get(err.field or "", err.field)
        raise
    source = source_of(client)
    code = _INSURER_CODE.scalar(conn, {"iid": client.insurer_id})
    staff_no, within = k.agent_no, None
    if k.kind == "hotline" and not k.agent_no:
        raise Invalid(
            "A hotline rating names the call agent (agent_no).",
            field="agent_no",
            code="missing_agent",
        )
    if k.kind == "return_visit":
        staff_no, within = _return_visit(conn, client, k, source, key)
    else:
        _not_a_return_visit(conn, source, key)
    rating = RatingIn(
        insurer=code,
        stage=k.stage,
        channel="phone",
        scale=k.scale,
        value=value,
        occurred_at=k.occurred_at,
        source=source,
        idempotency_key=key,
        staff_no=staff_no,
    )
    # The insurer's code was just read with its id: not looked up again.
    subjects = Subjects.known(insurer=(code, client.insurer_id))
    try:
        return record_many(conn, [rating], within=within, subjects=subjects)[0]
    except Invalid as err:  # name the field as the contract does
        err.field = CONTRACT_FIELDS.get(err.field or "", err.field)
        raise


def _return_visit(
    conn: Any, client: Any, k: KeypadRating, source: str, key: str
) -> tuple[str, Within]:
    """The sale's agent or the claim's adjuster is rated, not the caller-back."""
    if not k.policy_no:
        raise Invalid(
            "A return-visit rating names its policy (policy_no).",
            field="policy_no",
            code="missing_policy_no",
        )
    task = visits.task_for_rating(
        conn, client.insurer_id, k.stage, k.policy_no, source, key, k.occurred_at
    )
    if k.caller_phone is not None and _caller_phone(k.caller_phone) != task.phone:
        raise Invalid(
            "The number called is not the one recorded on the policy.",
            field="caller_phone",
            code="phone_mismatch",
        )
    return task.staff_no, lambda c, row: visits.complete(c, task.id, row)


def _caller_phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except Invalid as err:  # the contract's name for the field
        err.field = "caller_phone"
        raise


# On the keypad rating's path: run on the driver (portal/prepared.py).
_INSURER_CODE = Prepared(select(Insurer.code).where(Insurer.id == bindparam("iid")))
_VISIT_RATED = Prepared(
    select(VisitTask.id)
    .join(Rating, Rating.id == VisitTask.rating_id)
    .where(Rating.source == bindparam("source"), Rating.idempotency_key == bindparam("key"))
)


def _not_a_return_visit(conn: Any, source: str, key: str) -> None:
    """A call_id that rated a return visit, sent again as a hotline rating, is another
    body (409), even when the rated agent, stage and score happen to match."""
    visit = _VISIT_RATED.first(conn, {"source": source, "key": key})
    if visit is not None:
        raise Conflict(
            "This call_id was already used for a different rating.",
            field="call_id",
            code="idempotency_conflict",
        )


@dataclass(frozen=True)
class CallReport:
    """A POST /api/v1/phone/calls body: one ended call, rated or not."""

    call_id: str
    agent_no: str
    survey_offered: bool
    hung_up_before_survey: bool
    ended_at: datetime | None = None


def report_call(engine: Engine, client: Any, call: CallReport) -> tuple[dict[str, Any], bool]:
    """Store an ended call once per call_id. Returns (body, replayed)."""
    try:
        return _report_call(engine, client, call)
    except IntegrityError:  # the same call_id raced in; answer as a replay
        return _report_call(engine, client, call)


def _report_call(engine: Engine, client: Any, call: CallReport) -> tuple[dict[str, Any], bool]:
    key = check_idempotency_key(call.call_id)
    if call.survey_offered and call.hung_up_before_survey:
        raise Invalid(
            "A call cannot both offer the survey and end before it.",
            field="hung_up_before_survey",
            code="contradictory_call",
        )
    now = datetime.now(UTC)
    ended = visits.checked_time(call.ended_at, "ended_at", now) if call.ended_at else None
    fp = parts_fingerprint(
        call.agent_no, call.survey_offered, call.hung_up_before_survey, ended and timestamp(ended)
    )
    with engine.begin() as conn:
        prior = conn.execute(
            select(PhoneCall).where(PhoneCall.client_id == client.id, PhoneCall.call_id == key)
        ).first()
        if prior is not None:
            if prior.fingerprint != fp:
                raise Conflict(
                    "This call_id was already reported with a different body.",
                    field="call_id",
                    code="idempotency_conflict",
                )
            return _call_json(call, prior.ended_at), True
        staff = conn.execute(
            select(Staff.id).where(
                Staff.insurer_id == client.insurer_id,
                Staff.staff_no == call.agent_no,
                Staff.active,
            )
        ).first()
        if staff is None:
            raise Invalid(
                "This insurer has no staff member with number “%(staff_no)s”.",
                field="agent_no",
                code="unknown_staff",
                staff_no=call.agent_no[:40],
            )
        row = dict(
            client_id=client.id,
            insurer_id=client.insurer_id,
            staff_id=staff.id,
            call_id=key,
            source=source_of(client),
            survey_offered=call.survey_offered,
            hung_up_before_survey=call.hung_up_before_survey,
            ended_at=ended or now,
            fingerprint=fp,
            recorded_at=now,
        )
        conn.execute(CALLS.insert(), [row])
        return _call_json(call, row["ended_at"]), False


def _call_json(call: CallReport, ended_at: datetime) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "agent_no": call.agent_no,
        "survey_offered": call.survey_offered,
        "hung_up_before_survey": call.hung_up_before_survey,
        "ended_at": timestamp(utc(ended_at)),
    }
