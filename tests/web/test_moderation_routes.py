"""Issue 5 over HTTP: the replies and takedown workflow's routes.

Who may use each route (every role, every method, nothing changed when refused) is
checked for the whole app by tests/web/test_access_matrix.py; here: what insurer B's
pages leave out, which routes can hide a text, and the screening desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from moderation import flags, takedowns
from portal import directory, replies
from portal.ratings import record
from tests.factories import World, moderation_user, rating_in
from tests.web.conftest import BASE, csrf_of, login, text_of

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


def test_insurer_b_sees_none_of_a(client: TestClient, engine: Engine, objects: Objects) -> None:
    login(client, "ins-b")
    inbox = text_of(client.get("/insurer/inbox").text)
    mine = text_of(client.get("/insurer/takedowns").text)
    assert "柜台排队两小时" not in inbox and "理赔材料要求太多" not in inbox
    assert SECRET_EXPLANATION not in mine
    assert client.get(f"/insurer/ratings/{objects.pending_rating}").status_code == 404


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
