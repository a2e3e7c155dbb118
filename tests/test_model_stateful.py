"""A stateful model test (issue 8, part 6): Hypothesis drives the portal through random
sequences of submissions, replays, replies, takedowns, checkpoints and restarts, and
after every step compares the portal with a model kept here.

The model is the list of acknowledged ratings and what happened to them. Everything the
test expects is computed from that list alone, with its own arithmetic (scores, stars,
shares, months, the Merkle root of a proof, the HMAC of a phone request), never by
calling the app's helpers. After every step:

* every acknowledged rating is stored exactly once, and its score, value, stage,
  channel, subjects, times, source, key and leaf hash are what they were when it was
  acknowledged (nothing extra is stored for the model's insurers);
* the public figures of each insurer (GET /api/v1/insurers/{code} and the directory
  row) equal the figures computed from the model;
* the hidden texts are exactly those with an approved takedown (erased for personal
  data), the public review list shows them as removed, and their scores still count;
* `portal.ledger.verify` finds nothing, and exactly the checkpointed ratings are in
  the ledger.

Bounded for CI (15 examples of up to 20 steps); MODEL_EXAMPLES, MODEL_STEPS run it longer and
MODEL_SEED replays a run (every failure names its seed). Hypothesis keeps no example
database, so a run depends on its seed only.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import random
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from moderation import takedowns
from portal import credentials, directory, ledger, replies, rollups
from portal.config import Settings
from portal.db import make_engine
from portal.errors import Conflict, Invalid, NotFound
from portal.models import ApiClient, Branch, LedgerEntry, Rating, RatingText, Staff, User
from portal.ratings import RatingIn, day_of, record
from portal.web.app import create_app
from tests import conftest
from tests.test_ledger import _independent_root
from tests.web.test_phone_api import sign

CHINA = timezone(timedelta(hours=8))
BASE = "https://testserver"
STAGES = ("issuance", "renewal", "claim")
CHANNELS = ("counter", "phone", "web")
REASONS = ("personal_data", "abuse", "defamation", "spam", "unrelated")
LEVELS = ("satisfied", "basic", "dissatisfied")  # the counter's 3-level scale, values 1-3
# Texts without digits or "@": personal-data masking leaves them as written.
PHRASES = (
    "理赔很快",
    "服务态度好",
    "等了很久",
    "柜员很耐心",
    "电话一直占线",
    "续保流程清楚",
    "没有人回复",
    "值得推荐",
    "材料要求反复变",
    "very helpful",
)
EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "15"))
STEPS = int(os.environ.get("MODEL_STEPS", "20"))
_codes = itertools.count(1)
_ips = itertools.count(1)

texts = st.one_of(
    st.none(),
    st.lists(st.sampled_from(PHRASES), min_size=1, max_size=3).map("，".join),
)


# -- the model's own arithmetic ----------------------------------------------------------


@dataclass
class Rated:
    """One acknowledged rating, as the model remembers it."""

    id: str
    insurer: str
    channel: str
    stage: str
    scale: int
    value: int
    verified: bool
    occurred: datetime  # aware UTC
    branch: str | None
    staff: str | None
    source: str
    key: str
    text: str | None
    recorded: str  # canonical UTC timestamp, from the receipt (or the first read)
    leaf_hash: str
    how: dict[str, Any]  # what it takes to send the same request again
    hidden: bool = False
    hidden_reason: str | None = None
    redacted: bool = False
    replied: bool = False
    change: bool = False
    reply_days: int | None = 0  # None: the reply was on another China day than the rating
    sequenced: bool = False

    @property
    def score(self) -> int:
        if self.scale == 5:
            return (self.value - 1) * 25
        return {1: 100, 2: 50, 3: 0}[self.value]

    @property
    def stars(self) -> int:
        return self.value if self.scale == 5 else {1: 5, 2: 3, 3: 1}[self.value]


def stamp(dt: datetime) -> str:
    """UTC, microseconds, Z (a naive value from SQLite is UTC already)."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def china_day(dt: datetime) -> date:
    return dt.astimezone(CHINA).date()


def summary(rs: list[Rated], stars: bool = True) -> dict[str, Any]:
    n = len(rs)
    total = sum(r.score for r in rs)
    top = sum(r.score == 100 for r in rs)
    bottom = sum(r.score <= 25 for r in rs)
    out: dict[str, Any] = {
        "n": n,
        "mean": round(total / n, 1) if n else None,
        "top_share": round(100 * top / n, 1) if n else None,
        "bottom_share": round(100 * bottom / n, 1) if n else None,
    }
    if stars:
        out["stars"] = {str(k): sum(r.stars == k for r in rs) for k in (5, 4, 3, 2, 1)}
    return out


def last_months(today: date, count: int = 12) -> list[date]:
    firsts = [date(today.year, today.month, 1)]
    while len(firsts) < count:
        prev = firsts[-1] - timedelta(days=1)
        firsts.append(date(prev.year, prev.month, 1))
    return firsts[::-1]


def expected_profile(code: str, name: str, rs: list[Rated], today: date) -> dict[str, Any]:
    verified = [r for r in rs if r.verified]
    trend = []
    for first in last_months(today):
        month = [
            r
            for r in verified
            if (d := china_day(r.occurred)).year == first.year and d.month == first.month
        ]
        n = len(month)
        trend.append(
            {
                "month": first.strftime("%Y-%m"),
                "n": n,
                "mean": round(sum(r.score for r in month) / n, 1) if n else None,
            }
        )
    written = [r for r in rs if r.text is not None]
    answered = [r for r in written if r.replied]
    days = [r.reply_days for r in answered]
    changes = sum(r.change for r in answered)
    replied = len(answered)
    return {
        "code": code,
        "name": name,
        "ratings": {"total": len(rs), "verified": len(verified)},
        "score": summary(verified),
        "stages": {s: summary([r for r in verified if r.stage == s]) for s in STAGES},
        "channels": {c: summary([r for r in verified if r.channel == c]) for c in CHANNELS},
        "trend": trend,
        "replies": {
            "replied": replied,
            "rate": round(100 * replied / len(written), 1) if replied else None,
            "median_working_days": (
                float(statistics.median(days)) if days and None not in days else None
            )
            if replied
            else None,
            "change_share": round(100 * changes / replied, 1) if replied else None,
        },
    }


def expected_directory_row(code: str, name: str, rs: list[Rated]) -> dict[str, Any]:
    verified = [r for r in rs if r.verified]
    return {
        "code": code,
        "name": name,
        "ratings": {"total": len(rs), "verified": len(verified)},
        "score": summary(verified, stars=False),
        "stages": {s: summary([r for r in verified if r.stage == s], False) for s in STAGES},
    }


# -- the world of one example ------------------------------------------------------------


@dataclass
class Company:
    code: str
    name: str
    id: int
    device_pk: int
    device_token: str
    client_id: str
    client_secret: str
    client_pk: int
    user_id: int


@dataclass
class Request_:
    id: int
    rating: str
    reason: str
    status: str = "pending"


@dataclass
class Env:
    settings: Settings
    key: ledger.LedgerKey
    regulator_id: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"examples": 0, "steps": 0})
    rules: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)  # spent in each invariant


def _company(engine: Engine, tag: str) -> Company:
    n = next(_codes)
    code = f"M{n:04d}{tag}"  # the database is the test's own: a counter is unique
    name = f"模型测试{tag}保险{n}"
    with engine.begin() as conn:
        iid = directory.add_insurer(conn, code, name)
        for b, region in (("B1", "430100"), ("B2", "430200")):
            directory.add_branch(conn, code, b, f"{name}{b}网点", region)
        directory.import_staff(
            conn,
            [
                directory.StaffRow(code, "B1", "T1", "柜员一", "teller"),
                directory.StaffRow(code, "B2", "T2", "柜员二", "teller"),
                directory.StaffRow(code, "B1", "C1", "坐席一", "call_agent"),
            ],
        )
        device_pk, token = credentials.add_device(conn, code, "B1", "模型1号窗口")
        client_id, secret = credentials.add_client(conn, code)
        client_pk = conn.execute(
            select(ApiClient.id).where(ApiClient.client_id == client_id)
        ).scalar_one()
        user_id = _user(conn, f"model-{code.lower()}", "insurer", iid)
    return Company(code, name, iid, device_pk, token, client_id, secret, client_pk, user_id)


def _user(conn: Any, name: str, role: str, insurer_id: int | None) -> int:
    """A user row to act as (the takedown functions record who asked and decided). It
    never logs in, so no password hash is computed: the suite stays fast."""
    found = conn.execute(select(User.id).where(User.username == name)).scalar()
    if found:
        return int(found)
    return int(
        conn.execute(
            User.__table__.insert()
            .values(username=name, password_hash="!", role=role, insurer_id=insurer_id)
            .returning(User.id)
        ).scalar_one()
    )


# -- the state machine -------------------------------------------------------------------


class PortalModel(RuleBasedStateMachine):
    env: Env  # set by the test before it runs

    def __init__(self) -> None:
        super().__init__()
        self.ratings: list[Rated] = []
        self.requests: list[Request_] = []
        self.companies: list[Company] = []
        self.engine: Engine | None = None
        self.client: TestClient | None = None

    # -- plumbing

    def _start(self) -> None:
        self.engine = make_engine(self.env.settings.runtime_database_url)
        n = next(_ips)
        self.client = TestClient(
            create_app(self.env.settings),
            base_url=BASE,
            client=(f"10.9.{n // 250}.{n % 250 + 1}", 50000),
        )
        self.client.__enter__()

    def _stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def teardown(self) -> None:
        self._stop()

    def _company(self, code: str) -> Company:
        return next(c for c in self.companies if c.code == code)

    def _other(self, code: str) -> Company:
        return next(c for c in self.companies if c.code != code)

    def _acknowledge(self, r: Rated) -> None:
        assert all(x.id != r.id for x in self.ratings), f"receipt {r.id} given twice"
        self.ratings.append(r)

    def _stored(self, rating_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(Rating).where(Rating.id == rating_id)).one()

    @initialize()
    def setup_world(self) -> None:
        self.env.stats["examples"] += 1
        self._start()
        self.companies = [_company(self.engine, "A"), _company(self.engine, "B")]
        with self.engine.begin() as conn:
            self.env.regulator_id = _user(conn, "model-regulator", "regulator", None)
        # Earlier examples may have left ratings unsequenced: start from a signed tree.
        ledger.checkpoint(self.engine, self.env.key)
        with self.engine.connect() as conn:
            cp = ledger.latest(conn)
        self.tree_size = cp.tree_size if cp else 0

    # -- submissions, one rule per channel path

    @rule(
        company=st.sampled_from("AB"),
        stage=st.sampled_from(STAGES),
        teller=st.sampled_from(("T1", "T2")),
        level=st.sampled_from(LEVELS),
    )
    def submit_counter(self, company: str, stage: str, teller: str, level: str) -> None:
        self.env.rules["submit_counter"] += 1
        c = self.companies["AB".index(company)]
        auth = {"authorization": f"Bearer {c.device_token}"}
        opened = self.client.post(
            "/api/v1/counter/sessions",
            json={"staff_no": teller, "stage": stage, "idempotency_key": f"s-{uuid.uuid4()}"},
            headers=auth,
        )
        assert opened.status_code == 201, opened.text
        occurred = datetime.now(CHINA)
        body = {
            "session_id": opened.json()["session_id"],
            "level": level,
            "idempotency_key": f"r-{uuid.uuid4()}",
            "occurred_at": occurred.isoformat(),
        }
        done = self.client.post("/api/v1/counter/ratings", json=body, headers=auth)
        assert done.status_code == 201, done.text
        receipt = done.json()
        self._acknowledge(
            Rated(
                id=receipt["id"],
                insurer=c.code,
                channel="counter",
                stage=stage,
                scale=3,
                value=LEVELS.index(level) + 1,
                verified=True,
                occurred=occurred.astimezone(UTC),
                branch="B1",  # the device's branch
                staff=teller,
                source=f"device:{c.device_pk}",
                key=body["idempotency_key"],
                text=None,
                recorded=receipt["recorded_at"],
                leaf_hash=receipt["leaf_hash"],
                how={"path": "counter", "body": body, "receipt": receipt},
            )
        )

    @rule(
        company=st.sampled_from("AB"),
        stage=st.sampled_from(STAGES),
        scale=st.sampled_from((3, 5)),
        digit=st.integers(1, 5),
        days_ago=st.integers(0, 400),
    )
    def submit_phone(self, company: str, stage: str, scale: int, digit: int, days_ago: int) -> None:
        self.env.rules["submit_phone"] += 1
        c = self.companies["AB".index(company)]
        value = min(digit, scale)
        occurred = datetime.now(CHINA) - timedelta(days=days_ago, minutes=3)
        body = {
            "call_id": f"call-{uuid.uuid4()}",
            "kind": "hotline",
            "stage": stage,
            "agent_no": "C1",
            "digits": str(value),
            "scale": scale,
            "occurred_at": occurred.isoformat(),
        }
        raw = json.dumps(body).encode()
        done = self.client.post(
            "/api/v1/phone/ratings",
            content=raw,
            headers=sign(c.client_id, c.client_secret, raw),
        )
        assert done.status_code == 201, done.text
        receipt = done.json()
        self._acknowledge(
            Rated(
                id=receipt["id"],
                insurer=c.code,
                channel="phone",
                stage=stage,
                scale=scale,
                value=value,
                verified=True,
                occurred=occurred.astimezone(UTC),
                branch="B1",  # the call agent's branch
                staff="C1",
                source=f"client:{c.client_pk}",
                key=body["call_id"],
                text=None,
                recorded=receipt["recorded_at"],
                leaf_hash=receipt["leaf_hash"],
                how={"path": "phone", "body": body, "receipt": receipt, "company": c.code},
            )
        )

    def _form(self, code: str, stage: str) -> dict[str, str]:
        page = self.client.get(f"/rate?insurer={code}&stage={stage}")
        assert page.status_code == 200, page.text
        form = BeautifulSoup(page.text, "html.parser").find("form", id="rate-form")
        assert form is not None
        return {
            i["name"]: i.get("value", "")
            for i in form.find_all("input")
            if i.get("name") in ("nonce", "csrf_token")
        }

    def _post_form(self, data: dict[str, str]) -> Any:
        fresh = self._form(data["insurer"], data["stage"])  # this browser's CSRF token
        return self.client.post(
            "/rate",
            data=data | {"csrf_token": fresh["csrf_token"]},
            headers={"origin": BASE},
            follow_redirects=False,
        )

    @rule(
        company=st.sampled_from("AB"),
        stage=st.sampled_from(STAGES),
        stars=st.integers(1, 5),
        text=texts,
        branch=st.sampled_from(("", "B1", "B2")),
    )
    def submit_web_form(
        self, company: str, stage: str, stars: int, text: str | None, branch: str
    ) -> None:
        """The public rating form, unverified (no code): counted, not in the verified score."""
        self.env.rules["submit_web_form"] += 1
        c = self.companies["AB".index(company)]
        hidden = self._form(c.code, stage)
        data = {
            "insurer": c.code,
            "stage": stage,
            "score": str(stars),
            "text": text or "",
            "branch": branch,
            "staff_no": "",
            "policy_no": "",
            "phone": "",
            "code": "",
            "nonce": hidden["nonce"],
        }
        done = self._post_form(data)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        match = re.fullmatch(r"/receipt/([0-9a-f]{32})\?t=(.+)", location)
        assert match, location
        row = self._stored(match.group(1))  # the form answers with a link, not a receipt
        self._acknowledge(
            Rated(
                id=row.id,
                insurer=c.code,
                channel="web",
                stage=stage,
                scale=5,
                value=stars,
                verified=False,
                occurred=datetime.fromtimestamp(int(hidden["nonce"][:10]), UTC),
                branch=branch or None,
                staff=None,
                source="web",
                key=row.idempotency_key,
                text=text,
                recorded=stamp(row.recorded_at),
                leaf_hash=row.leaf_hash,
                how={"path": "form", "data": data, "location": location},
            )
        )

    @rule(
        company=st.sampled_from("AB"),
        stage=st.sampled_from(STAGES),
        stars=st.integers(1, 5),
        text=texts,
        verified=st.booleans(),
        days_ago=st.integers(0, 400),
        subject=st.sampled_from(((None, None), ("B2", None), ("B2", "T2"), (None, "T1"))),
    )
    def submit_web_core(
        self,
        company: str,
        stage: str,
        stars: int,
        text: str | None,
        verified: bool,
        days_ago: int,
        subject: tuple[str | None, str | None],
    ) -> None:
        """A web review through record(), the write path behind every channel (verified
        reviews need an SMS code on the form; record() is what that form ends in)."""
        self.env.rules["submit_web_core"] += 1
        c = self.companies["AB".index(company)]
        occurred = datetime.now(CHINA) - timedelta(days=days_ago, minutes=1)
        rating = RatingIn(
            insurer=c.code,
            stage=stage,
            channel="web",
            scale=5,
            value=stars,
            occurred_at=occurred,
            source="web",
            idempotency_key=f"model-{uuid.uuid4()}",
            branch=subject[0],
            staff_no=subject[1],
            text=text,
            verified=verified,
        )
        receipt = record(self.engine, rating)
        assert not receipt.replayed
        branch = subject[0] or ("B1" if subject[1] == "T1" else None)  # staff's branch
        self._acknowledge(
            Rated(
                id=receipt.id,
                insurer=c.code,
                channel="web",
                stage=stage,
                scale=5,
                value=stars,
                verified=verified,
                occurred=occurred.astimezone(UTC),
                branch=branch,
                staff=subject[1],
                source="web",
                key=rating.idempotency_key,
                text=text,
                recorded=stamp(receipt.recorded_at),
                leaf_hash=receipt.leaf_hash,
                how={"path": "core", "rating": rating},
            )
        )

    # -- replays and conflicts

    @precondition(lambda self: self.ratings)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """The same request again: the same receipt, nothing new stored."""
        self.env.rules["replay"] += 1
        r = data.draw(st.sampled_from(self.ratings))
        how = r.how
        if how["path"] == "counter":
            c = self._company(r.insurer)
            again = self.client.post(
                "/api/v1/counter/ratings",
                json=how["body"],
                headers={"authorization": f"Bearer {c.device_token}"},
            )
            assert again.status_code == 200, again.text
            assert again.json() == how["receipt"]
        elif how["path"] == "phone":
            c = self._company(r.insurer)
            raw = json.dumps(how["body"]).encode()
            again = self.client.post(
                "/api/v1/phone/ratings",
                content=raw,
                headers=sign(c.client_id, c.client_secret, raw),
            )
            assert again.status_code == 200, again.text
            assert again.json() == how["receipt"]
        elif how["path"] == "form":
            again = self._post_form(how["data"])
            assert again.status_code == 303, again.text
            assert again.headers["location"] == how["location"]
        else:
            receipt = record(self.engine, how["rating"])
            assert receipt.replayed
            assert (receipt.id, receipt.leaf_hash, stamp(receipt.recorded_at)) == (
                r.id,
                r.leaf_hash,
                r.recorded,
            )

    @precondition(lambda self: self.ratings)
    @rule(data=st.data())
    def reuse_key_for_another_body(self, data: st.DataObject) -> None:
        """The same idempotency key with a different body: 409, nothing stored."""
        self.env.rules["reuse_key_for_another_body"] += 1
        r = data.draw(st.sampled_from(self.ratings))
        how = r.how
        if how["path"] == "counter":
            c = self._company(r.insurer)
            if data.draw(st.booleans()):  # the same key, another level
                body, code = how["body"] | {"level": LEVELS[r.value % 3]}, "idempotency_conflict"
            else:  # the same session rated again under a new key
                body, code = (
                    how["body"] | {"idempotency_key": f"r-{uuid.uuid4()}"},
                    ("session_already_rated"),
                )
            again = self.client.post(
                "/api/v1/counter/ratings",
                json=body,
                headers={"authorization": f"Bearer {c.device_token}"},
            )
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == code
        elif how["path"] == "phone":
            c = self._company(r.insurer)
            body = how["body"] | {"digits": str(r.value % r.scale + 1)}
            raw = json.dumps(body).encode()
            again = self.client.post(
                "/api/v1/phone/ratings",
                content=raw,
                headers=sign(c.client_id, c.client_secret, raw),
            )
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "idempotency_conflict"
        elif how["path"] == "form":
            changed = how["data"] | {"score": str(r.value % 5 + 1)}
            again = self._post_form(changed)
            assert again.status_code == 409, (again.status_code, again.headers)
        else:
            other = dataclasses.replace(how["rating"], value=r.value % 5 + 1)
            with pytest.raises(Conflict):
                record(self.engine, other)

    # -- the insurer's reply, takedowns and the regulator

    @precondition(lambda self: self.ratings)
    @rule(
        data=st.data(),
        own=st.booleans(),
        body=st.sampled_from(PHRASES),
        change=st.sampled_from((None, "已加派人手", "简化材料清单")),
    )
    def reply(self, data: st.DataObject, own: bool, body: str, change: str | None) -> None:
        self.env.rules["reply"] += 1
        r = data.draw(st.sampled_from(self.ratings))
        c = self._company(r.insurer) if own else self._other(r.insurer)
        call = dict(
            insurer_id=c.id, user_id=c.user_id, rating_id=r.id, body=body, change_made=change
        )
        if not own:
            with pytest.raises(NotFound), self.engine.begin() as conn:
                replies.post(conn, **call)
            return
        if r.text is None:
            with pytest.raises(Invalid), self.engine.begin() as conn:
                replies.post(conn, **call)
            return
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            replies.post(conn, **call)
        if not r.replied:
            recorded = datetime.strptime(r.recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            r.reply_days = 0 if china_day(recorded) == china_day(now) else None
        r.replied, r.change = True, change is not None

    @precondition(lambda self: self.ratings)
    @rule(data=st.data(), reason=st.sampled_from(REASONS), own=st.booleans())
    def request_takedown(self, data: st.DataObject, reason: str, own: bool) -> None:
        self.env.rules["request_takedown"] += 1
        texted = [r for r in self.ratings if r.text is not None]
        # Mostly texts (the real case), sometimes any rating (a rating without text).
        pool = texted if texted and data.draw(st.integers(0, 3)) else self.ratings
        r = data.draw(st.sampled_from(pool))
        c = self._company(r.insurer) if own else self._other(r.insurer)
        pending = any(q.rating == r.id and q.status == "pending" for q in self.requests)
        expected: type[Exception] | None = None
        if not own:
            expected = NotFound
        elif r.text is None:
            expected = Invalid
        elif r.redacted or (r.hidden and reason != "personal_data") or pending:
            expected = Conflict
        call = dict(
            insurer_id=c.id,
            user_id=c.user_id,
            rating_id=r.id,
            reason=reason,
            explanation="模型测试：请求删除",
        )
        if expected is not None:
            with pytest.raises(expected), self.engine.begin() as conn:
                takedowns.request(conn, **call)
            return
        with self.engine.begin() as conn:
            request_id = takedowns.request(conn, **call)
        self.requests.append(Request_(request_id, r.id, reason))

    # Approve and reject are two rules (not one with a flag): Hypothesis switches whole
    # rules off per example, and deciding is what the hidden-text invariant is about.
    @precondition(lambda self: any(q.status == "pending" for q in self.requests))
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        self.env.rules["approve"] += 1
        self._decide(data, approve=True)

    @precondition(lambda self: any(q.status == "pending" for q in self.requests))
    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        self.env.rules["reject"] += 1
        self._decide(data, approve=False)

    def _decide(self, data: st.DataObject, approve: bool) -> None:
        q = data.draw(st.sampled_from([q for q in self.requests if q.status == "pending"]))
        decision = "approved" if approve else "rejected"
        with self.engine.begin() as conn:
            rid = takedowns.decide(
                conn,
                request_id=q.id,
                user_id=self.env.regulator_id,
                decision=decision,
                note="" if approve else "属于正常评价",
            )
        assert rid == q.rating
        q.status = decision
        if approve:
            r = next(x for x in self.ratings if x.id == q.rating)
            if not r.hidden:
                r.hidden, r.hidden_reason = True, q.reason
            if q.reason == "personal_data":
                r.redacted = True

    @precondition(lambda self: any(q.status != "pending" for q in self.requests))
    @rule(data=st.data(), approve=st.booleans())
    def decide_again(self, data: st.DataObject, approve: bool) -> None:
        self.env.rules["decide_again"] += 1
        q = data.draw(st.sampled_from([q for q in self.requests if q.status != "pending"]))
        with pytest.raises(Conflict), self.engine.begin() as conn:
            takedowns.decide(
                conn,
                request_id=q.id,
                user_id=self.env.regulator_id,
                decision="approved" if approve else "rejected",
                note="再议",
            )

    # -- the ledger and the process

    @rule(data=st.data())
    def checkpoint(self, data: st.DataObject) -> None:
        self.env.rules["checkpoint"] += 1
        pending = [r for r in self.ratings if not r.sequenced]
        cp = ledger.checkpoint(self.engine, self.env.key)
        if not pending:
            assert cp is None
            return
        assert cp is not None and cp.tree_size == self.tree_size + len(pending)
        self.tree_size = cp.tree_size
        for r in pending:
            r.sequenced = True
        # Anyone can check a receipt: the public proof, the public key, own arithmetic.
        r = data.draw(st.sampled_from(self.ratings))
        proof = self.client.get(f"/api/v1/ratings/{r.id}/proof").json()
        latest = self.client.get("/api/v1/checkpoints/latest").json()
        key = self.client.get("/api/v1/checkpoints/key").json()
        assert proof["leaf_hash"] == r.leaf_hash and proof["tree_size"] == cp.tree_size
        root = _independent_root(
            bytes.fromhex(r.leaf_hash),
            proof["leaf_index"],
            proof["tree_size"],
            [bytes.fromhex(p) for p in proof["proof"]],
        )
        assert root.hex() == latest["root_hash"] == proof["checkpoint"]["root_hash"]
        origin, size, root_b64 = latest["note"].rstrip("\n").split("\n")
        assert (int(size), base64.b64decode(root_b64)) == (cp.tree_size, root)
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
        public.verify(base64.b64decode(latest["signature"]), latest["note"].encode())

    @rule()
    def rebuild_rollups(self) -> None:
        """What `portal rollups rebuild` does (as the owner: the app may not delete): the
        figures must not move, since the rollups kept in each rating's transaction are
        already exact."""
        self.env.rules["rebuild_rollups"] += 1
        owner = make_engine(self.env.settings.database_url)
        try:
            with owner.begin() as conn:
                rollups.rebuild(conn, day_of)
        finally:
            owner.dispose()

    @rule()
    def restart(self) -> None:
        """Stop the app (its engine disposed) and start a new one on the same database."""
        self.env.rules["restart"] += 1
        self._stop()
        self._start()

    # -- invariants, after every step

    @invariant()
    def portal_matches_the_model(self) -> None:
        if self.engine is None:  # before initialize
            return
        self.env.stats["steps"] += 1
        for check in (
            self._stored_ratings_unchanged,
            self._texts_and_takedowns,
            self._public_figures,
            self._transparency,
            self._ledger,
        ):
            started = time.perf_counter()
            check()
            self.env.seconds[check.__name__.strip("_")] += time.perf_counter() - started

    def _stored_ratings_unchanged(self) -> None:
        ids = {c.id: c for c in self.companies}
        with self.engine.connect() as conn:
            rows = {
                row.id: row
                for row in conn.execute(select(Rating).where(Rating.insurer_id.in_(list(ids))))
            }
            branches = dict(conn.execute(select(Branch.id, Branch.code)).all())
            staff = dict(conn.execute(select(Staff.id, Staff.staff_no)).all())
        assert set(rows) == {r.id for r in self.ratings}, "stored ratings differ from acknowledged"
        for r in self.ratings:
            row = rows[r.id]
            seen = {
                "insurer": ids[row.insurer_id].code,
                "channel": row.channel,
                "stage": row.stage,
                "scale": row.scale,
                "value": row.value,
                "score": row.score,
                "top": bool(row.top_box),
                "bottom": bool(row.bottom_box),
                "verified": bool(row.verified),
                "occurred": stamp(row.occurred_at),
                "recorded": stamp(row.recorded_at),
                "branch": branches.get(row.branch_id),
                "staff": staff.get(row.staff_id),
                "source": row.source,
                "key": row.idempotency_key,
                "leaf_hash": row.leaf_hash,
                "has_text": row.text_hash is not None,
            }
            want = {
                "insurer": r.insurer,
                "channel": r.channel,
                "stage": r.stage,
                "scale": r.scale,
                "value": r.value,
                "score": r.score,
                "top": r.score == 100,
                "bottom": r.score <= 25,
                "verified": r.verified,
                "occurred": stamp(r.occurred),
                "recorded": r.recorded,
                "branch": r.branch,
                "staff": r.staff,
                "source": r.source,
                "key": r.key,
                "leaf_hash": r.leaf_hash,
                "has_text": r.text is not None,
            }
            assert seen == want, f"rating {r.id} changed"

    def _texts_and_takedowns(self) -> None:
        with self.engine.connect() as conn:
            stored = {
                t.rating_id: t
                for t in conn.execute(
                    select(RatingText).where(RatingText.rating_id.in_([r.id for r in self.ratings]))
                )
            }
        assert set(stored) == {r.id for r in self.ratings if r.text is not None}
        for r in self.ratings:
            if r.text is None:
                continue
            t = stored[r.id]
            assert (bool(t.hidden), t.hidden_reason if t.hidden else None, bool(t.redacted)) == (
                r.hidden,
                r.hidden_reason,
                r.redacted,
            ), f"text of {r.id}: hidden only by an approved takedown"
            assert t.body == ("" if r.redacted else r.text)
        # What the public list shows: every written review, removed ones as removed, with
        # their scores (a takedown hides a text, never a rating).
        for c in self.companies:
            mine = {r.id: r for r in self.ratings if r.insurer == c.code and r.text is not None}
            shown: dict[str, Any] = {}
            page = 1
            while True:
                got = self.client.get(
                    f"/api/v1/reviews?insurer={c.code}&per_page=100&sort=oldest&page={page}"
                )
                assert got.status_code == 200, got.text
                body = got.json()
                shown |= {item["id"]: item for item in body["reviews"]}
                if body["next"] is None:
                    break
                page += 1
            assert set(shown) == set(mine) and body["total"] == len(mine)
            for rid, item in shown.items():
                r = mine[rid]
                assert (item["removed"], item["removed_reason"]) == (r.hidden, r.hidden_reason)
                assert item["text"] == (None if r.hidden else r.text)
                assert (item["score"], item["stars"], item["stage"], item["channel"]) == (
                    r.score,
                    r.stars,
                    r.stage,
                    r.channel,
                )
                assert item["verified"] == r.verified

    def _public_figures(self) -> None:
        listing = self.client.get("/api/v1/insurers?q=模型测试").json()["insurers"]
        rows = {row["code"]: row for row in listing}
        for c in self.companies:
            mine = [r for r in self.ratings if r.insurer == c.code]
            got = self.client.get(f"/api/v1/insurers/{c.code}")
            assert got.status_code == 200, got.text
            today = datetime.now(CHINA).date()
            want = expected_profile(c.code, c.name, mine, today)
            seen = got.json()
            if any(r.replied and r.reply_days is None for r in mine):
                seen["replies"]["median_working_days"] = None  # across midnight: not modelled
            assert seen == want, f"public figures of {c.code}"
            assert rows[c.code] == expected_directory_row(c.code, c.name, mine)

    def _transparency(self) -> None:
        """The public /transparency table: requests, approved, rejected, pending."""
        if not self.requests:
            return
        page = BeautifulSoup(self.client.get("/transparency").text, "html.parser")
        seen: dict[str, list[int]] = {}
        for row in page.select('table[data-testid="transparency"] tbody tr'):
            link = row.find("a")
            if link is None:
                continue
            numbers = [int(td.text.replace(",", "")) for td in row.find_all("td", class_="num")]
            code = link["href"].rsplit("/", 1)[1]
            seen[code] = [a + b for a, b in zip(seen.get(code, [0] * 4), numbers, strict=True)]
        for c in self.companies:
            mine = [q for q in self.requests if self._rating(q.rating).insurer == c.code]
            want = [
                len(mine),
                sum(q.status == "approved" for q in mine),
                sum(q.status == "rejected" for q in mine),
                sum(q.status == "pending" for q in mine),
            ]
            assert seen.get(c.code, [0] * 4) == want, f"transparency of {c.code}"

    def _rating(self, rating_id: str) -> Rated:
        return next(r for r in self.ratings if r.id == rating_id)

    def _ledger(self) -> None:
        key = self.env.key
        problems = ledger.verify(self.engine, key.private.public_key(), key.origin)
        assert problems == [], [str(p) for p in problems]
        with self.engine.connect() as conn:
            sequenced = {
                rid
                for (rid,) in conn.execute(
                    select(LedgerEntry.rating_id).where(
                        LedgerEntry.rating_id.in_([r.id for r in self.ratings])
                    )
                )
            }
        assert sequenced == {r.id for r in self.ratings if r.sequenced}


# -- the test ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database of its own: the model owns every insurer it checks, and the ledger it
    verifies holds nothing another test damaged on purpose."""
    tmp: Path = tmp_path_factory.mktemp("model")
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        gen = conftest._postgres_database(url, suffix="_model")
        yield conftest.test_settings(next(gen), tmp)
        gen.close()
    else:
        yield conftest.test_settings(f"sqlite:///{tmp / 'model.db'}", tmp)


def test_the_portal_follows_the_model(model_settings: Settings) -> None:
    key = ledger.load_key(model_settings.ledger_key_path, model_settings.ledger_origin, create=True)
    env = Env(model_settings, key)
    run_seed = int(os.environ.get("MODEL_SEED") or random.SystemRandom().randrange(2**32))
    machine = type("Run", (PortalModel,), {"env": env})
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            seed(run_seed)(machine),
            settings=hsettings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,  # a run depends on its seed alone
                print_blob=True,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except BaseException as err:
        err.add_note(f"reproduce with MODEL_SEED={run_seed} (and the same MODEL_* settings)")
        raise
    finally:
        seconds = time.monotonic() - started
        print(
            f"model test: seed {run_seed}, {env.stats['examples']} examples, "
            f"{env.stats['steps']} checked steps, {seconds:.1f} s; rules run: {dict(env.rules)}; "
            f"invariant seconds: { {k: round(v, 1) for k, v in env.seconds.items()} }"
        )
