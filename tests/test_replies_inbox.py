"""Reply threads and the insurer's inbox, with a fixed clock around the 2026 Golden Week.

Statutory calendar (chinesecalendar): 25 Sep (Mid-Autumn) and 1-7 Oct are holidays;
Sunday 20 Sep and Saturday 10 Oct are make-up working days.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select

from portal import directory, inbox, replies
from portal.errors import Conflict, Invalid, NotFound
from portal.inbox import InboxFilter
from portal.models import Reply, ReplyRevision, ScreeningFlag
from portal.ratings import RatingIn, record_batch
from tests.factories import CHINA, key, make_world, moderation_user, rating_in

CODE, OTHER = "INBX", "INBY"
NOW = datetime(2026, 10, 12, 10, 0, tzinfo=CHINA)  # a Monday
# name: (stars on a 5 scale, recorded at (China time), staff, text)
RATINGS = {
    "five_days": (1, datetime(2026, 9, 29, 9, 0, tzinfo=CHINA), "IB01", "理赔材料被退回三次"),
    # 03:00 in Beijing is the previous day in UTC: still 5 working days, not overdue
    "night": (1, datetime(2026, 9, 29, 3, 0, tzinfo=CHINA), None, "半夜提交的投诉"),
    "six_days": (2, datetime(2026, 9, 28, 16, 0, tzinfo=CHINA), "IB02", "电话一直打不通"),
    "happy_old": (5, datetime(2026, 9, 20, 11, 0, tzinfo=CHINA), "IB01", "出单很快"),
    "unhappy_replied": (1, datetime(2026, 9, 18, 11, 0, tzinfo=CHINA), None, "等了很久"),
}


@pytest.fixture(scope="module")
def shop(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        for code in (CODE, OTHER):
            directory.add_insurer(conn, code, f"{code}收件箱测试财险")
            directory.add_branch(conn, code, f"{code}-B1", "长沙分公司", "430100")
        directory.import_staff(conn, [
            directory.StaffRow(CODE, f"{CODE}-B1", "IB01", "赵一", "teller"),
            directory.StaffRow(CODE, f"{CODE}-B1", "IB02", "钱二", "adjuster"),
        ])  # fmt: skip
    made = [
        RatingIn(
            insurer=CODE,
            stage="claim",
            channel="web",
            scale=5,
            value=stars,
            occurred_at=at,
            source="test-inbox",
            idempotency_key=key(),
            branch=f"{CODE}-B1",
            staff_no=staff,
            text=text,
        )  # fmt: skip
        for stars, at, staff, text in RATINGS.values()
    ]
    receipts = record_batch(engine, made, recorded_at=lambda r: r.occurred_at)
    ids = dict(zip(RATINGS, (r.id for r in receipts), strict=True))
    with engine.begin() as conn:
        iid = directory.insurer_id(conn, CODE)
        replies.post(
            conn, insurer_id=iid, user_id=moderation_user(conn, "insurer", CODE),
            rating_id=ids["unhappy_replied"], body="已联系客户处理",
            now=datetime(2026, 9, 30, 9, 0, tzinfo=CHINA),
        )  # fmt: skip
    return ids


def _iid(engine: Engine, code: str = CODE) -> int:
    with engine.connect() as conn:
        return directory.insurer_id(conn, code)


def _inbox(engine: Engine, shop: dict[str, str], **kw) -> tuple[list[str], inbox.InboxPage]:
    iid = _iid(engine)
    with engine.connect() as conn:
        page = inbox.inbox(conn, iid, InboxFilter(**kw), now=NOW)
    names = {v: k for k, v in shop.items()}
    return [names[i.rating_id] for i in page.items], page


def test_unanswered_first_then_newest(engine: Engine, shop: dict[str, str]) -> None:
    names, page = _inbox(engine, shop)
    assert names == ["five_days", "night", "six_days", "happy_old", "unhappy_replied"]
    by = {n: i for n, i in zip(names, page.items, strict=True)}
    # 29 Sep -> 12 Oct: 30 Sep, 8, 9, 10 (make-up Saturday) and 12 Oct are working days
    assert (by["five_days"].age, by["five_days"].overdue) == (5, False)
    assert (by["night"].age, by["night"].overdue) == (5, False)
    assert (by["six_days"].age, by["six_days"].overdue) == (6, True)
    assert by["happy_old"].overdue is False  # satisfied ratings are never overdue
    replied = by["unhappy_replied"]
    assert replied.replied and replied.reply_days == 8 and not replied.overdue  # 18 -> 30 Sep
    assert page.overdue == 1 and page.total == 5


def test_filters(engine: Engine, shop: dict[str, str]) -> None:
    assert _inbox(engine, shop, overdue=True)[0] == ["six_days"]
    assert _inbox(engine, shop, replied=True)[0] == ["unhappy_replied"]
    assert _inbox(engine, shop, replied=False, stars="1-2")[0] == ["five_days", "night", "six_days"]
    assert _inbox(engine, shop, staff="IB01")[0] == ["five_days", "happy_old"]
    assert _inbox(engine, shop, branch=f"{CODE}-B1")[1].total == 5
    assert _inbox(engine, shop, branch="NOPE")[1].total == 0
    assert _inbox(engine, shop, channel="counter")[1].total == 0


def test_filter_parsing_ignores_junk_and_round_trips() -> None:
    f = InboxFilter.parse(
        {"stage": "claim", "stars": "1-2", "replied": "no", "overdue": "1", "page": "2",
         "branch": "<b>", "channel": "fax"}
    )  # fmt: skip
    assert f == InboxFilter(stage="claim", stars="1-2", replied=False, overdue=True, page=2)
    assert InboxFilter.parse(dict(p.split("=") for p in f.query_string()[1:].split("&"))) == f


def test_another_insurer_sees_nothing(engine: Engine, shop: dict[str, str]) -> None:
    mine, theirs = _iid(engine), _iid(engine, OTHER)
    with engine.connect() as conn:
        assert inbox.inbox(conn, theirs, InboxFilter(), now=NOW).total == 0
        assert inbox.item(conn, theirs, shop["six_days"], now=NOW) is None
        assert inbox.item(conn, mine, shop["six_days"], now=NOW).overdue


# -- replies ---------------------------------------------------------------------------


def _revisions(engine: Engine, reply_id: int) -> int:
    with engine.connect() as conn:
        stmt = select(func.count()).where(ReplyRevision.reply_id == reply_id)
        return conn.execute(stmt).scalar_one()


def _fresh(engine: Engine, at: datetime | None = None) -> str:
    """A new web review of insurer TA (recorded at `at`)."""
    w = make_world(engine)
    r = rating_in(w, value=1, text="理赔员迟迟不回电话", **({"occurred_at": at} if at else {}))
    [receipt] = record_batch(engine, [r], recorded_at=(lambda _: at) if at else None)
    return receipt.id


def _ta(engine: Engine) -> int:
    return _iid(engine, "TA")


def test_reply_edit_keeps_every_version(engine: Engine) -> None:
    rid = _fresh(engine, datetime(2026, 9, 28, 16, 0, tzinfo=CHINA))
    ta = _ta(engine)
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", "TA")
        args = dict(insurer_id=ta, user_id=user, rating_id=rid)
        first = replies.post(conn, **args, body="请拨打13800138000联系我们",
                             now=datetime(2026, 10, 13, 9, 0, tzinfo=CHINA))  # fmt: skip
        same = replies.post(conn, **args, body="请拨打13800138000联系我们")  # unchanged
        edited = replies.post(conn, **args, body="已为您加急处理", change_made="增设理赔专线")
    assert first == same == edited and _revisions(engine, first) == 2
    with engine.connect() as conn:
        [item] = replies.threads(conn, [rid])[rid]
        versions = replies.history(conn, first)
        working_days = conn.execute(select(Reply.working_days).where(Reply.id == first)).scalar()
    assert (item.body, item.change_made, item.edited) == ("已为您加急处理", "增设理赔专线", True)
    assert [v.body for v in versions] == ["请拨打138****8000联系我们", "已为您加急处理"]
    assert working_days == 7  # 28 Sep -> 13 Oct, the first reply's date counts


def test_follow_up_once_after_the_insurer_replied(engine: Engine) -> None:
    rid = _fresh(engine)
    with engine.begin() as conn, pytest.raises(Conflict, match="once the insurer"):
        replies.follow_up(conn, rating_id=rid, body="还没人联系我")
    ta = _ta(engine)
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", "TA")
        replies.post(conn, insurer_id=ta, user_id=user, rating_id=rid, body="已处理")
        replies.follow_up(conn, rating_id=rid, body="确实已经解决，谢谢")
    with engine.begin() as conn, pytest.raises(Conflict, match="already"):
        replies.follow_up(conn, rating_id=rid, body="再说一次")
    with engine.connect() as conn:
        thread = replies.threads(conn, [rid])[rid]
    assert [(t.author, t.body) for t in thread] == [
        ("insurer", "已处理"), ("reviewer", "确实已经解决，谢谢")
    ]  # fmt: skip


def test_bad_replies_store_nothing(engine: Engine, shop: dict[str, str]) -> None:
    before = _reply_count(engine)
    mine, theirs = _iid(engine), _iid(engine, OTHER)
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", OTHER)
        with pytest.raises(NotFound):  # B cannot answer A's rating
            replies.post(conn, insurer_id=theirs, user_id=user,
                         rating_id=shop["happy_old"], body="你好")  # fmt: skip
        for body in ("", "   ", "a\x07b", "长" * 2001):
            with pytest.raises(Invalid):
                replies.post(conn, insurer_id=mine, user_id=user,
                             rating_id=shop["happy_old"], body=body)  # fmt: skip
    assert _reply_count(engine) == before


def _reply_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Reply)).scalar_one()


def test_abusive_texts_and_replies_are_flagged_not_dropped(engine: Engine) -> None:
    w = make_world(engine)
    [rating] = record_batch(engine, [rating_in(w, text="这个业务员就是个傻逼")])
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", w.insurer_a)
        reply = replies.post(conn, insurer_id=directory.insurer_id(conn, w.insurer_a),
                             user_id=user, rating_id=rating.id, body="你才是傻逼")  # fmt: skip
    with engine.connect() as conn:
        flags = conn.execute(
            select(ScreeningFlag.reply_id, ScreeningFlag.terms)
            .where(ScreeningFlag.rating_id == rating.id)
            .order_by(ScreeningFlag.id)
        ).all()
        [thread] = replies.threads(conn, [rating.id]).values()
    assert [f.reply_id for f in flags] == [None, reply]
    assert all("傻逼" in f.terms for f in flags)
    assert thread[0].body == "你才是傻逼"  # published as written: flagged, not dropped


def test_no_public_reply_without_a_text_and_no_follow_up_after_removal(engine: Engine) -> None:
    from tests.factories import approve_takedown

    w = make_world(engine)
    [bare, written] = record_batch(
        engine, [rating_in(w, value=1, text=None), rating_in(w, value=1, text="网点排队太久")]
    )
    ta = _ta(engine)
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", "TA")
        with pytest.raises(Invalid, match="written reviews"):
            replies.post(conn, insurer_id=ta, user_id=user, rating_id=bare.id, body="抱歉")
        replies.post(conn, insurer_id=ta, user_id=user, rating_id=written.id, body="已改进")
    approve_takedown(engine, written.id, "spam")
    with engine.begin() as conn, pytest.raises(Conflict, match="removed"):
        replies.follow_up(conn, rating_id=written.id, body="把原话再贴一遍")


def test_the_insurers_policy_numbers_are_masked_in_replies_and_the_inbox(engine: Engine) -> None:
    rid = _fresh(engine)
    ta = _ta(engine)
    with engine.begin() as conn:
        directory.set_policy_format(conn, "TA", r"GPT\d{8}")
        user = moderation_user(conn, "insurer", "TA")
        replies.post(conn, insurer_id=ta, user_id=user, rating_id=rid,
                     body="您的保单GPT20261122已加急处理")  # fmt: skip
    try:
        with engine.connect() as conn:
            [item] = replies.threads(conn, [rid])[rid]
            [version] = replies.history(conn, item.id)
        assert item.body == version.body == "您的保单*******1122已加急处理"
    finally:
        with engine.begin() as conn:
            directory.set_policy_format(conn, "TA", None)
