"""Search fixtures: one real Meilisearch per session, and the SQL fallback.

`index` is parametrised over both backends, so every contract test runs twice. The
database is shared by the whole session, so each test makes its own insurer (`shop`)
and filters by it.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from portal import directory
from portal.ratings import record
from portal.search import MeiliIndex, SearchIndex, SearchQuery, SearchResult, SqlIndex, drain
from portal.search.server import MeiliServer, binary, start
from tests.factories import CHINA, World, rating_in

CI = os.environ.get("CI") == "true"
_shops = itertools.count(1)


def require_binary() -> Path:
    """The Meilisearch binary; in CI its absence is a failure, never a skip."""
    try:
        return binary()
    except FileNotFoundError as exc:
        if CI:
            pytest.fail(f"Meilisearch binary missing in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def meili_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeiliServer]:
    require_binary()
    server = start(tmp_path_factory.mktemp("meili"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def meili_index(meili_server: MeiliServer) -> MeiliIndex:
    index = MeiliIndex(meili_server.url, meili_server.key)
    index.ensure()
    return index


@pytest.fixture(scope="session")
def sql_index(engine: Engine) -> SqlIndex:
    index = SqlIndex(engine)
    index.ensure()
    return index


@pytest.fixture(params=["meilisearch", "sql"])
def index(request: pytest.FixtureRequest) -> SearchIndex:
    # Looked up lazily, so the SQL half runs even where no Meilisearch binary exists.
    name = "meili_index" if request.param == "meilisearch" else "sql_index"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Shop:
    """An insurer of one's own with two branches in two provinces."""

    code: str
    world: World  # for tests.factories.rating_in: insurer_a/branch_a/teller_a

    @property
    def branch_b(self) -> str:
        return self.world.branch_b


@pytest.fixture
def shop(engine: Engine) -> Shop:
    n = next(_shops)
    code = f"S{n}{secrets.token_hex(3).upper()}"
    with engine.begin() as conn:
        directory.add_insurer(conn, code, f"公评样例{code}")
        directory.add_branch(conn, code, f"{code}-ZZ", "株洲中支", "430200")
        directory.add_branch(conn, code, f"{code}-BJ", "北京分公司", "110100")
        directory.import_staff(
            conn, [directory.StaffRow(code, f"{code}-ZZ", "T1", "王五", "teller")]
        )
    w = World(insurer_a=code, insurer_b=code, branch_a=f"{code}-ZZ", branch_b=f"{code}-BJ",
              teller_a="T1", teller_b="T1")  # fmt: skip
    return Shop(code=code, world=w)


Add = Callable[..., str]


@pytest.fixture
def add(engine: Engine, shop: Shop) -> Add:
    """Record one rating of this shop through the core; `minutes_ago` orders them."""

    def _add(text: str | None = "理赔很快", minutes_ago: int = 10, **kw: Any) -> str:
        when = datetime.now(CHINA) - timedelta(minutes=minutes_ago)
        return record(engine, rating_in(shop.world, text=text, occurred_at=when, **kw)).id

    return _add


def sync(engine: Engine, index: SearchIndex) -> int:
    """Drain the whole outbox into `index`."""
    total = 0
    while n := drain(engine, index):
        total += n
    return total


def find(index: SearchIndex, shop: Shop, q: str = "", **kw: Any) -> SearchResult:
    return index.search(SearchQuery(q=q, insurer=shop.code, **kw))


def ids(result: SearchResult) -> list[str]:
    return [h.id for h in result.hits]
