"""A TestClient over the real app (HTTPS origin, so Secure cookies flow as in a browser)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from portal import ledger
from portal.config import Settings
from portal.web.app import create_app
from tests.factories import World  # noqa: F401 - re-exported for the tests

BASE = "https://testserver"
from tests.conftest import PASSWORD  # noqa: E402,F401


@pytest.fixture(scope="session")
def app_settings(settings: Settings) -> Settings:
    ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    return settings


_ips = itertools.count(1)


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """Each test comes from its own address, so per-IP login limits do not leak between tests."""
    n = next(_ips)
    with TestClient(
        create_app(app_settings), base_url=BASE, client=(f"10.0.{n // 250}.{n % 250 + 1}", 50000)
    ) as c:
        yield c


def csrf_of(html: str) -> str:
    token = BeautifulSoup(html, "html.parser").find("meta", attrs={"name": "csrf-token"})
    assert token is not None
    return str(token["content"])


def login(client: TestClient, username: str, password: str = PASSWORD) -> object:
    page = client.get("/login")
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(page.text),
            "next": "/",
        },
        headers={"origin": BASE},
        follow_redirects=False,
    )


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", BeautifulSoup(html, "html.parser").get_text(" "))
