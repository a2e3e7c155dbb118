"""The takedown workflow (issue 5) and invariant 2: only an approved request hides a text.

The domain functions are driven directly here; tests/web/test_moderation_routes.py drives
the same through HTTP for every role.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from moderation import takedowns
from portal import ledger, replies, rollups
from portal.config import Settings
from portal.errors import Conflict, Invalid, NotFound
from portal.models import AuditEvent, Insurer, Outbox, RatingText, TakedownRequest
from portal.ratings import record
from tests.factories import make_world, moderation_user, rating_in

NOTE = "评价内容包含他人姓名和住址"


@pytest.fixture
def texted(engine: Engine) -> str:
    """A fresh web review by a customer of insurer A."""
    return record(engine, rating_in(make_world(engine), value=1, text="理赔员王某态度很差")).id


def _ids(engine: Engine) -> tuple[int, int, int, int]:
    """(insurer A id, insurer B id, A's user, the regulator)."""
    with engine.begin() as conn:
        a, b = (
            conn.execute(select(Insurer.id).where(Insurer.code == code)).scalar_one()
            for code in ("TA", "TB")
        )
        return a, b, moderation_user(conn, "insurer", "TA"), moderation_user(conn, "regulator")


def _text(engine: Engine, rid: str) -> tuple:
    with engine.connect() as conn:
        row = conn.execute(
            select(RatingText.body, RatingText.hidden, RatingText.redacted,
                   RatingText.hidden_reason).where(RatingText.rating_id == rid)
        ).one()  # fmt: skip
    return tuple(row)


def _ask(engine: Engine, rid: str, reason: str = "abuse", **kw) -> int:
    a, _, user, _ = _ids(engine)
    with engine.begin() as conn:
        args = dict(insurer_id=a, user_id=user, rating_id=rid, reason=reason, explanation=NOTE)
        return takedowns.request(conn, **(args | kw))


def _decide(engine: Engine, request_id: int, decision: str, note: str = "") -> str:
    *_, regulator = _ids(engine)
    with engine.begin() as conn:
        return takedowns.decide(
            conn, request_id=request_id, user_id=regulator, decision=decision, note=note
        )


def test_request_keeps_the_text_visible_until_approved(engine: Engine, texted: str) -> None:
    request_id = _ask(engine, texted)
    assert _text(engine, texted) == ("理赔员王某态度很差", False, False, None)
    with engine.connect() as conn:
        [queued] = [r for r in takedowns.queue(conn) if r.id == request_id]
    assert (queued.text, queued.reason, queued.explanation) == ("理赔员王某态度很差", "abuse", NOTE)
    assert queued.history is not None and queued.history.requests >= 1
    with engine.connect() as conn:
        totals_before = rollups.totals(conn, _ids(engine)[0], verified_only=False)
    assert _decide(engine, request_id, "approved") == texted
    body, hidden, redacted, reason = _text(engine, texted)
    assert (hidden, redacted, reason, body) == (True, False, "abuse", "理赔员王某态度很差")
    with engine.connect() as conn:
        # the score keeps counting: the figures did not move
        assert rollups.totals(conn, _ids(engine)[0], verified_only=False) == totals_before
        assert (
            conn.execute(select(func.count()).where(Outbox.ref == texted)).scalar_one() >= 2
        )  # recorded, then re-index after the approval
        actions = [a for (a,) in conn.execute(
            select(AuditEvent.action).where(AuditEvent.subject == f"rating:{texted}")
            .order_by(AuditEvent.id))]  # fmt: skip
    assert actions == ["takedown.requested", "takedown.approved"]


def test_personal_data_approval_erases_the_text(engine: Engine, texted: str) -> None:
    _decide(engine, _ask(engine, texted, "personal_data"), "approved")
    assert _text(engine, texted) == ("", True, True, "personal_data")


def test_the_ledger_still_verifies_after_takedowns(engine: Engine, settings: Settings) -> None:
    key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    w = make_world(engine)
    erased, hidden = (record(engine, rating_in(w, text=t)).id for t in ("住址：幸福路1号", "广告"))
    ledger.checkpoint(engine, key)  # both are in a signed tree before they are taken down
    _decide(engine, _ask(engine, erased, "personal_data"), "approved")
    _decide(engine, _ask(engine, hidden, "spam"), "approved")
    ledger.checkpoint(engine, key)
    assert ledger.verify(engine, key.private.public_key(), key.origin) == []


def test_rejection_keeps_the_text_and_needs_a_reason(engine: Engine, texted: str) -> None:
    request_id = _ask(engine, texted)
    with pytest.raises(Invalid, match="explain"):
        _decide(engine, request_id, "rejected", "   ")
    _decide(engine, request_id, "rejected", "属于正常的服务评价，不予删除")
    assert _text(engine, texted)[1] is False
    with engine.connect() as conn:
        [mine] = [r for r in takedowns.of_insurer(conn, _ids(engine)[0]) if r.id == request_id]
    assert (mine.status, mine.decision_note) == ("rejected", "属于正常的服务评价，不予删除")
    with pytest.raises(Conflict):  # decided once, for good
        _decide(engine, request_id, "approved")
    assert _text(engine, texted)[1] is False


def test_bad_requests_store_nothing(engine: Engine, texted: str) -> None:
    a, b, user, _ = _ids(engine)
    before = _count(engine)
    with engine.begin() as conn:
        with pytest.raises(NotFound):  # another insurer's rating does not exist for B
            takedowns.request(
                conn, insurer_id=b, user_id=user, rating_id=texted, reason="abuse",
                explanation=NOTE,
            )  # fmt: skip
        with pytest.raises(NotFound):
            takedowns.request(
                conn, insurer_id=a, user_id=user, rating_id="0" * 32, reason="abuse",
                explanation=NOTE,
            )  # fmt: skip
        for reason, explanation in (("rude", NOTE), ("abuse", ""), ("abuse", "x\x00y")):
            with pytest.raises(Invalid):
                takedowns.request(
                    conn, insurer_id=a, user_id=user, rating_id=texted, reason=reason,
                    explanation=explanation,
                )  # fmt: skip
    assert _count(engine) == before
    _ask(engine, texted)
    with pytest.raises(Conflict, match="waiting"):
        _ask(engine, texted)


def test_no_text_and_removed_text_cannot_be_requested(engine: Engine) -> None:
    bare = record(engine, rating_in(make_world(engine), text=None)).id
    with pytest.raises(Invalid, match="no text"):
        _ask(engine, bare)
    rid = record(engine, rating_in(make_world(engine), text="垃圾广告 加微信 13800138000")).id
    _decide(engine, _ask(engine, rid, "spam"), "approved")
    with pytest.raises(Conflict, match="removed already"):
        _ask(engine, rid, "abuse")
    # A hidden text can still be erased for the personal data it holds...
    _decide(engine, _ask(engine, rid, "personal_data"), "approved")
    assert _text(engine, rid) == ("", True, True, "spam")  # ...keeping the first notice
    with pytest.raises(Conflict, match="removed already"):
        _ask(engine, rid, "personal_data")


def test_one_pending_request_per_text_even_in_a_race(engine: Engine, texted: str) -> None:
    """The check before the insert cannot see a concurrent insert: the index does."""
    a, _, user, _ = _ids(engine)
    _ask(engine, texted)
    with engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            TakedownRequest.__table__.insert().values(
                rating_id=texted, insurer_id=a, reason="spam", explanation="x",
                requested_by=user, requested_at=datetime.now(UTC), status="pending",
            )
        )  # fmt: skip


def test_the_insurer_sees_its_requests_masked_and_removed_texts_not_at_all(
    engine: Engine,
) -> None:
    w = make_world(engine)
    shown = record(engine, rating_in(w, text="经理电话13912345678，态度恶劣")).id
    gone = record(engine, rating_in(w, text="纯属广告，加微信")).id
    _ask(engine, shown, "abuse")
    _decide(engine, _ask(engine, gone, "spam"), "approved")
    with engine.connect() as conn:
        mine = {r.rating_id: r for r in takedowns.of_insurer(conn, _ids(engine)[0])}
        queued = {r.rating_id: r for r in takedowns.queue(conn)}
    assert mine[shown].text == "经理电话139****5678，态度恶劣" and mine[gone].text == ""
    assert queued[shown].text == "经理电话13912345678，态度恶劣"  # the regulator reads it all


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(TakedownRequest)).scalar_one()


def test_transparency_counts_per_insurer_and_quarter(engine: Engine) -> None:
    w = make_world(engine)
    made = [record(engine, rating_in(w, text=f"第{i}条：某某经理骗人")).id for i in range(3)]
    with engine.connect() as conn:
        before = {(r.quarter, r.insurer_code): r for r in takedowns.transparency(conn)}
    ids = [_ask(engine, rid) for rid in made]
    _decide(engine, ids[0], "approved")
    _decide(engine, ids[1], "rejected", "正常评价")
    quarter = takedowns.quarter_of(datetime.now(UTC))
    with engine.connect() as conn:
        rows = {(r.quarter, r.insurer_code): r for r in takedowns.transparency(conn)}
    old = before.get((quarter, "TA"))
    new = rows[(quarter, "TA")]
    base = (old.requests, old.approved, old.rejected) if old else (0, 0, 0)
    assert (new.requests, new.approved, new.rejected) == (base[0] + 3, base[1] + 1, base[2] + 1)
    assert new.pending >= 1


@pytest.mark.parametrize(
    ("at", "quarter"),
    [
        (datetime(2026, 3, 31, 15, 59, tzinfo=UTC), "2026-Q1"),
        (datetime(2026, 3, 31, 16, 0, tzinfo=UTC), "2026-Q2"),  # 1 April in Beijing
        (datetime(2026, 12, 31, 16, 0, tzinfo=UTC), "2027-Q1"),
    ],
)
def test_quarters_follow_beijing_time(at: datetime, quarter: str) -> None:
    assert takedowns.quarter_of(at) == quarter


# -- invariant 2 against the database itself ---------------------------------------------

ATTACKS = [
    "UPDATE rating_texts SET hidden = {true} WHERE rating_id = :id",
    "UPDATE rating_texts SET body = '已改写' WHERE rating_id = :id",
    "UPDATE rating_texts SET body = '', redacted = {true}, hidden = {true} WHERE rating_id = :id",
    "UPDATE rating_texts SET salt = 'x' WHERE rating_id = :id",
    "DELETE FROM rating_texts WHERE rating_id = :id",
]


def _attack(engine: Engine, sql: str, rid: str) -> None:
    true = "true" if engine.dialect.name == "postgresql" else "1"
    raw = engine.raw_connection()  # through the driver itself, not our code
    try:
        cur = raw.cursor()
        marker = "%s" if engine.dialect.name == "postgresql" else "?"
        with pytest.raises(
            Exception, match=r"(?i)rating.text|takedown.request|permission denied|append-only"
        ):
            params = (rid,) if ":id" in sql else ()
            cur.execute(sql.format(true=true).replace(":id", marker), params)
        raw.rollback()
    finally:
        raw.close()


@pytest.mark.parametrize("sql", ATTACKS)
@pytest.mark.parametrize("who", ["app", "owner"])
def test_raw_sql_cannot_hide_or_change_a_text(
    request: pytest.FixtureRequest, texted: str, sql: str, who: str
) -> None:
    engine: Engine = request.getfixturevalue("engine" if who == "app" else "owner_engine")
    before = _text(engine, texted)
    _attack(engine, sql, texted)
    assert _text(engine, texted) == before


def test_a_pending_or_rejected_request_does_not_unlock_the_text(
    engine: Engine, owner_engine: Engine, texted: str
) -> None:
    request_id = _ask(engine, texted)
    _attack(owner_engine, ATTACKS[0], texted)
    _decide(engine, request_id, "rejected", "正常评价")
    _attack(owner_engine, ATTACKS[0], texted)
    assert _text(engine, texted)[1] is False


@pytest.mark.parametrize("reason", ["abuse", "personal_data"])
def test_after_approval_the_text_and_its_notice_cannot_be_rewritten(
    engine: Engine, owner_engine: Engine, texted: str, reason: str
) -> None:
    _decide(engine, _ask(engine, texted, reason), "approved")
    before = _notice(engine, texted)
    false, true = ("false", "true") if _pg(engine) else ("0", "1")
    for sql in (
        f"UPDATE rating_texts SET hidden = {false} WHERE rating_id = :id",
        "UPDATE rating_texts SET body = '改写后的内容' WHERE rating_id = :id",
        f"UPDATE rating_texts SET body = '改写后的内容', redacted = {true} WHERE rating_id = :id",
        "UPDATE rating_texts SET hidden_reason = 'spam' WHERE rating_id = :id",
        "UPDATE rating_texts SET hidden_at = NULL WHERE rating_id = :id",
        *(
            [f"UPDATE rating_texts SET redacted = {false} WHERE rating_id = :id"]
            * (reason != "abuse")
        ),
    ):
        _attack(owner_engine, sql, texted)
    assert _notice(engine, texted) == before


def _notice(engine: Engine, rid: str) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(select(RatingText).where(RatingText.rating_id == rid)).one())


def test_a_request_cannot_be_repointed_or_forged_into_an_approval(
    engine: Engine, owner_engine: Engine, texted: str
) -> None:
    """Point an approved personal-data request at another text, then hide that one: the
    guard must not trust a request that can be edited."""
    victim = record(engine, rating_in(make_world(engine), text="柜员服务很好")).id
    approved = _ask(engine, texted, "personal_data")
    _decide(engine, approved, "approved")
    pending = _ask(engine, victim, "spam")
    for sql, rid in (
        (f"UPDATE takedown_requests SET rating_id = '{victim}' WHERE id = {approved}", victim),
        (f"UPDATE takedown_requests SET status = 'approved' WHERE id = {pending}", victim),
        (f"UPDATE takedown_requests SET reason = 'abuse' WHERE id = {approved}", texted),
        (f"DELETE FROM takedown_requests WHERE id = {pending}", victim),
    ):
        _attack(owner_engine, sql, rid)
    assert _text(engine, victim)[1] is False
    with engine.connect() as conn:
        status = conn.execute(
            select(TakedownRequest.status).where(TakedownRequest.id == pending)
        ).scalar_one()
    assert status == "pending"


@pytest.mark.sqlite_only
def test_sqlite_replace_from_a_plain_connection_cannot_restore_a_text(
    engine: Engine, settings: Settings, texted: str
) -> None:
    """INSERT OR REPLACE skips DELETE triggers unless recursive_triggers is on, which a
    plain sqlite3 connection (the shell, a script) does not set."""
    import sqlite3

    _decide(engine, _ask(engine, texted, "abuse"), "approved")
    before = _notice(engine, texted)
    raw = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    try:
        with pytest.raises(sqlite3.DatabaseError, match="REPLACE is not allowed"):
            raw.execute(
                "INSERT OR REPLACE INTO rating_texts (rating_id, salt, body, hidden, redacted) "
                "SELECT rating_id, salt, '重新公开', 0, 0 FROM rating_texts WHERE rating_id = ?",
                (texted,),
            )
    finally:
        raw.close()
    assert _notice(engine, texted) == before


def _pg(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE takedown_decisions SET decision = 'rejected'",
        "DELETE FROM takedown_decisions",
        "UPDATE reply_revisions SET body = 'x'",
        "DELETE FROM reply_revisions",
    ],
)
def test_decisions_and_reply_versions_are_append_only(
    engine: Engine, owner_engine: Engine, texted: str, sql: str
) -> None:
    _decide(engine, _ask(engine, texted), "rejected", "正常评价")
    a, _, user, _ = _ids(engine)
    with engine.begin() as conn:
        replies.post(conn, insurer_id=a, user_id=user, rating_id=texted, body="已回访客户")
    table = sql.split()[2 if sql.startswith("DELETE") else 1]
    with owner_engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text(f"{sql} WHERE id = (SELECT max(id) FROM {table})"))


@pytest.mark.postgres_only
def test_postgres_refuses_truncating_texts(owner_engine: Engine) -> None:
    for table in ("rating_texts", "takedown_decisions"):
        with owner_engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(f"TRUNCATE {table} CASCADE"))
