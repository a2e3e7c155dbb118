"""Fixes from review: probing, deep pages, junk codes, log hygiene, masked search."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal.ratings import record
from portal.search import SearchQuery, SqlIndex, reindex
from portal.web.app import _HideReceiptTokens
from tests.factories import make_world, rating_in


def test_deep_pages_are_refused(client: TestClient) -> None:
    r = client.get("/api/v1/reviews?page=100000&per_page=100")
    assert r.status_code == 400 and r.json()["error"]["field"] == "page"


def test_junk_insurer_codes_are_404_not_500(client: TestClient) -> None:
    for path in ("/insurers/%00", "/api/v1/insurers/%00", "/api/v1/insurers/" + "x" * 40):
        assert client.get(path).status_code == 404, path


def test_receipt_tokens_never_reach_the_access_log() -> None:
    record_ = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/receipt/abc?t=SECRET123&x=1", "1.1", 200),
        None,
    )
    _HideReceiptTokens().filter(record_)
    assert "SECRET123" not in record_.getMessage() and "t=[hidden]" in record_.getMessage()


def test_sql_fallback_cannot_confirm_masked_digits(engine: Engine) -> None:
    world = make_world(engine)
    rid = record(engine, rating_in(world, text="打了好几次 13800001234 都没人接")).id
    index = SqlIndex(engine)
    reindex(engine, index)
    found = {h.id for h in index.search(SearchQuery(q="1380000")).hits}
    assert rid not in found
    assert rid in {h.id for h in index.search(SearchQuery(q="没人接")).hits}


def test_ids_beyond_the_database_integers_are_404_not_500(client: TestClient) -> None:
    """PostgreSQL answered an id over 2**31 - 1 (or 2**63 - 1) with "out of range": a 500."""
    for path in (
        "/api/v1/checkpoints/99999999999999999999",
        "/api/v1/rankings/9999999999",
        "/rankings/9999999999",
        "/replies/9999999999/history",
    ):
        assert client.get(path).status_code == 404, path
    r = client.post("/api/v1/phone/return-visits/9999999999/attempts", content=b"{}")
    assert r.status_code == 404


def test_empty_api_parameters_are_refused_not_defaulted(client: TestClient) -> None:
    """`?sort=` is a mistake in an API call (the spec's enum has no empty value)."""
    for path in ("/api/v1/insurers?sort=", "/api/v1/insurers?dir=", "/api/v1/reviews?stage="):
        r = client.get(path)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameter", path
