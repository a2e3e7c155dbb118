"""One-time codes and the web channel's submissions: hashed, short-lived, single-use
codes with limits that hold under parallel requests, and one review per policy and
stage per 30 days, also under parallel submissions. Refusals store nothing."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, func, select, update

from portal import policies, verification
from portal.channels import web
from portal.channels.web import FormErrors, WebForm
from portal.directory import insurer_id
from portal.errors import Conflict, Invalid, PortalError, RateLimited
from portal.models import Rating, VerificationCode, WebReview
from portal.ratings import CHINA, day_of, record
from portal.verification import Customer
from tests.factories import World, counts, make_world, rating_in

KEY = b"\x05" * 32
T = TypeVar("T")


class Inbox:
    """A sender that keeps what it was asked to send (thread-safe)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def send(self, phone: str, body: str) -> None:
        if self.fail:
            raise ConnectionError("gateway down")
        with self.lock:
            self.sent.append((phone, body))

    def code_for(self, phone: str) -> str:
        body = next(b for p, b in reversed(self.sent) if p == phone)
        return re.search(r"\b\d{6}\b", body).group(0)


def new_ip() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


def new_phone() -> str:
    return "+86139" + f"{uuid.uuid4().int % 10**8:08d}"


def new_customer(engine: Engine, world: World | None = None) -> tuple[Customer, str]:
    """A registered policy with its own phone; returns the customer and the policy no."""
    world = world or make_world(engine)
    phone, number = new_phone(), f"V{uuid.uuid4().hex[:10].upper()}"
    digest = policies.phone_hash(KEY, phone)
    with engine.begin() as conn:
        policies.register(conn, insurer_id(conn, world.insurer_a), number, digest)
        customer = verification.identify(conn, KEY, world.insurer_a, number, phone)
    return customer, number


def ask(engine: Engine, customer: Customer, inbox: Inbox, ip: str | None = None) -> str:
    verification.request_code(engine, inbox, KEY, customer, ip or new_ip(), "code {}".format)
    return inbox.code_for(customer.phone)


def codes_of(engine: Engine, **where: Any) -> list[Any]:
    ((col, value),) = where.items()
    with engine.connect() as conn:
        return conn.execute(
            select(VerificationCode).where(getattr(VerificationCode, col) == value)
        ).all()


def parallel(n: int, fn: Callable[[int], T]) -> list[T | PortalError]:
    """Run fn(0..n-1) at once (a barrier lines the threads up); errors are returned."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | PortalError:
        barrier.wait()
        try:
            return fn(i)
        except PortalError as err:
            return err

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_a_code_is_random_hashed_and_lives_ten_minutes(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    inbox = Inbox()
    code = ask(engine, customer, inbox)
    (row,) = codes_of(engine, policy_id=customer.policy_id)
    assert re.fullmatch(r"\d{6}", code) and code not in row.code_hash
    assert row.code_hash == verification.code_hash(KEY, customer.policy_id, code)
    assert row.phone_hash == customer.phone_hash and row.used_at is None and row.attempts == 0
    lifetime = row.expires_at - row.created_at
    assert lifetime == timedelta(minutes=10)


def test_the_right_code_works_once(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    code = ask(engine, customer, Inbox())
    code_id = verification.check_code(engine, KEY, customer, code)
    with engine.begin() as conn:
        verification.consume(conn, code_id, datetime.now(UTC))
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, code)
    assert err.value.code == "code_used" and err.value.field == "code"
    with engine.begin() as conn, pytest.raises(Invalid):
        verification.consume(conn, code_id, datetime.now(UTC))  # a race loser


def test_five_wrong_tries_kill_the_code(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    code = ask(engine, customer, Inbox())
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    lefts = []
    for _ in range(4):
        with pytest.raises(Invalid) as err:
            verification.check_code(engine, KEY, customer, wrong)
        lefts.append(err.value.params["left"])
    assert lefts == [4, 3, 2, 1]
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, wrong)
    assert err.value.code == "too_many_tries"
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, code)  # even the right one now
    assert err.value.code == "too_many_tries"
    assert [r.attempts for r in codes_of(engine, policy_id=customer.policy_id)] == [5]


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "12\x003456"])
def test_malformed_codes_are_refused_without_spending_a_try(engine: Engine, code: str) -> None:
    customer, _ = new_customer(engine)
    ask(engine, customer, Inbox())
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, code)
    assert err.value.code == "invalid_code"
    assert codes_of(engine, policy_id=customer.policy_id)[0].attempts == 0


def test_full_width_digits_are_accepted(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    code = ask(engine, customer, Inbox())
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)  # what a Chinese IME may type
    assert verification.check_code(engine, KEY, customer, f" {full_width} ") > 0


def test_expired_missing_and_retired_codes(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, "123456")
    assert err.value.code == "no_code"
    inbox = Inbox()
    old = ask(engine, customer, inbox)
    new = ask(engine, customer, inbox)
    if old != new:  # asking again retires the older code
        with pytest.raises(Invalid) as err:
            verification.check_code(engine, KEY, customer, old)
        assert err.value.code == "wrong_code"
    with engine.begin() as conn:
        conn.execute(
            update(VerificationCode)
            .where(VerificationCode.policy_id == customer.policy_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(Invalid) as err:
        verification.check_code(engine, KEY, customer, new)
    assert err.value.code == "code_expired"


def test_the_sixth_code_for_a_phone_is_refused_and_stores_nothing(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    inbox = Inbox()
    for _ in range(verification.MAX_PER_PHONE):
        ask(engine, customer, inbox)
    with pytest.raises(RateLimited) as err:
        ask(engine, customer, inbox)
    assert err.value.field == "phone" and 0 < err.value.retry_after <= 3600
    assert 1 <= err.value.params["minutes"] <= 60
    assert len(codes_of(engine, phone_hash=customer.phone_hash)) == verification.MAX_PER_PHONE
    assert len(inbox.sent) == verification.MAX_PER_PHONE


def test_codes_per_ip_are_limited(engine: Engine) -> None:
    world, ip, inbox = make_world(engine), new_ip(), Inbox()
    for _ in range(verification.MAX_PER_IP):
        ask(engine, new_customer(engine, world)[0], inbox, ip)
    with pytest.raises(RateLimited) as err:
        ask(engine, new_customer(engine, world)[0], inbox, ip)
    assert err.value.field is None
    assert len(codes_of(engine, ip=ip)) == verification.MAX_PER_IP


def test_parallel_code_requests_for_one_phone_never_exceed_the_limit(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    inbox = Inbox()
    results = parallel(12, lambda i: ask(engine, customer, inbox))
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 12 - verification.MAX_PER_PHONE
    assert len(codes_of(engine, phone_hash=customer.phone_hash)) == verification.MAX_PER_PHONE


def test_parallel_code_requests_from_one_ip_never_exceed_the_limit(engine: Engine) -> None:
    world, ip, inbox = make_world(engine), new_ip(), Inbox()
    customers = [new_customer(engine, world)[0] for _ in range(25)]
    results = parallel(25, lambda i: ask(engine, customers[i], inbox, ip))
    assert sum(isinstance(r, RateLimited) for r in results) == 25 - verification.MAX_PER_IP
    assert len(codes_of(engine, ip=ip)) == verification.MAX_PER_IP


def test_parallel_wrong_guesses_get_five_tries_in_all(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    code = ask(engine, customer, Inbox())
    guesses = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(12)]
    results = parallel(12, lambda i: verification.check_code(engine, KEY, customer, guesses[i]))
    assert all(isinstance(r, Invalid) for r in results)
    assert sum(r.code == "wrong_code" for r in results) <= verification.MAX_TRIES - 1
    assert codes_of(engine, policy_id=customer.policy_id)[0].attempts == verification.MAX_TRIES


def test_a_failed_send_is_reported_and_still_counts(engine: Engine) -> None:
    customer, _ = new_customer(engine)
    with pytest.raises(verification.SendFailed) as err:
        verification.request_code(engine, Inbox(fail=True), KEY, customer, new_ip(), str)
    assert err.value.status == 503
    assert len(codes_of(engine, phone_hash=customer.phone_hash)) == 1


# ---- the web channel adapter: submissions ------------------------------------------


def form(world: World, **fields: str) -> WebForm:
    base = dict(insurer=world.insurer_a, stage="claim", score="4", nonce=web.new_nonce())
    return WebForm(**(base | fields))


def verified_form(engine: Engine, inbox: Inbox, **fields: str) -> tuple[WebForm, Customer]:
    world = make_world(engine)
    customer, number = new_customer(engine, world)
    code = ask(engine, customer, inbox)
    return form(world, policy_no=number, phone=customer.phone, code=code, **fields), customer


def table_counts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        extra = {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (WebReview, VerificationCode)
        }
        used = conn.execute(
            select(func.count())
            .select_from(VerificationCode)
            .where(VerificationCode.used_at.is_not(None))
        ).scalar_one()
    return counts(engine) | extra | {"codes_used": used}


def review_of(engine: Engine, rating_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(WebReview, Rating.verified, Rating.source)
            .join(Rating, Rating.id == WebReview.rating_id)
            .where(WebReview.rating_id == rating_id)
        ).one()


def test_an_unverified_review_is_stored_as_such(engine: Engine) -> None:
    f = form(make_world(engine), text="  服务一般  ", branch="TA-ZZ01")
    receipt = web.submit(engine, f, KEY)
    row = review_of(engine, receipt.rating_id)
    assert row.verified is False and row.policy_id is None and row.source == "web"
    assert row.receipt_token_hash == hashlib.sha256(f.nonce.encode()).hexdigest()
    assert receipt.url == f"/receipt/{receipt.rating_id}?t={f.nonce}"
    with engine.connect() as conn:
        assert web.receipt(conn, receipt.rating_id, f.nonce)["body"] == "服务一般"


def test_a_verified_review_uses_up_its_code(engine: Engine) -> None:
    f, customer = verified_form(engine, Inbox())
    receipt = web.submit(engine, f, KEY)
    row = review_of(engine, receipt.rating_id)
    assert row.verified is True and row.policy_id == customer.policy_id
    assert codes_of(engine, policy_id=customer.policy_id)[0].used_at is not None


def test_a_double_submit_stores_one_rating(engine: Engine) -> None:
    f, _ = verified_form(engine, Inbox())
    first = web.submit(engine, f, KEY)
    before = table_counts(engine)
    again = web.submit(engine, f, KEY)
    assert again.rating_id == first.rating_id and again.replayed and again.url == first.url
    assert table_counts(engine) == before


@pytest.mark.parametrize("n", [3, 8])
def test_parallel_double_submits_store_one_rating(engine: Engine, n: int) -> None:
    """Same form sent n times at once. Up to 5 (a code's tries) all get the receipt;
    beyond that a late one may be told the code is spent. One rating in every case."""
    f, _ = verified_form(engine, Inbox())
    before = table_counts(engine)
    results = parallel(n, lambda i: web.submit(engine, f, KEY))
    receipts = {r.rating_id for r in results if isinstance(r, web.WebReceipt)}
    refused = [r.code for r in results if isinstance(r, PortalError)]
    assert len(receipts) == 1
    assert (
        refused == []
        if n <= verification.MAX_TRIES
        else set(refused) <= {"too_many_tries", "code_used"}
    )
    after = table_counts(engine)
    assert after["ratings"] == before["ratings"] + 1
    assert after["web_reviews"] == before["web_reviews"] + 1


def test_parallel_submissions_for_one_policy_and_stage_store_one(engine: Engine) -> None:
    f, customer = verified_form(engine, Inbox())
    forms = [WebForm(**{**f.__dict__, "nonce": web.new_nonce()}) for _ in range(5)]
    before = table_counts(engine)
    results = parallel(5, lambda i: web.submit(engine, forms[i], KEY))
    stored = [r for r in results if isinstance(r, web.WebReceipt)]
    refused = {r.code for r in results if isinstance(r, PortalError)}
    assert len(stored) == 1 and refused <= {"rated_recently", "code_used", "too_many_tries"}
    after = table_counts(engine)
    assert after["ratings"] == before["ratings"] + 1
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count())
            .select_from(WebReview)
            .where(WebReview.policy_id == customer.policy_id)
        ).scalar_one()
    assert n == 1


def old_review(engine: Engine, policy_id: int, stage: str, days_ago: int) -> None:
    """A review of this policy `days_ago` China calendar days ago (at noon)."""
    when = datetime.combine(day_of(datetime.now(UTC)) - timedelta(days=days_ago), time(12), CHINA)

    def within(conn: Any, row: dict[str, Any]) -> None:
        conn.execute(
            WebReview.__table__.insert().values(
                rating_id=row["id"],
                policy_id=policy_id,
                stage=stage,
                receipt_token_hash="0" * 64,
                created_at=when.astimezone(UTC),
            )
        )

    record(engine, rating_in(make_world(engine), stage=stage), within=within)


def test_one_review_per_policy_and_stage_per_thirty_days(engine: Engine) -> None:
    inbox = Inbox()
    f, customer = verified_form(engine, inbox)
    old_review(engine, customer.policy_id, "claim", days_ago=29)
    before = table_counts(engine)
    with pytest.raises(Conflict) as err:
        web.submit(engine, f, KEY)
    today = day_of(datetime.now(UTC))
    assert err.value.code == "rated_recently" and err.value.field == "stage"
    assert err.value.params == {
        "last": (today - timedelta(days=29)).isoformat(),
        "next": (today + timedelta(days=1)).isoformat(),
    }
    assert table_counts(engine) == before
    # The rule is only told to someone who proved the phone with the right code (one try
    # counted); the code itself stays unused, so another stage can still be rated.
    assert codes_of(engine, policy_id=customer.policy_id)[0].attempts == 1
    renewal = web.submit(engine, WebForm(**{**f.__dict__, "stage": "renewal"}), KEY)
    assert review_of(engine, renewal.rating_id).stage == "renewal"


def test_on_the_thirty_first_day_the_policy_may_rate_again(engine: Engine) -> None:
    f, customer = verified_form(engine, Inbox())
    old_review(engine, customer.policy_id, "claim", days_ago=30)
    old_review(engine, customer.policy_id, "claim", days_ago=45)
    receipt = web.submit(engine, f, KEY)
    assert review_of(engine, receipt.rating_id).policy_id == customer.policy_id


def test_several_problems_are_reported_at_once_and_nothing_is_stored(engine: Engine) -> None:
    world = make_world(engine)
    before = table_counts(engine)
    bad = form(world, score="6", stage="lunch", text="x" * 2001, staff_no="a b", phone="123")
    with pytest.raises(FormErrors) as err:
        web.submit(engine, bad, KEY)
    fields = {e.field: e.code for e in err.value.errors}
    assert fields == {
        "score": "score_out_of_range",
        "stage": "invalid_stage",
        "text": "text_too_long",
        "staff_no": "invalid_staff_no",
        "policy_no": "invalid_policy_no",
        "phone": "invalid_phone",
        "code": "invalid_code",
    }
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"score": "0"}, "score_out_of_range"),
        ({"score": ""}, "missing_score"),
        ({"text": "a\x00b"}, "control_character"),
        ({"insurer": "T\x00A"}, "unknown_insurer"),
        ({"insurer": "NOPE"}, "unknown_insurer"),
        ({"branch": "TB-CS01"}, "unknown_branch"),
        ({"staff_no": "NOBODY"}, "unknown_staff"),
        ({"nonce": "forged"}, "bad_nonce"),
        (
            {"nonce": f"{int(datetime.now(UTC).timestamp()) - 90000:010d}.{'a' * 32}"},
            "form_expired",
        ),
    ],
)
def test_bad_input_stores_nothing(engine: Engine, fields: dict[str, str], code: str) -> None:
    world = make_world(engine)
    before = table_counts(engine)
    with pytest.raises(PortalError) as err:
        web.submit(engine, form(world, **fields), KEY)
    codes = [e.code for e in getattr(err.value, "errors", [err.value])]
    assert code in codes
    assert table_counts(engine) == before


def test_unknown_policy_and_wrong_phone_send_no_code(engine: Engine) -> None:
    world = make_world(engine)
    customer, number = new_customer(engine, world)
    before = table_counts(engine)
    messages = []
    for policy_no, phone in [(number, new_phone()), ("NO-SUCH-POLICY", customer.phone)]:
        f = form(world, policy_no=policy_no, phone=phone)
        with pytest.raises(Invalid) as err:
            web.send_code(engine, f, KEY, Inbox(), new_ip(), str)
        messages.append((err.value.code, err.value.field, str(err.value)))
    assert messages[0] == messages[1]
    assert table_counts(engine) == before


def test_the_thirty_day_rule_is_not_told_without_the_right_code(engine: Engine) -> None:
    """An insurer holds every policy number and phone: without the code it must not
    learn when a customer last rated (and so who wrote which review)."""
    inbox = Inbox()
    f, customer = verified_form(engine, inbox)
    old_review(engine, customer.policy_id, "claim", days_ago=3)
    wrong = WebForm(**{**f.__dict__, "code": "000000" if f.code != "000000" else "111111"})
    with pytest.raises(Exception) as err:  # noqa: PT011 - any refusal, but not this one
        web.submit(engine, wrong, KEY)
    codes = {e.code for e in getattr(err.value, "errors", [err.value])}
    assert codes and "rated_recently" not in codes
