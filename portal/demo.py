"""`portal demo`: fictional insurers, branches, staff, users and ratings.

Ratings go through record_batch(), the same validation, normalisation and hashing as
every channel; then a checkpoint signs them into the ledger. Insurers' replies and a few
takedown requests (decided and pending) go through the same workflow functions the
pages use, so the inbox, the regulator's desk and the transparency page have content.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
from sqlalchemy import Engine, func, select

from moderation import takedowns
from portal import (
    accounts,
    demo_data,
    demo_phone,
    directory,
    ledger,
    policies,
    policies_in_force,
    replies,
)
from portal.canonical import utc
from portal.config import Settings
from portal.errors import Invalid
from portal.models import Insurer, Rating, RatingText, User
from portal.ratings import RatingIn, record_batch
from portal.secrets_files import ensure_key_file

BATCH = 1000
DEMO_PASSWORD = "gongping-demo"  # noqa: S105 - demo accounts only, printed for newcomers


def _directory(engine: Engine, rng: random.Random) -> list[demo_data.DemoStaff]:
    staff = demo_data.staff(rng)
    with engine.begin() as conn:
        for ins in demo_data.insurers():
            directory.add_insurer(conn, ins.code, ins.name)
        for b in demo_data.branches():
            directory.add_branch(conn, b.insurer_code, b.code, b.name, b.region)
        directory.import_staff(
            conn,
            [
                directory.StaffRow(s.insurer_code, s.branch_code, s.staff_no, s.name, s.role)
                for s in staff
            ],
        )
    return staff


DEMO_POLICIES = 5  # per insurer: DEMO-<CODE>-0001 .. with phones 1380000<code index><n>


def _policies(engine: Engine, settings: Settings) -> list[dict[str, str]]:
    """A few registered policies, so the verified web path can be tried (dev inbox)."""
    key = ensure_key_file(settings.phone_key_path)
    made = []
    with engine.begin() as conn:
        for i, ins in enumerate(demo_data.insurers()):
            iid = directory.insurer_id(conn, ins.code)
            for n in range(1, DEMO_POLICIES + 1):
                policy_no, phone = f"DEMO{ins.code}{n:04d}", f"+86138000{i:02d}{n:03d}"
                digest = policies.phone_hash(key, policies.normalise_phone(phone))
                policies.register(conn, iid, policy_no, digest)
                made.append({"insurer": ins.code, "policy_no": policy_no, "phone": phone})
    return made


def _users(engine: Engine) -> list[dict[str, str]]:
    first = demo_data.insurers()[0].code
    wanted = [
        ("regulator", "regulator", None),
        ("admin", "admin", None),
        (f"insurer-{first.lower()}", "insurer", first),
    ]
    made = []
    with engine.begin() as conn:
        for username, role, insurer in wanted:
            if conn.execute(select(User.id).where(User.username == username)).first() is None:
                accounts.add_user(conn, username, DEMO_PASSWORD, role, insurer)
            made.append({"username": username, "role": role, "password": DEMO_PASSWORD})
    return made


def _as_input(d: demo_data.DemoRating, i: int) -> RatingIn:
    source = {"counter": "demo:counter", "phone": "demo:phone", "web": "web"}[d.channel]
    return RatingIn(
        insurer=d.insurer_code,
        stage=d.stage,
        channel=d.channel,
        scale=d.scale,
        value=d.value,
        occurred_at=d.occurred_at,
        source=source,
        idempotency_key=f"demo-{i}",
        branch=d.branch_code,
        staff_no=d.staff_no,
        text=d.text,
        verified=d.verified,
    )


def _ratings(
    engine: Engine, staff: list[demo_data.DemoStaff], rng: random.Random, n: int, progress: bool
) -> int:
    end = datetime.now(UTC) - timedelta(minutes=10)
    stream = demo_data.ratings(rng, n, end, months=18, staff_list=staff)
    done = 0
    with click.progressbar(
        length=n, label="ratings", file=None if progress else _Null(), show_pos=True
    ) as bar:
        batch: list[RatingIn] = []
        for i, d in enumerate(stream):
            batch.append(_as_input(d, i))
            if len(batch) == BATCH or i == n - 1:
                done += len(record_batch(engine, batch, recorded_at=_recorded_at))
                bar.update(len(batch))
                batch = []
    return done


THANKS = (
    "感谢您的评价，我们会继续努力。",
    "谢谢您的认可，欢迎随时联系我们。",
)
SORRY = (
    "非常抱歉给您带来不便。我们已安排专人与您联系，核实情况后尽快处理。",
    "对于您反映的问题，我们深表歉意。相关网点已整改，并对工作人员进行了再培训。",
    "感谢您的反馈。经核查，您的理赔已于近日结案，如仍有疑问请致电客服热线。",
)
CHANGES = (
    "5000元以下的小额理赔改为3个工作日内赔付",
    "柜面增设叫号提醒，高峰时段加开窗口",
    "回访电话统一在工作时间拨打，不再晚间外呼",
)
TAKEDOWN_REASONS = (
    ("personal_data", "评价中包含我司员工的全名和手机号，请予以处理。", True),
    ("spam", "该评价为推销其他公司产品的广告内容，与服务无关。", True),
    ("defamation", "评价称我司拒赔是因为业务员私吞保费，与事实不符，已提供调查记录。", False),
)


ABUSIVE = (
    ("claim", 1, "理赔员就是个废物，材料交了三次还说不全，打电话过去直接挂断。"),
    ("renewal", 1, "续保的时候那个业务员跟个畜生一样，态度极差，以后再也不在这里买了。"),
)


def _abusive(engine: Engine, code: str) -> None:
    """Two reviews in words the screening flags, so the regulator's queue has work."""
    when = datetime.now(UTC) - timedelta(days=1)
    record_batch(engine, [
        RatingIn(insurer=code, stage=stage, channel="web", scale=5, value=value,
                 occurred_at=when, source="web", idempotency_key=f"demo-abusive-{i}",
                 text=text)
        for i, (stage, value, text) in enumerate(ABUSIVE)
    ])  # fmt: skip


def _moderation(engine: Engine, rng: random.Random) -> None:
    """Replies to a share of each insurer's ratings, and a few takedown requests."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        regulator = conn.execute(select(User.id).where(User.username == "regulator")).scalar()
        for i, ins in enumerate(demo_data.insurers()):
            iid = directory.insurer_id(conn, ins.code)
            username = f"insurer-{ins.code.lower()}"
            user = conn.execute(select(User.id).where(User.username == username)).scalar()
            user = user or accounts.add_user(conn, username, DEMO_PASSWORD, "insurer", ins.code)
            rows = conn.execute(
                select(Rating.id, Rating.recorded_at, Rating.bottom_box)
                .join(RatingText, RatingText.rating_id == Rating.id)
                .where(Rating.insurer_id == iid)
                .order_by(Rating.recorded_at)
            ).all()
            care = rng.uniform(0.25, 0.9)  # how diligently this insurer answers
            for r in rows:
                at = utc(r.recorded_at) + timedelta(days=rng.choice((0, 1, 1, 2, 3, 5, 8, 12)))
                if rng.random() > care * (1.0 if r.bottom_box else 0.4) or at > now:
                    continue
                change = rng.choice(CHANGES) if r.bottom_box and rng.random() < 0.3 else None
                replies.post(
                    conn, insurer_id=iid, user_id=user, rating_id=r.id, now=at,
                    body=rng.choice(SORRY if r.bottom_box else THANKS), change_made=change,
                )  # fmt: skip
            unhappy = [r for r in rows if r.bottom_box]
            _takedowns(conn, rng, iid, user, regulator, unhappy, now, pending_first=i < 3)


REJECTED = "评价属于客户对服务的主观感受，不构成诽谤，予以保留。"


def _takedowns(
    conn: Any, rng: random.Random, iid: int, user: int, regulator: int | None,
    unhappy: list[Any], now: datetime, pending_first: bool = False,
) -> None:  # fmt: skip
    """Two decided requests from long ago, and (for some insurers) one still pending."""
    old = [r for r in unhappy if utc(r.recorded_at) < now - timedelta(days=30)]
    recent = [r for r in unhappy if utc(r.recorded_at) > now - timedelta(days=10)]
    picked = rng.sample(old, min(len(old), 2))
    if recent and (pending_first or rng.random() < 0.5):
        picked.append(rng.choice(recent))
    for r, (reason, why, approve) in zip(picked, rng.sample(TAKEDOWN_REASONS, 3), strict=False):
        asked = min(utc(r.recorded_at) + timedelta(days=2), now)
        request_id = takedowns.request(
            conn, insurer_id=iid, user_id=user, rating_id=r.id, reason=reason, explanation=why,
            now=asked,
        )  # fmt: skip
        if r in old and regulator:
            takedowns.decide(
                conn, request_id=request_id, user_id=regulator,
                decision="approved" if approve else "rejected",
                note="" if approve else REJECTED, now=asked + timedelta(days=4),
            )  # fmt: skip


def _phone(engine: Engine, settings: Settings, staff: list[Any], seed: int) -> int:
    code = demo_data.insurers()[0].code
    with engine.connect() as conn:
        iid = directory.insurer_id(conn, code)
    key = ensure_key_file(settings.phone_key_path)
    return demo_phone.load(engine, key, code, iid, staff, seed)


def _policies_in_force(engine: Engine, rng: random.Random, months: int = 24) -> None:
    """Each insurer's policies in force for the last `months` months (the rankings'
    per-10,000 figures): a size of its own, growing a little each month."""
    today = datetime.now(UTC).date().replace(day=1)
    reports = []
    for ins in demo_data.insurers():
        size = rng.randint(50_000, 2_000_000)
        for k in range(months, -1, -1):
            i = today.year * 12 + today.month - 1 - k
            month = date(i // 12, i % 12 + 1, 1)
            reports.append(policies_in_force.Report(ins.code, month, int(size * (1 - 0.004 * k))))
    with engine.begin() as conn:
        policies_in_force.apply(conn, reports, "demo")


def _recorded_at(r: RatingIn) -> datetime:
    # Historical data: each rating was recorded a moment after it happened.
    return r.occurred_at + timedelta(seconds=45)


class _Null:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


def load(
    engine: Engine, settings: Settings, *, n: int, seed: int, progress: bool
) -> dict[str, Any]:
    """Load the demo once; a second run only adds the missing users and a checkpoint."""
    if settings.environment == "production":
        raise Invalid(
            "The demo (with its published passwords) is refused in production.",
            code="demo_in_production",
        )
    rng = random.Random(seed)
    with engine.connect() as conn:
        present = conn.execute(select(func.count()).select_from(Insurer)).scalar_one()
    added = 0
    example = None
    if not present:
        staff = _directory(engine, rng)
        extra = len(ABUSIVE) if n >= 100 else 0  # part of the N, so counts stay as asked
        if n >= 1000:  # the first insurer's call centre: calls, keypad ratings, visits
            extra += _phone(engine, settings, staff, seed)
        added = _ratings(engine, staff, rng, n - extra, progress)
        if extra:
            _abusive(engine, demo_data.insurers()[0].code)
            added += extra
        example = _policies(engine, settings)[0]
    users = _users(engine)
    if not present:
        _moderation(engine, rng)
        _policies_in_force(engine, rng)
    key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    cp = ledger.checkpoint(engine, key)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(Rating)).scalar_one()
        size = cp.tree_size if cp else (ledger.latest(conn).tree_size if ledger.latest(conn) else 0)
    return {
        "ratings_added": added,
        "ratings_total": total,
        "tree_size": size,
        "already_loaded": bool(present),
        "users": users,
        "example_policy": example,
    }


def summary(result: dict[str, Any]) -> str:
    lines = [
        "demo data already present: nothing new loaded"
        if result["already_loaded"]
        else f"loaded {result['ratings_added']} demo ratings",
        f"ratings in database: {result['ratings_total']}, signed in ledger: {result['tree_size']}",
        "demo logins (user / password):",
    ]
    lines += [f"  {u['username']} / {u['password']}  ({u['role']})" for u in result["users"]]
    if result.get("example_policy"):
        p = result["example_policy"]
        lines.append(
            f"demo policy for a verified web review: {p['insurer']} {p['policy_no']} "
            f"phone {p['phone']} (codes appear at /dev/inbox)"
        )
    return "\n".join(lines)
