"""Public read endpoints: /api/v1/insurers, /api/v1/insurers/{code}, /api/v1/reviews."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import reviews
from portal.search import SearchError, SqlIndex, drain
from tests.test_reviews import RATINGS, Seeded, seed

CODE = "PAPI"
NAME = "晨曦公评接口财险"
SUMMARY = {"n", "mean", "top_share", "bottom_share"}
REVIEW = {
    "id", "insurer", "stage", "channel", "stars", "level", "score", "verified",
    "occurred_at", "branch", "text", "removed", "removed_at", "removed_reason", "replies",
}  # fmt: skip


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Seeded:
    seeded = seed(engine, CODE, NAME)
    while drain(engine, SqlIndex(engine)):
        pass
    return seeded


def _error(response: Any, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code and body["error"]["field"] == field
    assert body["error"]["message"]


def test_insurers_list(client: TestClient, shop: Seeded) -> None:
    body = client.get("/api/v1/insurers").json()
    assert body["count"] == len(body["insurers"])
    mine = next(i for i in body["insurers"] if i["code"] == CODE)
    assert mine["name"] == NAME
    assert mine["ratings"] == {"total": len(RATINGS), "verified": len(RATINGS) - 1}
    assert set(mine["score"]) == SUMMARY and mine["score"]["mean"] == 50.0
    assert set(mine["stages"]) == {"issuance", "renewal", "claim"}
    assert all(set(s) == SUMMARY for s in mine["stages"].values())
    found = client.get("/api/v1/insurers", params={"q": "chenxi"}).json()
    assert [i["code"] for i in found["insurers"]] == [CODE]
    by_name = client.get("/api/v1/insurers", params={"sort": "name", "dir": "desc"}).json()
    assert by_name["count"] == body["count"]


def test_insurers_list_bad_parameters(client: TestClient) -> None:
    _error(
        client.get("/api/v1/insurers", params={"sort": "best"}), 400, "invalid_parameter", "sort"
    )
    _error(client.get("/api/v1/insurers", params={"dir": "up"}), 400, "invalid_parameter", "dir")


def test_one_insurer(client: TestClient, shop: Seeded) -> None:
    body = client.get(f"/api/v1/insurers/{CODE}").json()
    assert (body["code"], body["name"]) == (CODE, NAME)
    assert set(body["stages"]) == {"issuance", "renewal", "claim"}
    assert set(body["channels"]) == {"counter", "phone", "web"}
    for part in [body["score"], *body["stages"].values(), *body["channels"].values()]:
        assert set(part) == SUMMARY | {"stars"}
        assert sum(part["stars"].values()) == part["n"]
    assert body["channels"]["counter"]["stars"] == {"5": 1, "4": 0, "3": 0, "2": 0, "1": 1}
    assert len(body["trend"]) == 12 and set(body["trend"][0]) == {"month", "n", "mean"}
    assert sum(m["n"] for m in body["trend"]) == len(RATINGS) - 1
    assert body["replies"] == {
        "replied": 0,
        "rate": None,
        "median_working_days": None,
        "change_share": None,
    }
    _error(client.get("/api/v1/insurers/NOSUCH"), 404, "unknown_insurer", None)


def test_reviews_of_an_insurer_with_removed_text(client: TestClient, shop: Seeded) -> None:
    body = client.get("/api/v1/reviews", params={"insurer": CODE}).json()
    assert body["total"] == len(shop.written()) and body["pages"] == 1
    assert body["page"] == 1 and body["per_page"] == 20 and body["next"] is None
    assert body["facets"] is None and body["total_is_lower_bound"] is False
    assert [r["id"] for r in body["reviews"]] == [shop.ids[n] for n in shop.written()]
    assert all(set(r) == REVIEW for r in body["reviews"])
    removed = next(r for r in body["reviews"] if r["id"] == shop.ids["removed"])
    assert removed["removed"] is True and removed["text"] is None
    assert removed["removed_reason"] == "spam" and removed["removed_at"].endswith("Z")
    assert (removed["stars"], removed["score"]) == (2, 25)
    fast = next(r for r in body["reviews"] if r["id"] == shop.ids["fast_claim"])
    assert fast["branch"]["province"] == "320000" and fast["insurer"]["code"] == CODE
    assert fast["occurred_at"].endswith("Z") and fast["text"] == reviews.mask_text(fast["text"])


def test_reviews_pagination(client: TestClient, shop: Seeded) -> None:
    first = client.get("/api/v1/reviews", params={"insurer": CODE, "per_page": 3}).json()
    assert first["pages"] == 3 and first["prev"] is None
    assert first["next"] == f"/api/v1/reviews?insurer={CODE}&page=2&per_page=3"
    second = client.get(first["next"]).json()
    assert second["page"] == 2 and second["prev"] == f"/api/v1/reviews?insurer={CODE}&per_page=3"
    ids = [r["id"] for r in first["reviews"] + second["reviews"]]
    assert ids == [shop.ids[n] for n in shop.written()[:6]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"stage": "claim", "channel": "web"}, ["slow_claim", "fast_claim", "older"]),
        ({"stars": "3"}, ["phone_basic", "older"]),
        ({"verified": "false"}, ["xss"]),
        (
            {"region": "430200", "sort": "highest"},
            ["counter_happy", "xss", "removed", "slow_claim"],
        ),
    ],
)
def test_reviews_filters(
    client: TestClient, shop: Seeded, params: dict[str, str], expected: list[str]
) -> None:
    body = client.get("/api/v1/reviews", params={"insurer": CODE, **params}).json()
    names = {v: k for k, v in shop.ids.items()}
    assert [names[r["id"]] for r in body["reviews"]] == expected


def test_reviews_text_query_uses_search_with_facets(client: TestClient, shop: Seeded) -> None:
    body = client.get("/api/v1/reviews", params={"insurer": CODE, "q": "理赔 慢"}).json()
    assert [r["id"] for r in body["reviews"]] == [shop.ids["slow_claim"]]
    assert body["facets"]["stage"] == {"claim": 1} and body["facets"]["province"] == {"430000": 1}
    gone = client.get("/api/v1/reviews", params={"insurer": CODE, "q": "推销"}).json()
    assert gone["reviews"] == [] and gone["total"] == 0


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("stage", "payment", "invalid_parameter"),
        ("channel", "fax", "invalid_parameter"),
        ("stars", "0", "invalid_parameter"),
        ("verified", "perhaps", "invalid_parameter"),
        ("region", "990000", "invalid_parameter"),
        ("sort", "random", "invalid_parameter"),
        ("page", "x", "invalid_parameter"),
        ("per_page", "1000", "invalid_parameter"),
        ("insurer", "NOSUCH", "unknown_insurer"),
    ],
)
def test_reviews_bad_parameters(client: TestClient, name: str, value: str, code: str) -> None:
    _error(client.get("/api/v1/reviews", params={name: value}), 400, code, name)


def test_search_outage_is_503(
    client: TestClient, shop: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: SqlIndex, q: object) -> None:
        raise SearchError("down")

    monkeypatch.setattr(SqlIndex, "search", broken)
    _error(client.get("/api/v1/reviews", params={"q": "理赔"}), 503, "search_unavailable", None)
    assert client.get("/api/v1/reviews").status_code == 200  # the list needs no search


def test_openapi_describes_the_public_endpoints(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/insurers", "/api/v1/insurers/{code}", "/api/v1/reviews"):
        assert "get" in spec["paths"][path]
    params = {p["name"] for p in spec["paths"]["/api/v1/reviews"]["get"]["parameters"]}
    assert {"insurer", "stage", "channel", "q", "page"} <= params
