"""The world the access matrix runs in: a database of its own, one app, every kind of
caller, insurer A's objects (and factories for fresh ones), and a digest of every table.

Used by tests/web/test_access_matrix.py; kept apart so the table there stays readable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, MetaData, select, update
from starlette.testclient import TestClient

from moderation import takedowns
from portal import accounts, credentials, directory, ledger, policies, replies, visits
from portal.channels import counter, web
from portal.config import Settings
from portal.db import make_engine, reading
from portal.models import Device, ScreeningFlag, VisitTask
from portal.ratings import record, record_batch
from portal.secrets_files import ensure_key_file
from portal.visit_schedule import in_call_window
from portal.web import app as web_app
from portal.web.security import ANON_CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import PASSWORD, _postgres_database, test_settings
from tests.factories import CHINA, World, key, make_phone_staff, make_world, rating_in

BASE = "https://testserver"
USERS = {"reg": "regulator", "adm": "admin", "ins-a": "insurer", "ins-b": "insurer"}
SECRET_EXPLANATION = "甲公司内部说明：该客户多次投诉"  # insurer A's takedown request
DEVICE_LABEL = "甲-机密窗口"  # insurer A's device
VISIT_PHONE = "13812340071"  # a customer of insurer A on the return-visit list

# Columns that note activity, not data: reading a page as a logged-in user or a device
# may move them (at most once a minute, see accounts.load_session, counter.authenticate).
ACTIVITY = {("login_sessions", "last_seen_at"), ("devices", "last_seen_at")}


# -- a database of its own ------------------------------------------------------------------


def own_database(tmp: Path) -> Iterator[Settings]:
    """A fresh, migrated database for one test module (SQLite file or PostgreSQL)."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        gen = _postgres_database(url, suffix="_access")
        settings = test_settings(next(gen), tmp)
        try:
            yield settings
        finally:
            gen.close()
    else:
        yield test_settings(f"sqlite:///{tmp / 'access.db'}", tmp)


# -- the digest: every table's row count and a hash of its rows --------------------------------


class Digest:
    """Row count and a hash of the ordered rows of every table in the database.

    Cheap when nothing was written: SQLite's `PRAGMA data_version` (another connection
    committed) or PostgreSQL's WAL insert position must move before the tables are
    read again. A move without a change (another database on the server) only costs
    one more reading; no write goes unseen."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.meta = MetaData()
        self.meta.reflect(engine)
        self.postgres = engine.dialect.name == "postgresql"
        self._watch = engine.raw_connection()  # kept open: data_version is per connection
        if not self.postgres:
            self._watch.driver_connection.isolation_level = None  # type: ignore[union-attr]
        self._queries = []
        for table in self.meta.sorted_tables:
            cols = [f'"{c.name}"' for c in table.columns if (table.name, c.name) not in ACTIVITY]
            order = [f'"{c.name}"' for c in table.primary_key.columns] or cols
            sql = f'SELECT {", ".join(cols)} FROM "{table.name}" ORDER BY {", ".join(order)}'
            self._queries.append((table.name, sql))
        self._version: Any = None
        self._last: dict[str, tuple[int, str]] = {}
        self.readings = 0

    def close(self) -> None:
        self._watch.close()

    def _position(self) -> Any:
        cur = self._watch.cursor()
        cur.execute(
            "SELECT pg_current_wal_insert_lsn()" if self.postgres else "PRAGMA data_version"
        )
        value = cur.fetchone()[0]
        cur.close()
        if self.postgres:
            self._watch.rollback()
        return value

    def take(self) -> dict[str, tuple[int, str]]:
        position = self._position()
        if position != self._version or not self._last:
            self._last = self._read_postgres() if self.postgres else self._read()
            self._version = position
            self.readings += 1
        return self._last

    def _read(self) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        with reading(self.engine) as conn:
            for name, sql in self._queries:
                rows = conn.exec_driver_sql(sql).fetchall()
                out[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        return out

    def _read_postgres(self) -> dict[str, tuple[int, str]]:
        """One round trip: count and md5 of the rows (as JSON, activity columns left out)."""
        parts = []
        for table in self.meta.sorted_tables:
            drop = "".join(f" - '{c}'" for t, c in ACTIVITY if t == table.name)
            row = f"(to_jsonb(t){drop})::text"
            parts.append(
                f"SELECT '{table.name}', count(*), "
                f"md5(coalesce(string_agg({row}, '|' ORDER BY {row}), '')) FROM \"{table.name}\" t"
            )
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(" UNION ALL ".join(parts)).all()
        return {name: (int(n), str(h)) for name, n, h in rows}

    @staticmethod
    def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
        return sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))


# -- callers ------------------------------------------------------------------------------------


@dataclass
class Caller:
    """How one role makes a request: cookies, CSRF token, credential headers."""

    role: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    client: tuple[str, str] | None = None  # a phone client's (id, secret): signs the body

    def sign(self, body: bytes) -> dict[str, str]:
        if self.client is None:
            return {}
        client_id, secret = self.client
        stamp = str(int(time.time()))
        mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        return {
            "x-client-id": client_id,
            "x-timestamp": stamp,
            "x-signature": f"sha256={mac.hexdigest()}",
        }


@dataclass(frozen=True)
class Req:
    """One request of a cell: the concrete path, a query, and a form or a JSON body."""

    path: str
    query: str = ""
    form: dict[str, str] | None = None
    json: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def send(
    client: TestClient,
    method: str,
    req: Req,
    who: Caller,
    *,
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Send one request exactly as built: the cookie jar is cleared, so only this
    caller's cookies travel (and nothing a previous response set)."""
    client.cookies.clear()
    body = b""
    h = {"origin": BASE, "accept-language": "en", **who.headers}
    if req.json is not None:
        body = json.dumps(req.json, ensure_ascii=False).encode()
        h["content-type"] = "application/json"
    elif req.form is not None or method not in ("GET", "HEAD"):
        form = dict(req.form or {})
        token = who.csrf if csrf is None else csrf
        if token:
            form["csrf_token"] = token
        body = urlencode(form).encode()
        h["content-type"] = "application/x-www-form-urlencoded"
    h |= who.sign(body)
    if who.cookies:
        h["cookie"] = "; ".join(f"{k}={v}" for k, v in who.cookies.items())
    h |= headers or {}
    h = {k: v for k, v in h.items() if v is not None}
    return client.request(method, req.url, content=body or None, headers=h, follow_redirects=False)


# -- the world ------------------------------------------------------------------------------------


@dataclass
class AccessWorld:
    settings: Settings
    engine: Engine  # the app's connection
    owner: Engine  # the schema owner's (reads every table for the digest)
    client: TestClient
    w: World
    phone_key: bytes
    ledger_key: Any
    user_ids: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (token, csrf)
    anon_csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    device_a: tuple[int, str] = (0, "")
    device_b: tuple[int, str] = (0, "")
    client_a: tuple[str, str] = ("", "")
    client_b: tuple[str, str] = ("", "")
    rating: str = ""  # insurer A's rating with a text, in a signed checkpoint
    reply: int = 0  # insurer A's reply (edited once: it has a history)
    receipt: web.WebReceipt | None = None  # the policyholder's
    other_receipt: web.WebReceipt | None = None  # someone else's (a valid token, wrong rating)
    tree_size: int = 0
    snapshots: dict[str, int] = field(default_factory=dict)  # disclosure scope -> id
    visit_policy: str = ""

    # -- callers ---------------------------------------------------------------------------

    def session(self, role: str) -> tuple[str, str]:
        """A fresh login session of one of the four users: (cookie token, CSRF token)."""
        with self.engine.begin() as conn:
            token = accounts.start_session(conn, self.user_ids[role])
        principal = accounts.load_session(self.engine, token, timedelta(hours=1), timedelta(days=1))
        assert principal is not None
        return token, principal.csrf_token

    def caller(self, role: str, *, fresh_session: bool = False) -> Caller:
        anon = {ANON_CSRF_COOKIE: self.anon_csrf}
        if role in USERS:
            token, csrf = self.session(role) if fresh_session else self.sessions[role]
            return Caller(role, {SESSION_COOKIE: token, **anon}, csrf)
        who = Caller(role, anon, self.anon_csrf)
        if role in ("device", "device-b"):
            token = (self.device_a if role == "device" else self.device_b)[1]
            who.headers = {"authorization": f"Bearer {token}"}
        if role in ("phone", "phone-b"):
            who.client = self.client_a if role == "phone" else self.client_b
        return who

    # -- fresh objects of insurer A, one per cell where a success would use them up -------

    def new_rating(self, text: str = "柜台排队两小时", **kw: Any) -> str:
        return record(self.engine, rating_in(self.w, value=1, text=text, **kw)).id

    def new_device(self) -> int:
        with self.engine.begin() as conn:
            return credentials.add_device(conn, self.w.insurer_a, self.w.branch_a)[0]

    def new_client(self) -> str:
        with self.engine.begin() as conn:
            return credentials.add_client(conn, self.w.insurer_a)[0]

    def _insurer_user(self, conn: Any) -> tuple[int, int]:
        return directory.insurer_id(conn, self.w.insurer_a), self.user_ids["ins-a"]

    def new_takedown(self, explanation: str = "广告") -> int:
        rid = self.new_rating("客户经理张三电话骗人")
        with self.engine.begin() as conn:
            a, uid = self._insurer_user(conn)
            return takedowns.request(
                conn, insurer_id=a, user_id=uid, rating_id=rid, reason="defamation",
                explanation=explanation,
            )  # fmt: skip

    def new_flag(self) -> int:
        rid = self.new_rating("业务员就是个傻逼")
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(ScreeningFlag.id).where(ScreeningFlag.rating_id == rid)
                ).scalar_one()
            )

    def new_counter_session(self) -> str:
        with self.engine.connect() as conn:
            device = conn.execute(select(Device).where(Device.id == self.device_a[0])).one()
        opened = counter.open_session(
            self.engine, device, self.w.teller_a, "claim", "A001", f"open-{uuid.uuid4().hex}"
        )
        return str(opened.as_json()["session_id"])

    def new_customer(self) -> tuple[str, str]:
        """A policy of insurer A with its phone: (policy_no, phone)."""
        digits = f"{uuid.uuid4().int % 10**8:08d}"
        phone, number = f"139{digits}", f"M{uuid.uuid4().hex[:8].upper()}"
        with self.engine.begin() as conn:
            digest = policies.phone_hash(self.phone_key, policies.normalise_phone(phone))
            policies.register(conn, directory.insurer_id(conn, self.w.insurer_a), number, digest)
        return number, phone

    def new_receipt(self, *, replied: bool = False) -> web.WebReceipt:
        form = web.WebForm(
            insurer=self.w.insurer_a, stage="claim", score="2", text="理赔等了一个月",
            nonce=web.new_nonce(),
        )  # fmt: skip
        done = web.submit(self.engine, form, self.phone_key)
        if replied:
            with self.engine.begin() as conn:
                a, uid = self._insurer_user(conn)
                replies.post(conn, insurer_id=a, user_id=uid, rating_id=done.rating_id,
                             body="已为您加急处理")  # fmt: skip
        return done

    def new_visit(
        self, *, status: str = "open", phone: str | None = None, policy: str | None = None
    ) -> int:
        """A return visit of insurer A that a call may be reported on right now."""
        policy = policy or f"V{uuid.uuid4().hex[:10].upper()}"
        event = last_call_moment().astimezone(CHINA).date() - timedelta(days=20)
        phone = phone or f"138{uuid.uuid4().int % 10**8:08d}"
        data = (
            "insurer,kind,policy_no,phone,staff_no,date,customer\n"
            f"{self.w.insurer_a},claim,{policy},{phone},AD0001,{event.isoformat()},C1\n"
        )
        with self.engine.begin() as conn:
            report = visits.import_csv(conn, data, self.phone_key, event + timedelta(days=1))
            assert report.added == 1, report.as_json()
            task_id = conn.execute(
                select(VisitTask.id).where(VisitTask.policy_no == policy)
            ).scalar_one()
        if status != "open":
            with self.owner.begin() as conn:
                conn.execute(update(VisitTask).where(VisitTask.id == task_id).values(status=status))
        return int(task_id)


def last_call_moment() -> datetime:
    """The latest moment before now inside a call window (attempts are reported after)."""
    t = datetime.now(CHINA).replace(second=0, microsecond=0, minute=0) - timedelta(minutes=30)
    for _ in range(24 * 14 * 2):
        if in_call_window(t):
            return t
        t -= timedelta(minutes=30)
    raise AssertionError("no call window in the last two weeks")


def build_world(settings: Settings) -> Iterator[AccessWorld]:
    """Everything the matrix needs, made once for the module."""
    ledger_key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    phone_key = ensure_key_file(settings.phone_key_path)
    engine = make_engine(settings.runtime_database_url)
    owner = make_engine(settings.database_url)
    w = make_world(engine)
    make_phone_staff(engine, phone_key)
    # One app for the module, without the background jobs: the search outbox would be
    # drained behind the digest's back (the digest must change only by requests).
    background = web_app._background
    web_app._background = lambda portal: []
    try:
        with TestClient(
            web_app.create_app(settings), base_url=BASE, client=("10.200.0.1", 50000)
        ) as client:
            world = AccessWorld(settings, engine, owner, client, w, phone_key, ledger_key)
            _populate(world)
            yield world
    finally:
        web_app._background = background
        engine.dispose()
        owner.dispose()


def _populate(x: AccessWorld) -> None:
    w = x.w
    with x.owner.begin() as conn:
        for name, role in USERS.items():
            insurer = {"ins-a": w.insurer_a, "ins-b": w.insurer_b}.get(name)
            x.user_ids[name] = accounts.add_user(conn, name, PASSWORD, role, insurer)
        accounts.add_user(conn, "login-user", PASSWORD, "regulator")
    x.sessions = {role: x.session(role) for role in USERS}
    with x.engine.begin() as conn:
        x.device_a = credentials.add_device(conn, w.insurer_a, w.branch_a, DEVICE_LABEL)
        x.device_b = credentials.add_device(conn, w.insurer_b, w.branch_b)
        x.client_a = credentials.add_client(conn, w.insurer_a)
        x.client_b = credentials.add_client(conn, w.insurer_b)
    x.rating = x.new_rating("理赔材料要求太多")
    with x.engine.begin() as conn:
        a, uid = x._insurer_user(conn)
        x.reply = replies.post(conn, insurer_id=a, user_id=uid, rating_id=x.rating, body="初版回复")
        replies.post(conn, insurer_id=a, user_id=uid, rating_id=x.rating, body="修改后的回复")
    x.new_takedown(SECRET_EXPLANATION)
    x.receipt = x.new_receipt(replied=True)
    x.other_receipt = x.new_receipt()
    x.visit_policy = f"V{uuid.uuid4().hex[:10].upper()}"
    x.new_visit(phone=VISIT_PHONE, policy=x.visit_policy)
    # A past quarter with ratings of both insurers, so a finished period can be published.
    at = datetime(2024, 5, 10, 10, tzinfo=CHINA)
    batch = [
        rating_in(w, insurer=ins, branch=br, staff_no=st, value=v, occurred_at=at,
                  idempotency_key=key(), text=None)
        for ins, br, st, v in ((w.insurer_a, w.branch_a, w.teller_a, 5),
                               (w.insurer_b, w.branch_b, w.teller_b, 2))
        for _ in range(3)
    ]  # fmt: skip
    record_batch(x.engine, batch)
    cp = ledger.checkpoint(x.engine, x.ledger_key)
    x.tree_size = cp.tree_size
    from portal import disclosure
    from portal.web.rankings_pages import parse_slice

    s = parse_slice({"period": "quarter", "p": "2024-Q2"})
    for scope in ("public", "industry", "regulator"):
        x.snapshots[scope] = disclosure.publish(
            x.engine, x.ledger_key, s, scope, x.user_ids["reg"], x.settings.ranking_method()
        )
