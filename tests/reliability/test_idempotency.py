"""Idempotency under concurrency, over HTTP against the real server: the same key sent
10 times at once (released together by a barrier) stores one rating and gets one
answer; the used key with another body is a 409, also when sent 10 times at once.

tests/test_concurrency.py covers concurrent writers with distinct keys at the core
(record()); this is the same key at once through each channel's own route.

"Identical responses" as the channel contract defines them: every answer carries the
same receipt; the one request that stored it says 201 and the replays 200
(channel-api.md "Idempotency"). The web answers every copy with the same redirect.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from bs4 import BeautifulSoup
from sqlalchemy import Engine, select

from portal.models import CounterSession, Rating
from tests.reliability.harness import Target, sign, web_key

N = 10


def at_once(send: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """N threads, each with its own connection, released together."""
    barrier = threading.Barrier(N)
    answers: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * N

    def one(i: int) -> None:
        with httpx.Client(timeout=60, follow_redirects=False) as http:
            barrier.wait()
            try:
                answers[i] = send(http)
            except BaseException as err:  # noqa: BLE001 - reported below
                answers[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not errors, errors
    return answers  # type: ignore[return-value]


def one_receipt(answers: list[httpx.Response]) -> dict[str, str]:
    assert sorted(a.status_code for a in answers) == [200] * (N - 1) + [201], [
        (a.status_code, a.text) for a in answers
    ]
    bodies = [a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)
    assert set(bodies[0]) == {"id", "leaf_hash", "recorded_at"}
    return bodies[0]


def all_conflicts(answers: list[httpx.Response]) -> None:
    assert [a.status_code for a in answers] == [409] * N, [a.text for a in answers]
    for a in answers:
        error = a.json()["error"]
        assert set(error) == {"code", "message", "field"}
        assert error["code"] == "idempotency_conflict" and error["message"]


def stored(owner: Engine, key: str) -> list[Rating]:
    with owner.connect() as conn:
        return list(conn.execute(select(Rating).where(Rating.idempotency_key == key)))


def test_counter_same_key_at_once(server: str, target: Target, owner_engine: Engine) -> None:
    device_id, token = target.devices[0]
    auth = {"authorization": f"Bearer {token}"}
    key = f"idem-{uuid.uuid4().hex}"
    opening = {"staff_no": target.teller, "stage": "claim", "idempotency_key": key + "-open"}
    opened = at_once(
        lambda h: h.post(f"{server}/api/v1/counter/sessions", json=opening, headers=auth)
    )
    assert sorted(a.status_code for a in opened) == [200] * (N - 1) + [201]
    assert len({a.json()["session_id"] for a in opened}) == 1  # one service session
    session_id = opened[0].json()["session_id"]
    with owner_engine.connect() as conn:
        sessions = conn.execute(
            select(CounterSession.id).where(CounterSession.idempotency_key == key + "-open")
        ).all()
    assert len(sessions) == 1

    press = {
        "session_id": session_id,
        "level": "satisfied",
        "idempotency_key": key,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    url = f"{server}/api/v1/counter/ratings"
    receipt = one_receipt(at_once(lambda h: h.post(url, json=press, headers=auth)))
    other = press | {"level": "dissatisfied"}
    all_conflicts(at_once(lambda h: h.post(url, json=other, headers=auth)))
    rows = stored(owner_engine, key)
    assert [(r.id, r.value, r.leaf_hash) for r in rows] == [
        (receipt["id"], 1, receipt["leaf_hash"])
    ]


def test_phone_same_call_id_at_once(server: str, target: Target, owner_engine: Engine) -> None:
    client_id, secret = target.phone_client
    call_id = f"idem-{uuid.uuid4().hex}"
    body = {
        "call_id": call_id,
        "kind": "hotline",
        "stage": "renewal",
        "agent_no": target.call_agent,
        "digits": "4",
        "scale": 5,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
    }
    url = f"{server}/api/v1/phone/ratings"

    def send(payload: dict[str, object]) -> Callable[[httpx.Client], httpx.Response]:
        raw = json.dumps(payload).encode()
        return lambda h: h.post(url, content=raw, headers=sign(client_id, secret, raw))

    receipt = one_receipt(at_once(send(body)))
    all_conflicts(at_once(send(body | {"digits": "1"})))
    rows = stored(owner_engine, call_id)
    assert [(r.id, r.value, r.leaf_hash) for r in rows] == [
        (receipt["id"], 4, receipt["leaf_hash"])
    ]


def test_web_same_form_at_once(server: str, target: Target, owner_engine: Engine) -> None:
    """A browser's form (nonce, CSRF token and its cookie) posted 10 times at once; then
    the same form with another score, 10 times at once: 409 on the form page."""
    with httpx.Client(timeout=60) as http:
        page = http.get(f"{server}/rate", params={"insurer": target.insurer, "stage": "claim"})
    assert page.status_code == 200
    form = BeautifulSoup(page.text, "html.parser").find("form", id="rate-form")
    data = {i["name"]: i.get("value", "") for i in form.find_all("input", type="hidden")}
    data |= {"stage": "claim", "score": "4", "text": "同一张表单同时提交十次", "branch": ""}
    headers = {
        "origin": server,
        "cookie": f"gp_csrf={page.cookies['gp_csrf']}",  # Secure: sent by hand over http
        "accept-language": "en",
    }

    def send(fields: dict[str, str]) -> Callable[[httpx.Client], httpx.Response]:
        return lambda h: h.post(f"{server}/rate", data=fields, headers=headers)

    answers = at_once(send(data))
    assert [a.status_code for a in answers] == [303] * N, [a.text[:300] for a in answers]
    locations = {a.headers["location"] for a in answers}
    assert len(locations) == 1
    receipt_id = locations.pop().split("/")[2].split("?")[0]

    refused = at_once(send(data | {"score": "1"}))
    assert [a.status_code for a in refused] == [409] * N
    assert all("already sent with other answers" in a.text for a in refused)
    rows = stored(owner_engine, web_key(data["nonce"]))
    assert [(r.id, r.value) for r in rows] == [(receipt_id, 4)]
