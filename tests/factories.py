"""Test data factories: a small world of two insurers and a rating builder."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from portal import directory
from portal.models import Insurer, LedgerEntry, Outbox, Rating, RatingText, RollupDaily
from portal.ratings import RatingIn

_seq = itertools.count()
CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class World:
    insurer_a: str = "TA"
    insurer_b: str = "TB"
    branch_a: str = "TA-ZZ01"
    branch_b: str = "TB-CS01"
    teller_a: str = "ZZ0001"
    teller_b: str = "CS0001"


def make_world(engine: Engine) -> World:
    w = World()
    with engine.begin() as conn:
        if conn.execute(select(Insurer.id).where(Insurer.code == w.insurer_a)).first():
            return w
        directory.add_insurer(conn, w.insurer_a, "甲测试财险")
        directory.add_insurer(conn, w.insurer_b, "乙测试人寿")
        directory.add_branch(conn, w.insurer_a, w.branch_a, "甲测试财险株洲中支", "430200")
        directory.add_branch(conn, w.insurer_b, w.branch_b, "乙测试人寿长沙分公司", "430100")
        directory.import_staff(
            conn,
            [
                directory.StaffRow(w.insurer_a, w.branch_a, w.teller_a, "王小明", "teller"),
                directory.StaffRow(w.insurer_b, w.branch_b, w.teller_b, "李晓红", "teller"),
            ],
        )
    return w


def key() -> str:
    return f"test-{datetime.now().timestamp()}-{next(_seq)}"


def rating_in(w: World, **overrides: Any) -> RatingIn:
    base: dict[str, Any] = dict(
        insurer=w.insurer_a,
        stage="claim",
        channel="web",
        scale=5,
        value=4,
        occurred_at=datetime.now(CHINA) - timedelta(minutes=5),
        source="web",
        idempotency_key=key(),
        branch=w.branch_a,
        staff_no=w.teller_a,
        text="理赔很快，点赞",
    )
    return RatingIn(**(base | overrides))


def counts(engine: Engine) -> dict[str, Any]:
    """Everything a rating write touches, to prove that a rejected write touched nothing."""
    with engine.connect() as conn:
        out: dict[str, Any] = {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Rating, RatingText, Outbox, LedgerEntry)
        }
        out["rollup_n"] = conn.execute(
            select(func.coalesce(func.sum(RollupDaily.n), 0))
        ).scalar_one()
    return out


def moderation_user(conn: Any, role: str, insurer_code: str | None = None) -> int:
    """A user to act in the takedown workflow (created once per role and insurer)."""
    from portal import accounts
    from portal.models import User

    name = f"mod-{role}-{insurer_code or 'x'}".lower()
    found = conn.execute(select(User.id).where(User.username == name)).scalar()
    return found or accounts.add_user(conn, name, "moderation-test-pw-1", role, insurer_code)


def approve_takedown(engine: Engine, rating_id: str, reason: str = "abuse") -> int:
    """Hide a text the only way there is: an insurer's request, approved by the regulator."""
    from moderation import takedowns

    with engine.begin() as conn:
        iid, code = conn.execute(
            select(Rating.insurer_id, Insurer.code)
            .join(Insurer, Insurer.id == Rating.insurer_id)
            .where(Rating.id == rating_id)
        ).one()
        request_id = takedowns.request(
            conn,
            insurer_id=iid,
            user_id=moderation_user(conn, "insurer", code),
            rating_id=rating_id,
            reason=reason,
            explanation="测试：违反发布规则",
        )
        takedowns.decide(
            conn,
            request_id=request_id,
            user_id=moderation_user(conn, "regulator"),
            decision="approved",
            note="",
        )
    return request_id


@dataclass(frozen=True)
class PhoneStaff:
    call_agent: str = "CC1042"
    sales_agent: str = "AG0001"
    adjuster: str = "AD0001"
    sales_agent_phone: str = "+8613700000001"  # the agent's own mobile (fraud signal)
    other_agent: str = "CB0001"  # insurer B's


def make_phone_staff(engine: Engine, phone_key: bytes) -> PhoneStaff:
    """Call agent, sales agent and adjuster of insurer A (and one agent of B)."""
    w, p = make_world(engine), PhoneStaff()
    with engine.begin() as conn:
        directory.import_staff(
            conn,
            [
                directory.StaffRow(w.insurer_a, w.branch_a, p.call_agent, "赵热线", "call_agent"),
                directory.StaffRow(
                    w.insurer_a, w.branch_a, p.sales_agent, "钱销售", "agent", p.sales_agent_phone
                ),
                directory.StaffRow(w.insurer_a, w.branch_a, p.adjuster, "孙理赔", "adjuster"),
                directory.StaffRow(w.insurer_b, w.branch_b, p.other_agent, "周坐席", "call_agent"),
            ],
            phone_key,
        )
    return p
