"""Queries, backend choice, the FTS5 two-character trap, and the server CLI."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from portal.config import ROOT, Settings
from portal.search import MeiliIndex, SearchQuery, SqlIndex, make_index
from portal.search.base import split_terms, stars_of
from portal.search.server import free_port
from tests.search.conftest import require_binary


def test_query_is_validated_and_clamped() -> None:
    with pytest.raises(ValueError, match="unknown sort"):
        SearchQuery(sort="random")
    q = SearchQuery(q="  理赔  ", page=0, per_page=1000)
    assert (q.q, q.page, q.per_page, q.offset) == ("理赔", 1, 100, 0)
    assert SearchQuery(page=3, per_page=20).offset == 40
    assert SearchQuery(insurer="TA", verified=False).filters() == {
        "insurer_code": "TA",
        "verified": False,
    }
    from_url = SearchQuery(stars="5", verified="false", province="43")  # type: ignore[arg-type]
    assert from_url.filters() == {"stars": 5, "verified": False, "province": "430000"}
    with pytest.raises(ValueError, match="yes/no"):
        SearchQuery(verified="maybe")  # type: ignore[arg-type]


def test_terms_split_on_spaces_and_punctuation() -> None:
    assert split_terms("理赔，慢\u3000理赔  态度!") == ["理赔", "慢", "态度"]
    assert split_terms("100% a_b") == ["100", "a", "b"]  # LIKE wildcards never reach SQL


def test_three_level_scale_maps_to_stars() -> None:
    assert [stars_of(3, v) for v in (1, 2, 3)] == [5, 3, 1]
    assert [stars_of(5, v) for v in (1, 5)] == [1, 5]


def test_make_index_picks_the_backend(settings: Settings, engine: Engine) -> None:
    assert isinstance(make_index(settings, engine), SqlIndex)
    expected = "sql" if settings.is_postgres else "sqlite-fts5"
    assert make_index(settings, engine).name == expected
    meili = dataclasses.replace(settings, meili_url="http://127.0.0.1:1")
    assert isinstance(make_index(meili, engine), MeiliIndex)


def test_fts5_trigram_finds_nothing_for_two_characters() -> None:
    """Why the fallback sends short terms to LIKE (performance-notes.md)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='trigram')")
    db.execute("INSERT INTO t(body) VALUES ('柜台人员态度差，理赔慢')")
    match = "SELECT count(*) FROM t WHERE t MATCH ?"
    assert db.execute(match, ('"理赔"',)).fetchone() == (0,)  # the trap
    assert db.execute(match, ('"理赔慢"',)).fetchone() == (1,)
    # LIKE must run on an ordinary table: on the FTS5 table itself SQLite 3.40 answers
    # 2-character patterns with nothing as well.
    db.execute("CREATE TABLE plain (body TEXT)")
    db.execute("INSERT INTO plain SELECT body FROM t")
    assert db.execute("SELECT count(*) FROM plain WHERE body LIKE '%理赔%'").fetchone() == (1,)


def test_server_cli_starts_and_stops(tmp_path: Path) -> None:
    require_binary()
    port, pidfile = free_port(), tmp_path / "meili.pid"
    cli = [sys.executable, "-m", "portal.search.server"]
    common = ["--dir", str(tmp_path), "--pidfile", str(pidfile)]
    env = {k: v for k, v in os.environ.items() if k != "MEILI_KEY"}
    out = subprocess.run([*cli, "start", "--port", str(port), *common], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    lines = dict(line.split("=", 1) for line in out.stdout.split())
    assert lines["MEILI_URL"] == f"http://127.0.0.1:{port}"
    pid = int(pidfile.read_text())
    headers = {"Authorization": f"Bearer {lines['MEILI_KEY']}"}
    assert httpx.get(f"{lines['MEILI_URL']}/indexes", headers=headers).status_code == 200
    subprocess.run([*cli, "stop", *common], cwd=ROOT, timeout=60, check=True)
    assert not pidfile.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{lines['MEILI_URL']}/health")
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_documents_carry_masked_text() -> None:
    from types import SimpleNamespace

    from portal.search.documents import to_doc

    row = SimpleNamespace(
        _mapping={
            "id": "a" * 32,
            "insurer_code": "TA",
            "insurer_name": "甲",
            "branch_name": None,
            "region": "430200",
            "stage": "claim",
            "channel": "web",
            "stars": 1,
            "score": 0,
            "verified": True,
            "text": "理赔太慢，打我电话13800001234",
            "occurred_at": datetime.now(UTC),
        }
    )
    doc = to_doc(row)
    assert "13800001234" not in doc.text and "138****1234" in doc.text
