"""The benchmark's data side works end to end on a small database: the generator goes
through record_many (so every rating verifies), and the naive ranking equals the one
from rollups (the benchmark asserts it on every run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench import data_figures, scale
from portal import ledger
from portal.config import load_settings
from portal.db import make_engine
from portal.models import LedgerEntry, Outbox, Rating, RatingText

# It generates a SQLite file of its own: run once, in the SQLite run of the suite.
pytestmark = pytest.mark.sqlite_only


def test_generate_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A small directory (3 insurers in 10 cities): the test is about the flow.
    monkeypatch.setattr(scale, "INSURERS", 3)
    cities = ("110000", "310000", "440100", "440300", "510100", "420100", "330100", "320100")
    monkeypatch.setattr(scale, "CITIES", {c: scale.CITIES[c] for c in (*cities, "370100")})
    url = f"sqlite:///{tmp_path / 'scale.db'}"
    info = scale.generate(url, 3000, seed=5, progress=False)
    phases = info["phases"]
    assert info["rows"] == 3000 and phases["checkpoint"]["tree_size"] == 3000
    assert set(phases) >= {"ratings", "rollups", "checkpoint", "search_index"}
    assert 200 < phases["search_index"]["reviews"] < 450  # ~10% carry a text
    engine = make_engine(url)
    with engine.connect() as conn:
        count = lambda t: conn.execute(select(func.count()).select_from(t)).scalar_one()  # noqa: E731
        assert count(Rating) == count(LedgerEntry) == 3000
        assert count(RatingText) == phases["search_index"]["reviews"]
        pending = select(func.count()).where(Outbox.done_at.is_(None))
        assert conn.execute(pending).scalar_one() == 0
    key = ledger.load_key(Path(info["ledger_key"]), load_settings("/nonexistent").ledger_origin)
    assert ledger.verify(engine, key.private.public_key(), key.origin) == []
    engine.dispose()

    db = data_figures.Db(url, 3000, info, Path(info["ledger_key"]))
    ranking = data_figures.ranking_figures(db, runs=1, target=True)  # asserts naive == rollups
    assert [f.name.split(".")[1] for f in ranking] == ["rollups", "naive", "speedup"]
    assert len(ranking[0].runs) == 1 and ranking[2].median > 0
    search = data_figures.search_figures(db, runs=1, quick=True)
    assert {f.detail["backend"] for f in search} == {"sqlite-fts5"}
    cp = data_figures.checkpoint_figure(db, runs=1, n=200)
    assert cp.detail["tree_sizes"] == [3200]
