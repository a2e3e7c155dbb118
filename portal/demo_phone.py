"""Demo phone traffic for the first demo insurer: what its call centre would have sent.

Everything goes through the phone channel's own functions (call reports, keypad ratings,
the return-visit import and attempts), so the demo obeys the same rules: survey offers
per call agent (one agent rarely offers the survey), new-policy and claim return visits
with attempts inside the call windows, three unanswered attempts handing a visit back,
answered visits rated on the keypad, and three customers sharing one phone number.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, select

from portal import credentials, visits
from portal.channels import phone
from portal.demo_data import DemoStaff
from portal.errors import PortalError
from portal.models import ApiClient, VisitTask
from portal.ratings import CHINA, day_of

WINDOW = time(11, 0)  # inside the weekday (09:30-12:00) and weekend (10:30-12:30) windows


def _client(engine: Engine, code: str) -> Any:
    with engine.begin() as conn:
        client_id, _ = credentials.add_client(conn, code)
        return conn.execute(select(ApiClient).where(ApiClient.client_id == client_id)).one()


def _calls(engine: Engine, client: Any, agents: list[DemoStaff], rng: random.Random) -> int:
    """Ended calls of the last 20 days; a share of the offered surveys rated."""
    now, rated = datetime.now(UTC), 0
    for i, agent in enumerate(agents):
        offers = 0.35 if i == 0 else rng.uniform(0.75, 0.95)  # the first one picks callers
        for n in range(rng.randint(25, 40)):
            ended = now - timedelta(days=rng.uniform(0.2, 20))
            hung_up = rng.random() < 0.08
            offered = not hung_up and rng.random() < offers
            call_id = f"demo-call-{agent.staff_no}-{n}"
            call = phone.CallReport(call_id, agent.staff_no, offered, hung_up, ended)
            phone.report_call(engine, client, call)
            if offered and rng.random() < 0.6:
                digits = str(rng.choices((5, 4, 3, 2, 1), (50, 25, 12, 6, 7))[0])
                phone.rate(engine, client, phone.KeypadRating(
                    call_id, "hotline", rng.choice(("issuance", "renewal", "claim")), digits,
                    5, ended, agent_no=agent.staff_no,
                ))  # fmt: skip
                rated += 1
    return rated


def _visit_rows(code: str, staff: list[DemoStaff], rng: random.Random) -> str:
    """The CSV an insurer uploads: new policies of last week, claims closed 2-3 weeks ago."""
    today = datetime.now(CHINA).date()
    agents = [s for s in staff if s.role == "agent"][:6]
    adjusters = [s for s in staff if s.role == "adjuster"][:4]
    lines = ["insurer,kind,policy_no,phone,staff_no,date,customer"]
    for n in range(40):
        kind, who, days = (
            ("new_policy", rng.choice(agents), rng.randint(1, 6))
            if n < 26
            else ("claim", rng.choice(adjusters), rng.randint(15, 24))
        )
        number = (
            "+86 137 0000 7777" if n in (3, 9, 15) else f"+86 139{rng.randint(0, 99999999):08d}"
        )
        lines.append(
            f"{code},{kind},{code}P2026{n:06d},{number},{who.staff_no},"
            f"{today - timedelta(days=days)},C{n:05d}"
        )
    return "\n".join(lines) + "\n"


def _attempts(engine: Engine, client: Any, insurer_id: int, rng: random.Random) -> int:
    """Past attempts, one a day at 11:00 inside the due days; rate the answered ones."""
    source, now, rated = phone.source_of(client), datetime.now(UTC), 0
    with engine.connect() as conn:
        tasks = conn.execute(
            select(VisitTask).where(VisitTask.insurer_id == insurer_id).order_by(VisitTask.id)
        ).all()
    for task in tasks:
        plan = rng.choice(("answered", "answered", "unreachable", "none", "none"))
        if plan == "none":
            continue
        day, tries = task.due_from, 0
        while day < day_of(now) and tries < 3:
            at = datetime.combine(day, WINDOW, CHINA)
            outcome = "answered" if plan == "answered" else "no_answer"
            try:
                with engine.begin() as conn:
                    visits.record_attempt(conn, insurer_id, task.id, outcome, at, source)
                tries += 1
            except PortalError:  # a holiday has no call window: try the next day
                day += timedelta(days=1)
                continue
            if outcome == "answered":
                stage = "issuance" if task.kind == "new_policy" else "claim"
                digits = str(rng.choices((5, 4, 3, 2, 1), (45, 25, 12, 8, 10))[0])
                phone.rate(engine, client, phone.KeypadRating(
                    f"demo-visit-{task.id}", "return_visit", stage, digits, 5,
                    at + timedelta(minutes=4), policy_no=task.policy_no,
                ))  # fmt: skip
                rated += 1
                break
            day += timedelta(days=1)
    return rated


def load(
    engine: Engine, key: bytes, code: str, insurer_id: int, staff: list[DemoStaff], seed: int
) -> int:
    """The phone demo for one insurer; returns how many keypad ratings it recorded."""
    rng = random.Random(seed)
    mine = [s for s in staff if s.insurer_code == code]
    client = _client(engine, code)
    rated = _calls(engine, client, [s for s in mine if s.role == "call_agent"], rng)
    today = datetime.now(CHINA).date()
    with engine.connect() as conn:
        rows, report = visits.check_csv(conn, _visit_rows(code, mine, rng), key, today)
    with engine.begin() as conn:
        visits.apply(conn, rows, today, report)
    return rated + _attempts(engine, client, insurer_id, rng)
