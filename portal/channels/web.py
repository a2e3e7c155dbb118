"""Web channel (网络): the rating form, mapped to one record() call.

A reviewer may prove they are a customer (policy number + mobile number + one-time
code). Then the rating is verified, tied to the policy and limited to one per policy
and stage per 30 days, checked inside the rating's own transaction. Without proof the
rating is stored as unverified (shown, but left out of rankings).

The form carries a hidden nonce made when it was shown: its hash is the idempotency
key (a double submit stores one rating; the same form sent again with other answers
is refused with 409), the time in it is the rating's occurred_at (so a resubmission
has the same fingerprint), and the nonce itself is the secret of the receipt link
(only its SHA-256 is stored), so a replay finds the same receipt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, func, select

from portal import verification
from portal.canonical import utc
from portal.credentials import token_hash
from portal.db import reading
from portal.errors import Conflict, Invalid, NotFound, PortalError
from portal.models import (
    STAGES,
    Branch,
    Insurer,
    Policy,
    Rating,
    RatingText,
    Staff,
    WebReview,
)
from portal.policies import normalise_phone, normalise_policy_no
from portal.ratings import CHINA, RatingIn, Within, clean_text, day_of, fingerprint, record
from portal.sms import Sender
from portal.verification import CodeSent, Customer

SOURCE = "web"
REPEAT_DAYS = 30  # one review per policy and stage per 30 calendar days (China time)
FORM_MAX_AGE = timedelta(days=1)
REVIEWS: Any = WebReview.__table__
_NONCE = re.compile(r"^([0-9]{10})\.([A-Za-z0-9_-]{32})$")
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_INSURER = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
RATING_ID = re.compile(r"^[0-9a-f]{32}$")
T = TypeVar("T")


@dataclass(frozen=True)
class WebForm:
    """The form's fields as typed: strings, kept as they are to show them again."""

    insurer: str = ""
    stage: str = ""
    score: str = ""
    text: str = ""
    branch: str = ""
    staff_no: str = ""
    policy_no: str = ""
    phone: str = ""
    code: str = ""
    nonce: str = ""

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> WebForm:
        values = {f.name: fields.get(f.name, "") for f in dataclasses.fields(cls)}
        return cls(**{k: v if isinstance(v, str) else "" for k, v in values.items()})

    @property
    def wants_proof(self) -> bool:
        """Any verification field filled in means the visitor meant to verify."""
        return any(v.strip() for v in (self.policy_no, self.phone, self.code))


class FormErrors(Invalid):
    """Several field errors at once, so the visitor can fix them in one go."""

    def __init__(self, errors: list[PortalError]) -> None:
        first = errors[0]
        super().__init__(first.message, field=first.field, code=first.code, **first.params)
        self.status = max(e.status for e in errors)
        self.errors = errors


@dataclass(frozen=True)
class WebReceipt:
    rating_id: str
    token: str
    replayed: bool = False

    @property
    def url(self) -> str:
        return f"/receipt/{self.rating_id}?t={quote(self.token, safe='')}"


def new_nonce(now: datetime | None = None) -> str:
    shown = int((now or datetime.now(UTC)).timestamp())
    return f"{shown:010d}.{secrets.token_urlsafe(24)}"


def idempotency_key(nonce: str) -> str:
    # Not the nonce itself: the ratings table must not hold the receipt's secret.
    return "form-" + hashlib.sha256(f"idempotency:{nonce}".encode()).hexdigest()


def _raise(errors: list[PortalError]) -> NoReturn:
    """One problem is raised as itself (a Conflict stays a Conflict), several together."""
    if len(errors) == 1:
        raise errors[0]
    raise FormErrors(errors)


def _collect(errors: list[PortalError], check: Callable[[], T]) -> T | None:
    try:
        return check()
    except FormErrors as err:
        errors.extend(err.errors)
    except PortalError as err:
        errors.append(err)
    return None


def form_time(nonce: str, now: datetime, skew: int) -> datetime:
    """When the form was shown; it becomes the rating's occurred_at."""
    match = _NONCE.match(nonce)
    shown = datetime.fromtimestamp(int(match.group(1)), UTC) if match else None
    if shown is None or shown > now + timedelta(seconds=skew):
        raise Invalid("The form is incomplete. Reload the page and try again.", code="bad_nonce")
    if now - shown > FORM_MAX_AGE:
        raise Invalid(
            "This form was open for more than a day. Check your rating and send it again.",
            code="form_expired",
        )
    return shown


def parse_score(raw: str) -> int:
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise Invalid("Choose 1 to 5 stars.", field="score", code="missing_score")
    if not 1 <= int(value) <= 5:
        raise Invalid(
            "Score %(value)s is out of range: use 1 to %(scale)s.",
            field="score",
            code="score_out_of_range",
            value=int(value),
            scale=5,
        )
    return int(value)


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise Invalid("Choose the service you are rating.", field="stage", code="invalid_stage")
    return stage


def check_insurer(code: str) -> str:
    """Only a well-formed code reaches a query (PostgreSQL refuses NUL bytes, say)."""
    value = code.strip().upper()
    if not _INSURER.match(value):
        raise Invalid(
            "Unknown insurer “%(value)s”.",
            field="insurer",
            code="unknown_insurer",
            value=value[:16].replace("\x00", ""),
        )
    return value


def _subject(raw: str, field: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if _SUBJECT.match(value):
        return value
    if field == "branch":
        raise Invalid("Choose a branch from the list.", field="branch", code="invalid_branch")
    raise Invalid(
        "A staff number has 1 to 32 letters, digits, - or _.",
        field="staff_no",
        code="invalid_staff_no",
    )


def _proof_fields(form: WebForm) -> None:
    """All three verification fields are needed once any of them is filled in."""
    errors: list[PortalError] = []
    _collect(errors, lambda: normalise_policy_no(form.policy_no))
    _collect(errors, lambda: normalise_phone(form.phone))
    _collect(errors, lambda: verification.check_format(form.code))
    if errors:
        _raise(errors)


def check(form: WebForm, now: datetime, skew: int) -> RatingIn:
    """Every check that needs no database, all reported at once."""
    errors: list[PortalError] = []
    insurer = _collect(errors, lambda: check_insurer(form.insurer))
    score = _collect(errors, lambda: parse_score(form.score))
    _collect(errors, lambda: check_stage(form.stage))
    _collect(errors, lambda: clean_text(form.text))
    branch = _collect(errors, lambda: _subject(form.branch, "branch"))
    staff_no = _collect(errors, lambda: _subject(form.staff_no, "staff_no"))
    shown = _collect(errors, lambda: form_time(form.nonce, now, skew))
    if form.wants_proof:
        _collect(errors, lambda: _proof_fields(form))
    if errors or insurer is None or score is None or shown is None:
        _raise(errors)
    return RatingIn(
        insurer=insurer,
        stage=form.stage,
        channel="web",
        scale=5,
        value=score,
        occurred_at=shown,
        source=SOURCE,
        idempotency_key=idempotency_key(form.nonce),
        branch=branch,
        staff_no=staff_no,
        text=form.text,
        verified=form.wants_proof,
    )


def check_repeat(conn: Connection, policy_id: int, stage: str, now: datetime) -> None:
    """One review per policy and stage per 30 days; say from which date it may be again."""
    first_day = day_of(now) - timedelta(days=REPEAT_DAYS - 1)
    since = datetime.combine(first_day, time(), CHINA).astimezone(UTC)
    last = conn.execute(
        select(func.max(WebReview.created_at)).where(
            WebReview.policy_id == policy_id,
            WebReview.stage == stage,
            WebReview.created_at >= since,
        )
    ).scalar()
    if last is None:
        return
    rated = day_of(utc(last))
    raise Conflict(
        "You already rated this service for this policy on %(last)s. You can rate it "
        "again from %(next)s.",
        field="stage",
        code="rated_recently",
        last=rated.isoformat(),
        next=(rated + timedelta(days=REPEAT_DAYS)).isoformat(),
    )


def _insurer_id(conn: Connection, code: str) -> int:
    insurer_id = conn.execute(select(Insurer.id).where(Insurer.code == code)).scalar()
    if insurer_id is None:
        raise Invalid(
            "Unknown insurer “%(value)s”.", field="insurer", code="unknown_insurer", value=code
        )
    return int(insurer_id)


def _subjects(conn: Connection, rating: RatingIn) -> None:
    """Branch and staff checked before a code try is spent on a form that would fail."""
    insurer_id = _insurer_id(conn, rating.insurer)
    errors: list[PortalError] = []
    branch = select(Branch.id).where(Branch.insurer_id == insurer_id, Branch.code == rating.branch)
    if rating.branch and not conn.execute(branch).first():
        errors.append(
            Invalid("Choose a branch from the list.", field="branch", code="unknown_branch")
        )
    staff = select(Staff.id).where(
        Staff.insurer_id == insurer_id, Staff.staff_no == rating.staff_no, Staff.active
    )
    if rating.staff_no and not conn.execute(staff).first():
        errors.append(
            Invalid(
                "This insurer has no staff member with number “%(staff_no)s”.",
                field="staff_no",
                code="unknown_staff",
                staff_no=rating.staff_no,
            )
        )
    if errors:
        _raise(errors)


def _prepare(conn: Connection, form: WebForm, rating: RatingIn, key: bytes) -> Customer | None:
    """Checks that read the database, before any code try is spent."""
    errors: list[PortalError] = []
    _collect(errors, lambda: _subjects(conn, rating))
    customer = None
    if form.wants_proof and not any(e.field == "insurer" for e in errors):
        customer = _collect(
            errors,
            lambda: verification.identify(conn, key, rating.insurer, form.policy_no, form.phone),
        )
    # The 30-day rule is checked only inside the rating's transaction, after the code
    # proved the phone: answering it here would tell anyone holding a policy number and
    # phone (the insurer does) when that customer last rated.
    if errors:
        _raise(errors)
    return customer


def _within(customer: Customer | None, code_id: int | None, token: str) -> Within:
    """The web channel's rows, in the rating's transaction: a refusal stores nothing."""

    def within(conn: Connection, row: dict[str, Any]) -> None:
        policy_id = None
        if customer is not None and code_id is not None:
            # Serialise reviews of one policy (PostgreSQL row lock; SQLite's write lock
            # is already held), so the 30-day rule holds under parallel submissions.
            conn.execute(select(Policy.id).where(Policy.id == customer.policy_id).with_for_update())
            check_repeat(conn, customer.policy_id, row["stage"], row["recorded_at"])
            verification.consume(conn, code_id, row["recorded_at"])
            policy_id = customer.policy_id
        conn.execute(
            REVIEWS.insert().values(
                rating_id=row["id"],
                policy_id=policy_id,
                stage=row["stage"],
                receipt_token_hash=token_hash(token),
                created_at=row["recorded_at"],
            )
        )

    return within


def _replay(engine: Engine, rating: RatingIn, nonce: str) -> WebReceipt | None:
    """This form was stored already (a double submit): answer with that receipt. The
    same form sent again with other answers is refused (409), as on every channel: the
    first rating stands, and the visitor is not shown its receipt as if it were theirs."""
    with reading(engine) as conn:
        stored = conn.execute(
            select(Rating.id, Rating.fingerprint).where(
                Rating.source == SOURCE, Rating.idempotency_key == rating.idempotency_key
            )
        ).first()
    if stored is None:
        return None
    if stored.fingerprint != fingerprint(rating, clean_text(rating.text), rating.occurred_at):
        raise Conflict(
            "This form was already sent with other answers, and that rating is stored. "
            "To rate again, reload the page.",
            code="idempotency_conflict",
        )
    return WebReceipt(stored.id, nonce, replayed=True)


def submit(engine: Engine, form: WebForm, key: bytes, skew: int = 120) -> WebReceipt:
    """Check, verify (when asked), record. Raises PortalError (FormErrors for several)."""
    rating = check(form, datetime.now(UTC), skew)
    done = _replay(engine, rating, form.nonce)
    if done is not None:
        return done
    try:
        return _verify_and_record(engine, form, rating, key, skew)
    except PortalError:
        # The same form sent twice at once: the loser finds the code used, the policy
        # rated or its key taken. The winner's receipt is the answer to both.
        done = _replay(engine, rating, form.nonce)
        if done is None:
            raise
        return done


def _verify_and_record(
    engine: Engine, form: WebForm, rating: RatingIn, key: bytes, skew: int
) -> WebReceipt:
    with reading(engine) as conn:
        customer = _prepare(conn, form, rating, key)
    code_id = verification.check_code(engine, key, customer, form.code) if customer else None
    receipt = record(engine, rating, skew=skew, within=_within(customer, code_id, form.nonce))
    return WebReceipt(receipt.id, form.nonce, receipt.replayed)


def send_code(
    engine: Engine,
    form: WebForm,
    key: bytes,
    sender: Sender,
    ip: str,
    compose: Callable[[str], str],
) -> CodeSent:
    """The "send code" button: check the policy and phone, then text a fresh code."""
    errors: list[PortalError] = []
    insurer = _collect(errors, lambda: check_insurer(form.insurer))
    _collect(errors, lambda: normalise_policy_no(form.policy_no))
    _collect(errors, lambda: normalise_phone(form.phone))
    if errors or insurer is None:
        _raise(errors)
    with reading(engine) as conn:
        customer = verification.identify(conn, key, insurer, form.policy_no, form.phone)
    return verification.request_code(engine, sender, key, customer, ip, compose)


def _no_receipt() -> NotFound:
    return NotFound(
        "There is no receipt at this address. Check the link you saved.", code="no_receipt"
    )


def _receipt_row(conn: Connection, rating_id: str) -> Any:
    return conn.execute(
        select(
            WebReview.receipt_token_hash,
            Rating.id,
            Rating.leaf_hash,
            Rating.recorded_at,
            Rating.verified,
            Rating.value,
            Rating.stage,
            Insurer.name.label("insurer"),
            Branch.name.label("branch"),
            Staff.staff_no,
            RatingText.body,
            RatingText.hidden,
        )
        .select_from(WebReview)
        .join(Rating, Rating.id == WebReview.rating_id)
        .join(Insurer, Insurer.id == Rating.insurer_id)
        .outerjoin(Branch, Branch.id == Rating.branch_id)
        .outerjoin(Staff, Staff.id == Rating.staff_id)
        .outerjoin(RatingText, RatingText.rating_id == Rating.id)
        .where(WebReview.rating_id == rating_id)
    ).first()


def receipt(conn: Connection, rating_id: str, token: str) -> dict[str, Any]:
    """What the reviewer stored, for the holder of the receipt link only."""
    if not RATING_ID.match(rating_id) or not token or len(token) > 200:
        raise _no_receipt()
    row = _receipt_row(conn, rating_id)
    if row is None or not hmac.compare_digest(row.receipt_token_hash, token_hash(token)):
        raise _no_receipt()
    return dict(row._mapping)
