"""The web rating channel over HTTP: pick, rate (with or without a code), receipt, proof,
dev inbox. Every refusal shows a message on the form and stores nothing."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from portal import ledger, policies
from portal.config import Settings
from portal.directory import insurer_id
from portal.models import Rating, SmsMessage, VerificationCode, WebReview
from portal.secrets_files import ensure_key_file
from portal.web.app import create_app
from tests.factories import World, counts, make_world
from tests.web.conftest import BASE, text_of

EN = {"accept-language": "en"}


@dataclasses.dataclass
class Customer:
    policy_no: str
    phone: str  # as the customer types it


@pytest.fixture
def world(engine: Engine) -> World:
    return make_world(engine)


@pytest.fixture
def customer(app_settings: Settings, engine: Engine, world: World) -> Customer:
    """A policy of insurer TA registered with a phone number of its own."""
    digits = f"{uuid.uuid4().int % 10**8:08d}"
    phone, number = f"139 {digits[:4]} {digits[4:]}", f"W{uuid.uuid4().hex[:8].upper()}"
    key = ensure_key_file(app_settings.phone_key_path)
    with engine.begin() as conn:
        digest = policies.phone_hash(key, policies.normalise_phone(phone))
        policies.register(conn, insurer_id(conn, world.insurer_a), number, digest)
    return Customer(number, phone)


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def form_fields(html: str) -> dict[str, str]:
    """The values the rating form would post as it stands (hidden fields included)."""
    form = soup(html).find("form", id="rate-form")
    assert form is not None, html
    fields = {i["name"]: i.get("value", "") for i in form.find_all("input") if i.get("name")}
    fields = {k: v for k, v in fields.items() if k not in ("stage", "score")}
    checked = {i["name"]: i["value"] for i in form.find_all("input", checked=True)}
    return fields | checked | {"text": form.find("textarea").text, "branch": ""}


def open_form(client: TestClient, stage: str = "claim", **extra: str) -> dict[str, str]:
    page = client.get(f"/rate?insurer=TA&stage={stage}")
    assert page.status_code == 200
    return form_fields(page.text) | {"score": "4"} | extra


def post(client: TestClient, path: str, data: dict[str, str], **headers: str) -> Any:
    return client.post(
        path, data=data, headers={"origin": BASE, **EN, **headers}, follow_redirects=False
    )


def latest_code(engine: Engine, masked: str) -> str:
    with engine.connect() as conn:
        body = conn.execute(
            select(SmsMessage.body)
            .where(SmsMessage.phone_masked == masked)
            .order_by(SmsMessage.id.desc())
        ).scalar()
    return re.search(r"\b\d{6}\b", body).group(0)


def masked(c: Customer) -> str:
    digits = c.phone.replace(" ", "")
    return digits[:3] + "****" + digits[-4:]


def send_code(client: TestClient, data: dict[str, str], htmx: bool = True) -> Any:
    return post(client, "/rate/code", data, **({"hx-request": "true"} if htmx else {}))


def verified_form(client: TestClient, engine: Engine, c: Customer, **extra: str) -> dict[str, str]:
    data = open_form(client, policy_no=c.policy_no, phone=c.phone, **extra)
    assert send_code(client, data).status_code == 200
    return data | {"code": latest_code(engine, masked(c))}


def table_counts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        extra = {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (WebReview, VerificationCode)
        }
    return counts(engine) | extra


def no_inline_code(html: str) -> None:
    """The CSP forbids inline scripts, styles and handlers: the page must not need them."""
    page = soup(html)
    assert all(s.get("src") for s in page.find_all("script"))
    assert not page.find_all(style=True) and not page.find_all("style")
    assert not [a for t in page.find_all(True) for a in t.attrs if a.startswith("on")]


def test_rate_without_an_insurer_shows_the_picker(client: TestClient, world: World) -> None:
    page = client.get("/rate?stage=renewal", headers=EN)
    assert page.status_code == 200
    form = soup(page.text).find("form", attrs={"data-testid": "pick-form"})
    assert form["method"] == "get" and form["action"] == "/rate"
    assert {o["value"] for o in form.select("select[name=insurer] option")} >= {"", "TA", "TB"}
    stages = form.select("input[name=stage]")
    assert [s["value"] for s in stages] == ["issuance", "renewal", "claim"]
    assert [s["value"] for s in stages if s.has_attr("checked")] == ["renewal"]
    no_inline_code(page.text)


def test_an_unknown_insurer_is_a_404_with_the_picker(client: TestClient, world: World) -> None:
    page = client.get("/rate?insurer=NOPE", headers=EN)
    assert page.status_code == 404 and "Unknown insurer “NOPE”." in text_of(page.text)
    assert soup(page.text).find("form", attrs={"data-testid": "pick-form"})
    assert client.get("/rate?insurer=%00", headers=EN).status_code == 404


def test_the_form_has_insurer_stage_stars_and_branches(client: TestClient, world: World) -> None:
    page = client.get("/rate?insurer=ta&stage=claim", headers=EN)
    html = soup(page.text)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert html.h1.get_text() == "Rate 甲测试财险"
    fields = form_fields(page.text)
    assert fields["insurer"] == "TA" and fields["stage"] == "claim"
    assert re.fullmatch(r"\d{10}\.[A-Za-z0-9_-]{32}", fields["nonce"])
    assert fields["csrf_token"]
    stars = html.select("fieldset#score input[type=radio][name=score]")
    assert [s["value"] for s in stars] == ["1", "2", "3", "4", "5"]
    labels = [html.find("label", attrs={"for": s["id"]}).get_text(" ", strip=True) for s in stars]
    assert labels[0].endswith("1 star: Very poor") and labels[4].endswith("5 stars: Excellent")
    branches = [o["value"] for o in html.select("select[name=branch] option")]
    assert branches == ["", world.branch_a]  # TA's own branches only
    send = html.find("button", attrs={"data-testid": "send-code"})
    assert send["hx-post"] == "/rate/code" and send["formaction"] == "/rate/code"
    assert html.find("script", src="/static/js/rate.js")
    no_inline_code(page.text)


def test_an_unverified_rating_gets_a_receipt(client: TestClient, engine: Engine) -> None:
    data = open_form(client, text="<b>慢</b>\r\n但是态度好", staff_no="ZZ0001", branch="TA-ZZ01")
    done = post(client, "/rate", data)
    assert done.status_code == 303
    match = re.fullmatch(r"/receipt/([0-9a-f]{32})\?t=(.+)", done.headers["location"])
    assert match and match.group(2) == data["nonce"]
    receipt = client.get(done.headers["location"], headers=EN)
    assert receipt.status_code == 200 and receipt.headers["cache-control"] == "no-store"
    html = soup(receipt.text)
    assert html.find(attrs={"data-testid": "unverified"})
    assert not html.find(attrs={"data-testid": "verified"})
    assert html.find(attrs={"data-testid": "review-text"}).get_text() == "<b>慢</b>\n但是态度好"
    assert "&lt;b&gt;慢&lt;/b&gt;" in receipt.text
    assert html.find(attrs={"data-testid": "rating-id"}).get_text() == match.group(1)
    with engine.connect() as conn:
        row = conn.execute(select(Rating).where(Rating.id == match.group(1))).one()
    assert (row.verified, row.channel, row.source, row.value) == (False, "web", "web", 4)
    assert row.leaf_hash in receipt.text
    assert html.find("a", attrs={"data-testid": "proof-link"})["href"] == (
        f"/ledger/proof/{match.group(1)}"
    )


def test_a_verified_rating_with_an_htmx_code(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    data = open_form(client, policy_no=customer.policy_no.lower(), phone=customer.phone)
    sent = send_code(client, data)
    assert sent.status_code == 200
    assert "<html" not in sent.text and 'id="verify"' in sent.text  # the fragment only
    status = soup(sent.text).find(attrs={"data-testid": "code-status"})
    assert status["role"] == "status" and masked(customer) in status.get_text()
    assert soup(sent.text).find("input", id="code").has_attr("autofocus")
    data["code"] = latest_code(engine, masked(customer))
    done = post(client, "/rate", data)
    assert done.status_code == 303
    receipt = client.get(done.headers["location"], headers=EN)
    assert soup(receipt.text).find(attrs={"data-testid": "verified"})
    rating_id = done.headers["location"].split("/")[2].split("?")[0]
    with engine.connect() as conn:
        review = conn.execute(select(WebReview).where(WebReview.rating_id == rating_id)).one()
        verified = conn.execute(select(Rating.verified).where(Rating.id == rating_id)).scalar()
    assert review.policy_id is not None and verified is True


def test_send_code_without_javascript_returns_the_whole_form(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    data = open_form(client, policy_no=customer.policy_no, phone=customer.phone, text="很好")
    page = send_code(client, data, htmx=False)
    assert page.status_code == 200 and "<html" in page.text
    kept = form_fields(page.text)
    assert kept["text"] == "很好" and kept["score"] == "4" and kept["nonce"] == data["nonce"]
    assert kept["policy_no"] == customer.policy_no
    assert masked(customer) in text_of(page.text)


def test_a_double_submit_stores_one_rating(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    data = verified_form(client, engine, customer)
    first = post(client, "/rate", data)
    before = table_counts(engine)
    second = post(client, "/rate", data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert table_counts(engine) == before


@pytest.mark.parametrize("change", [{"score": "1"}, {"text": "改了主意"}])
def test_the_same_form_with_other_answers_is_a_409(
    client: TestClient, engine: Engine, change: dict[str, str]
) -> None:
    """Found by the model test: the same form (its nonce is the idempotency key) sent
    again with another score answered with the first rating's receipt, as if stored."""
    data = open_form(client, text="很好")
    first = post(client, "/rate", data)
    assert first.status_code == 303
    before = table_counts(engine)
    refused = post(client, "/rate", data | change)
    assert refused.status_code == 409
    assert "sent with other answers" in text_of(refused.text)
    assert table_counts(engine) == before
    again = post(client, "/rate", data)  # the first answers again: still its receipt
    assert again.headers["location"] == first.headers["location"]


def test_the_receipt_needs_its_token(client: TestClient, engine: Engine) -> None:
    done = post(client, "/rate", open_form(client))
    rating_id = done.headers["location"].split("/")[2].split("?")[0]
    for query in ("", "?t=", "?t=wrong", "?t=%00"):
        page = client.get(f"/receipt/{rating_id}{query}", headers=EN)
        assert page.status_code == 404 and "There is no receipt at this address" in page.text
    assert client.get(f"/receipt/{'0' * 32}?t=x").status_code == 404
    assert client.get("/receipt/%00?t=x").status_code == 404


def _refused(engine: Engine, response: Any, status: int, message: str, field: str | None) -> None:
    assert response.status_code == status, text_of(response.text)
    html = soup(response.text)
    summary = html.find(id="error-summary")
    assert summary is not None and message in summary.get_text(" ")
    if field:
        assert message in html.find(id=f"{field}-error").get_text()
        link = summary.find("a", string=re.compile(re.escape(message[:20])))
        assert link is not None and link["href"] == f"#{field}"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"score": "0"}, "score", "Score 0 is out of range: use 1 to 5."),
        ({"score": "6"}, "score", "Score 6 is out of range: use 1 to 5."),
        ({"score": ""}, "score", "Choose 1 to 5 stars."),
        ({"stage": "lunch"}, "stage", "Choose the service you are rating."),
        ({"text": "长" * 2001}, "text", "The text is 2001 characters long; at most 2000"),
        ({"text": "ok\x00"}, "text", "The text contains a control character (U+0000)."),
        ({"staff_no": "ZZ\x0001"}, "staff_no", "A staff number has 1 to 32 letters"),
        ({"staff_no": "NOBODY"}, "staff_no", "This insurer has no staff member"),
        ({"branch": "TB-CS01"}, "branch", "Choose a branch from the list."),
        ({"policy_no": "P1"}, "phone", "Enter a valid mobile number"),
        ({"nonce": "x"}, None, "The form is incomplete. Reload the page and try again."),
    ],
)
def test_bad_input_is_explained_and_stores_nothing(
    client: TestClient,
    engine: Engine,
    world: World,
    change: dict[str, str],
    field: str | None,
    message: str,
) -> None:
    data = open_form(client) | change
    before = table_counts(engine)
    _refused(engine, post(client, "/rate", data), 422, message, field)
    assert table_counts(engine) == before


def test_an_expired_form_gets_a_fresh_id(client: TestClient, engine: Engine) -> None:
    data = open_form(client, text="留着")
    old = f"{int(data['nonce'][:10]) - 2 * 86400:010d}{data['nonce'][10:]}"
    before = table_counts(engine)
    page = post(client, "/rate", data | {"nonce": old})
    _refused(engine, page, 422, "This form was open for more than a day.", None)
    again = form_fields(page.text)
    assert again["nonce"] != old and again["text"] == "留着"
    assert table_counts(engine) == before
    assert post(client, "/rate", again).status_code == 303


@pytest.mark.parametrize("kind", ["unknown", "mismatch"])
def test_unknown_policy_and_wrong_phone_read_the_same(
    client: TestClient, engine: Engine, customer: Customer, kind: str
) -> None:
    other = "139 0000 0001" if kind == "mismatch" else customer.phone
    number = customer.policy_no if kind == "mismatch" else "NOSUCH1"
    data = open_form(client, policy_no=number, phone=other)
    before = table_counts(engine)
    sent = send_code(client, data, htmx=False)
    assert sent.status_code == 422
    error = soup(sent.text).find(id="policy_no-error").get_text()
    assert error == policies.NO_MATCH
    assert soup(sent.text).find("input", id="policy_no").has_attr("autofocus")
    submitted = post(client, "/rate", data | {"code": "123456"})
    _refused(engine, submitted, 422, policies.NO_MATCH, "policy_no")
    assert table_counts(engine) == before


def test_code_errors_on_the_form(client: TestClient, engine: Engine, customer: Customer) -> None:
    data = verified_form(client, engine, customer)
    wrong = f"{(int(data['code']) + 1) % 10**6:06d}"
    before = table_counts(engine)
    page = post(client, "/rate", data | {"code": wrong})
    _refused(engine, page, 422, "The code is not correct. Tries left for this code: 4.", "code")
    page = post(client, "/rate", data | {"code": ""})
    _refused(engine, page, 422, "Enter the 6-digit code from the text message.", "code")
    phone_hash = _phone_hash(engine, customer)
    with engine.begin() as conn:
        conn.execute(
            update(VerificationCode)
            .where(VerificationCode.phone_hash == phone_hash)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    page = post(client, "/rate", data)
    _refused(engine, page, 422, "This code has expired. Request a new code.", "code")
    assert table_counts(engine) == before


def _phone_hash(engine: Engine, c: Customer) -> str:
    from portal.models import Policy

    with engine.connect() as conn:
        return conn.execute(
            select(Policy.phone_hash).where(Policy.policy_no == c.policy_no)
        ).scalar_one()


def test_a_used_code_cannot_rate_again(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    data = verified_form(client, engine, customer)
    assert post(client, "/rate", data).status_code == 303
    again = open_form(client, stage="renewal") | {
        k: data[k] for k in ("policy_no", "phone", "code")
    }
    before = table_counts(engine)
    page = post(client, "/rate", again)
    _refused(engine, page, 422, "This code has already been used. Request a new code.", "code")
    assert table_counts(engine) == before


def test_the_same_stage_again_within_30_days_names_the_date(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    assert post(client, "/rate", verified_form(client, engine, customer)).status_code == 303
    data = verified_form(client, engine, customer)
    before = table_counts(engine)
    page = post(client, "/rate", data)
    assert page.status_code == 409
    message = soup(page.text).find(id="stage-error").get_text()
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", message)
    assert message.startswith("You already rated this service for this policy on")
    assert len(dates) == 2 and dates[0] < dates[1]
    assert table_counts(engine) == before
    renewal = post(client, "/rate", data | {"stage": "renewal"})
    assert renewal.status_code == 303


def test_the_sixth_code_within_an_hour_is_refused(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    data = open_form(client, policy_no=customer.policy_no, phone=customer.phone)
    for _ in range(5):
        assert send_code(client, data).status_code == 200
    before = table_counts(engine)
    htmx = send_code(client, data)
    assert htmx.status_code == 200  # htmx swaps only 2xx: the refusal is in the fragment
    assert "Too many codes were requested for this mobile number" in htmx.text
    page = send_code(client, data, htmx=False)
    assert page.status_code == 429 and page.headers["retry-after"].isdigit()
    error = soup(page.text).find(id="phone-error").get_text()
    assert error.startswith("Too many codes were requested for this mobile number.")
    assert table_counts(engine) == before


def test_the_proof_page_waits_then_shows_the_inclusion_proof(
    client: TestClient, engine: Engine, app_settings: Settings
) -> None:
    done = post(client, "/rate", open_form(client))
    rating_id = done.headers["location"].split("/")[2].split("?")[0]
    waiting = client.get(f"/ledger/proof/{rating_id}", headers=EN)
    assert waiting.status_code == 200
    pending = soup(waiting.text).find(attrs={"data-testid": "proof-pending"})
    assert "Waiting for the next checkpoint" in pending.get_text()
    assert pending["hx-get"] == f"/ledger/proof/{rating_id}" and "every" in pending["hx-trigger"]
    key = ledger.load_key(app_settings.ledger_key_path, app_settings.ledger_origin)
    ledger.checkpoint(engine, key)
    page = client.get(f"/ledger/proof/{rating_id}", headers=EN)
    html = soup(page.text)
    assert "Your rating is in the public ledger and cannot be altered." in text_of(page.text)
    with engine.connect() as conn:
        proof = ledger.inclusion(conn, rating_id)
    assert html.find(attrs={"data-testid": "leaf-index"}).get_text() == str(proof["leaf_index"])
    assert html.find(attrs={"data-testid": "tree-size"}).get_text() == str(proof["tree_size"])
    assert all(h in page.text for h in proof["proof"])
    note = html.find(attrs={"data-testid": "signed-note"}).get_text()
    assert note.startswith(proof["checkpoint"].note + "\n\u2014 " + key.origin + " ")
    fragment = client.get(f"/ledger/proof/{rating_id}", headers={"hx-request": "true"})
    assert "<html" not in fragment.text and 'id="proof"' in fragment.text


def test_the_proof_page_of_an_unknown_rating_is_a_404(client: TestClient) -> None:
    assert client.get(f"/ledger/proof/{'ab' * 16}").status_code == 404
    assert client.get("/ledger/proof/not-an-id%00").status_code == 404


def test_the_dev_inbox_lists_the_latest_messages(
    client: TestClient, engine: Engine, customer: Customer
) -> None:
    send_code(client, open_form(client, policy_no=customer.policy_no, phone=customer.phone))
    page = client.get("/dev/inbox", headers=EN)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    first = soup(page.text).find("li", attrs={"data-testid": "sms"})
    assert first["data-phone"] == masked(customer)
    assert latest_code(engine, masked(customer)) in first.get_text()
    assert customer.phone.replace(" ", "")[3:7] not in first["data-phone"]


@pytest.fixture
def production_client(app_settings: Settings) -> Iterator[TestClient]:
    settings = dataclasses.replace(app_settings, environment="production")
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def test_the_dev_inbox_does_not_exist_in_production(production_client: TestClient) -> None:
    assert production_client.get("/dev/inbox").status_code == 404
    assert production_client.get("/rate").status_code == 200
