"""What insurers and the regulator see of the phone channel: survey offer and completion
rates per agent and insurer, return-visit results per agent, the unreachable list and
fraud signals. Reads the call, task and attempt tables (small, per insurer)."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from portal.counter_reports import china_midnight, percent
from portal.models import Insurer, PhoneCall, Rating, Staff, VisitTask
from portal.sms import mask_phone

DAYS = 30  # survey rates cover the last 30 days
SHARED_PHONE_CUSTOMERS = 3  # one number on this many customers' policies is a signal
SIGNAL_LIMIT = 50
UNREACHABLE_LIMIT = 200  # oldest first; the page says when there are more


def _calls(since: date) -> Any:
    """Calls of the period with whether the caller rated them (a rating with the same
    client source and call_id)."""
    rated = Rating.id.is_not(None)
    return (
        select(
            PhoneCall.insurer_id,
            PhoneCall.staff_id,
            func.count().label("calls"),
            func.sum(case((PhoneCall.hung_up_before_survey, 1), else_=0)).label("hung_up"),
            func.sum(case((PhoneCall.survey_offered, 1), else_=0)).label("offered"),
            func.sum(case((and_(PhoneCall.survey_offered, rated), 1), else_=0)).label("rated"),
        )
        .outerjoin(
            Rating,
            and_(Rating.source == PhoneCall.source, Rating.idempotency_key == PhoneCall.call_id),
        )
        # As UTC: SQLite stores times as UTC text without an offset, and a China-time
        # bound compared as text would start the window 8 hours late.
        .where(PhoneCall.ended_at >= china_midnight(since).astimezone(UTC))
    )


def _rates(r: Any) -> dict[str, Any]:
    calls, hung, offered, rated = (int(r.calls), int(r.hung_up), int(r.offered), int(r.rated))
    return {
        "calls": calls,
        "hung_up": hung,
        "offered": offered,
        "rated": rated,
        # Calls the caller ended before the survey could be offered do not count against
        # the agent; an agent who rarely offers it chooses whom to let rate.
        "offer_rate": percent(calls - hung, offered),
        "completion": percent(offered, rated),
    }


def survey_by_agent(conn: Connection, insurer_id: int, today: date) -> list[dict[str, Any]]:
    """Agents with the lowest offer rate first."""
    sub = _calls(today - timedelta(days=DAYS - 1)).where(PhoneCall.insurer_id == insurer_id)
    sub = sub.group_by(PhoneCall.insurer_id, PhoneCall.staff_id).subquery()
    rows = conn.execute(
        select(Staff.staff_no, Staff.name, sub).join(sub, sub.c.staff_id == Staff.id)
    ).all()
    out = [{"staff_no": r.staff_no, "name": r.name, **_rates(r)} for r in rows]
    return sorted(out, key=lambda a: (a["offer_rate"] is None, a["offer_rate"] or 0))


def survey_by_insurer(
    conn: Connection, today: date, insurer_id: int | None = None
) -> list[dict[str, Any]]:
    stmt = _calls(today - timedelta(days=DAYS - 1))
    if insurer_id is not None:
        stmt = stmt.where(PhoneCall.insurer_id == insurer_id)
    sub = stmt.group_by(PhoneCall.insurer_id, PhoneCall.staff_id).subquery()
    rows = conn.execute(
        select(
            Insurer.code,
            Insurer.name,
            func.sum(sub.c.calls).label("calls"),
            func.sum(sub.c.hung_up).label("hung_up"),
            func.sum(sub.c.offered).label("offered"),
            func.sum(sub.c.rated).label("rated"),
        )
        .join(sub, sub.c.insurer_id == Insurer.id)
        .group_by(Insurer.code, Insurer.name)
        .order_by(Insurer.code)
    ).all()
    return [{"code": r.code, "name": r.name, **_rates(r)} for r in rows]


def visits_by_agent(conn: Connection, insurer_id: int) -> list[dict[str, Any]]:
    """Per sales agent or adjuster: tasks, reached, rated, refused, unreachable, mean score."""

    def count(*statuses: str) -> Any:
        return func.sum(case((VisitTask.status.in_(statuses), 1), else_=0))

    rows = conn.execute(
        select(
            Staff.staff_no,
            Staff.name,
            func.count().label("tasks"),
            count("reached", "rated").label("reached"),
            count("rated").label("rated"),
            count("refused").label("refused"),
            count("unreachable").label("unreachable"),
            func.avg(Rating.score).label("mean"),
        )
        .select_from(VisitTask)
        .join(Staff, Staff.id == VisitTask.staff_id)
        .outerjoin(Rating, Rating.id == VisitTask.rating_id)
        .where(VisitTask.insurer_id == insurer_id)
        .group_by(Staff.staff_no, Staff.name)
        .order_by(Staff.staff_no)
    ).all()
    return [
        dict(r._mapping)
        | {"mean": None if r.mean is None else round(float(r.mean), 1)}
        | {"rated_share": percent(int(r.tasks), int(r.rated))}
        for r in rows
    ]


def unreachable(
    conn: Connection, insurer_id: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """Tasks handed back for a corrected number, oldest first."""
    rows = conn.execute(
        select(VisitTask.__table__, Staff.staff_no, Staff.name.label("staff_name"))
        .join(Staff, Staff.id == VisitTask.staff_id)
        .where(VisitTask.insurer_id == insurer_id, VisitTask.status == "unreachable")
        .order_by(VisitTask.updated_at, VisitTask.id)
        .limit(limit or UNREACHABLE_LIMIT)
    ).all()
    keep = ("id", "kind", "policy_no", "attempts", "cycle", "staff_no", "staff_name")
    return [{k: r._mapping[k] for k in keep} | {"phone": mask_phone(r.phone)} for r in rows]


def agent_phone_signals(conn: Connection, insurer_id: int) -> list[dict[str, Any]]:
    """Tasks whose customer phone is the own phone of one of the insurer's staff."""
    owner = select(Staff.id, Staff.staff_no, Staff.name, Staff.phone_hash).where(
        Staff.insurer_id == insurer_id, Staff.phone_hash.is_not(None)
    )
    owner_sub = owner.subquery()
    agent = Staff.__table__.alias("agent")
    rows = conn.execute(
        select(
            VisitTask.id,
            VisitTask.policy_no,
            VisitTask.kind,
            VisitTask.phone,
            agent.c.staff_no.label("agent_no"),
            owner_sub.c.staff_no.label("owner_no"),
            owner_sub.c.name.label("owner_name"),
        )
        .join(owner_sub, owner_sub.c.phone_hash == VisitTask.phone_hash)
        .join(agent, agent.c.id == VisitTask.staff_id)
        .where(VisitTask.insurer_id == insurer_id)
        .order_by(VisitTask.id)
        .limit(SIGNAL_LIMIT)
    ).all()
    return [dict(r._mapping) | {"phone": mask_phone(r.phone)} for r in rows]


def shared_phone_signals(conn: Connection, insurer_id: int) -> list[dict[str, Any]]:
    """Numbers on the policies of SHARED_PHONE_CUSTOMERS or more different customers."""
    groups = conn.execute(
        select(
            VisitTask.phone_hash,
            func.min(VisitTask.phone).label("phone"),
            func.count(func.distinct(VisitTask.customer_hash)).label("customers"),
            func.count().label("policies"),
        )
        .where(VisitTask.insurer_id == insurer_id)
        .group_by(VisitTask.phone_hash)
        .having(func.count(func.distinct(VisitTask.customer_hash)) >= SHARED_PHONE_CUSTOMERS)
        .order_by(func.count(func.distinct(VisitTask.customer_hash)).desc())
        .limit(SIGNAL_LIMIT)
    ).all()
    out = []
    for g in groups:
        agents = conn.execute(
            select(Staff.staff_no, func.count().label("n"))
            .join(VisitTask, VisitTask.staff_id == Staff.id)
            .where(VisitTask.insurer_id == insurer_id, VisitTask.phone_hash == g.phone_hash)
            .group_by(Staff.staff_no)
            .order_by(func.count().desc(), Staff.staff_no)
        ).all()
        out.append(
            {
                "phone": mask_phone(g.phone),
                "customers": int(g.customers),
                "policies": int(g.policies),
                "agents": [(a.staff_no, int(a.n)) for a in agents],
            }
        )
    return out


def signal_counts(conn: Connection, insurer_ids: list[int]) -> dict[int, int]:
    """len(agent_phone_signals) + len(shared_phone_signals) of each insurer, in two
    queries for all of them (the ranking shows the count beside every insurer)."""
    owner = Staff.__table__.alias("owner")
    agent = Staff.__table__.alias("agent")
    own = conn.execute(
        select(VisitTask.insurer_id, func.count())
        .join(
            owner,
            and_(
                owner.c.phone_hash == VisitTask.phone_hash,
                owner.c.insurer_id == VisitTask.insurer_id,
            ),
        )
        .join(agent, agent.c.id == VisitTask.staff_id)
        .where(VisitTask.insurer_id.in_(insurer_ids), owner.c.phone_hash.is_not(None))
        .group_by(VisitTask.insurer_id)
    ).all()
    groups = (
        select(VisitTask.insurer_id)
        .where(VisitTask.insurer_id.in_(insurer_ids))
        .group_by(VisitTask.insurer_id, VisitTask.phone_hash)
        .having(func.count(func.distinct(VisitTask.customer_hash)) >= SHARED_PHONE_CUSTOMERS)
        .subquery()
    )
    shared = conn.execute(
        select(groups.c.insurer_id, func.count()).group_by(groups.c.insurer_id)
    ).all()
    out = dict.fromkeys(insurer_ids, 0)
    for iid, n in [*own, *shared]:
        out[int(iid)] += min(int(n), SIGNAL_LIMIT)  # the lists stop at SIGNAL_LIMIT
    return out
