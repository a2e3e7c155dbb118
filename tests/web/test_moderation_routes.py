"""Issue 5 over HTTP: who may use each route of the replies and takedown workflow.

One table: every route of this issue against every role (anonymous, insurer A, insurer
B, regulator, admin). Allowed requests work; refused ones get 401/403/404 (or the login
redirect for pages) and change nothing in the moderation tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from moderation import flags, takedowns
from portal import directory, replies
from portal.models import (
    RatingText,
    Reply,
    ReplyRevision,
    ScreeningFlag,
    TakedownDecision,
    TakedownRequest,
)
from portal.ratings import record
from tests.factories import World, moderation_user, rating_in
from tests.web.conftest import BASE, csrf_of, login, text_of

ROLES = ("anonymous", "ins-a", "ins-b", "reg", "adm")
SECRET_EXPLANATION = "甲公司内部说明：该客户多次投诉"


@dataclass(frozen=True)
class Objects:
    rating: str  # insurer A's review
    pending: int  # a takedown request of A's, waiting
    pending_rating: str
    flag: int  # an open screening flag on A's review
    reply: int  # A's edited reply (it has a history)


@pytest.fixture
def objects(engine: Engine, users: World) -> Objects:
    with engine.begin() as conn:
        a = directory.insurer_id(conn, users.insurer_a)
        ins, reg = moderation_user(conn, "insurer", "TA"), moderation_user(conn, "regulator")
    rid = record(engine, rating_in(users, value=1, text="柜台排队两小时")).id
    asked = record(engine, rating_in(users, value=1, text="客户经理张三电话骗人")).id
    abusive = record(engine, rating_in(users, value=1, text="业务员就是个傻逼")).id
    answered = record(engine, rating_in(users, value=2, text="理赔材料要求太多")).id
    with engine.begin() as conn:
        pending = takedowns.request(
            conn, insurer_id=a, user_id=ins, rating_id=asked, reason="defamation",
            explanation=SECRET_EXPLANATION,
        )  # fmt: skip
        reply = replies.post(conn, insurer_id=a, user_id=ins, rating_id=answered, body="初版回复")
        replies.post(conn, insurer_id=a, user_id=ins, rating_id=answered, body="修改后的回复")
        [flag] = [f.id for f in flags.queue(conn) if f.rating_id == abusive]
    del reg
    return Objects(rid, pending, asked, flag, reply)


def state(engine: Engine) -> tuple[Any, ...]:
    """Everything the routes of this issue can change."""
    with engine.connect() as conn:
        counts = tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Reply, ReplyRevision, TakedownRequest, TakedownDecision)
        )
        hidden = conn.execute(select(func.count()).where(RatingText.hidden)).scalar_one()
        reviewed = conn.execute(
            select(func.count()).where(ScreeningFlag.reviewed_at.is_not(None))
        ).scalar_one()
        bodies = tuple(conn.execute(select(Reply.body).order_by(Reply.id)).scalars())
    return (*counts, hidden, reviewed, bodies)


# (name, method, path, form, {role: expected status}); absent roles: the default below.
PAGE_LOGIN = {"anonymous": 303}
ROUTES: list[tuple[str, str, str, dict[str, str], dict[str, int]]] = [
    ("inbox", "GET", "/insurer/inbox", {}, {"ins-a": 200, "ins-b": 200}),
    ("rating", "GET", "/insurer/ratings/{rating}", {}, {"ins-a": 200, "ins-b": 404}),
    ("reply", "POST", "/insurer/ratings/{rating}/reply", {"body": "感谢您的反馈"},
     {"ins-a": 303, "ins-b": 404}),
    ("takedown", "POST", "/insurer/ratings/{rating}/takedown",
     {"reason": "spam", "explanation": "广告"}, {"ins-a": 303, "ins-b": 404}),
    ("my-requests", "GET", "/insurer/takedowns", {}, {"ins-a": 200, "ins-b": 200}),
    ("queue", "GET", "/regulator/takedowns", {}, {"reg": 200}),
    ("decide", "POST", "/regulator/takedowns/{pending}",
     {"decision": "rejected", "note": "正常评价"}, {"reg": 303}),
    ("screening", "GET", "/regulator/screening", {}, {"reg": 200}),
    ("flag", "POST", "/regulator/screening/{flag}", {"outcome": "kept"}, {"reg": 303}),
    ("transparency", "GET", "/transparency", {}, dict.fromkeys(ROLES, 200)),
    ("history", "GET", "/replies/{reply}/history", {}, dict.fromkeys(ROLES, 200)),
    ("follow-up", "POST", "/receipt/{rating}/follow-up", {"t": "forged", "body": "追评"},
     dict.fromkeys(ROLES, 404)),
]  # fmt: skip


def expected(role: str, method: str, table: dict[str, int]) -> int:
    if role in table:
        return table[role]
    if role == "anonymous":
        return 303 if method == "GET" else 401
    return 403


@pytest.mark.parametrize("role", ROLES)
def test_every_route_of_the_issue_for_every_role(
    client: TestClient, engine: Engine, objects: Objects, role: str
) -> None:
    if role != "anonymous":
        assert login(client, role).status_code == 303
    csrf = csrf_of(client.get("/transparency").text)
    ids = {"rating": objects.rating, "pending": objects.pending, "flag": objects.flag,
           "reply": objects.reply}  # fmt: skip
    for name, method, template, form, table in ROUTES:
        path = template.format(**ids)
        want = expected(role, method, table)
        before = state(engine)
        if method == "GET":
            r = client.get(path, follow_redirects=False)
        else:
            r = client.post(path, data={**form, "csrf_token": csrf}, headers={"origin": BASE},
                            follow_redirects=False)  # fmt: skip
        assert r.status_code == want, (name, role, r.status_code, r.text[:300])
        if method == "POST" and want >= 400:
            assert state(engine) == before, (name, role)
        if method == "GET" and want == 303 and role == "anonymous":
            assert r.headers["location"].startswith("/login")


def test_insurer_b_sees_none_of_a(client: TestClient, engine: Engine, objects: Objects) -> None:
    login(client, "ins-b")
    inbox = text_of(client.get("/insurer/inbox").text)
    mine = text_of(client.get("/insurer/takedowns").text)
    assert "柜台排队两小时" not in inbox and "理赔材料要求太多" not in inbox
    assert SECRET_EXPLANATION not in mine
    assert client.get(f"/insurer/ratings/{objects.pending_rating}").status_code == 404


def test_admin_has_no_way_to_hide_a_text(client: TestClient, engine: Engine, objects: Objects):
    """No route lets an admin decide, request or hide (the whole route table is checked in
    tests/test_architecture.py-style below: every route that writes moderation tables)."""
    login(client, "adm")
    csrf = csrf_of(client.get("/").text)
    before = state(engine)
    for path, form in (
        (f"/regulator/takedowns/{objects.pending}", {"decision": "approved"}),
        (f"/insurer/ratings/{objects.pending_rating}/takedown", {"reason": "abuse"}),
        (f"/regulator/screening/{objects.flag}", {"outcome": "takedown"}),
    ):
        r = client.post(path, data={**form, "csrf_token": csrf}, headers={"origin": BASE},
                        follow_redirects=False)  # fmt: skip
        assert r.status_code == 403
    assert state(engine) == before


def test_the_routes_that_hide_texts_are_only_the_regulators() -> None:
    """From the router itself: a new route that decides or hides cannot slip in unseen."""
    from portal.web.app import ROUTERS

    writers = {
        (r.path, tuple(sorted(r.roles)))
        for router in ROUTERS
        for r in router.routes
        if "POST" in (r.methods or ()) and ("takedown" in r.path or "screening" in r.path)
    }
    assert writers == {
        ("/insurer/ratings/{rating_id}/takedown", ("insurer",)),
        ("/regulator/takedowns/{request_id}", ("regulator",)),
        ("/regulator/screening/{flag_id}", ("regulator",)),
    }


def test_screening_desk_explains_refusals_and_links_a_pending_request(
    client: TestClient, engine: Engine, objects: Objects, users: World
) -> None:
    login(client, "reg")
    csrf = csrf_of(client.get("/regulator/screening").text)

    def post(flag: int, **form: str) -> Any:
        return client.post(f"/regulator/screening/{flag}", data={**form, "csrf_token": csrf},
                           headers={"origin": BASE}, follow_redirects=False)  # fmt: skip

    empty = post(objects.flag, outcome="takedown", note="")
    assert empty.status_code == 422 and "请填写说明" in text_of(empty.text)
    # The insurer already asked about this abusive text: the flag joins that request.
    with engine.begin() as conn:
        a = directory.insurer_id(conn, users.insurer_a)
        [flag] = [f for f in flags.queue(conn) if f.id == objects.flag]
        asked = takedowns.request(
            conn, insurer_id=a, user_id=moderation_user(conn, "insurer", "TA"),
            rating_id=flag.rating_id, reason="abuse", explanation="辱骂员工",
        )  # fmt: skip
    joined = post(objects.flag, outcome="takedown", note="含辱骂")
    assert joined.status_code == 303
    assert joined.headers["location"] == f"/regulator/takedowns#request-{asked}"
    with engine.connect() as conn:
        assert [r.id for r in takedowns.for_rating(conn, flag.rating_id)] == [asked]
