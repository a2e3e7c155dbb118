"""Crash safety under load, at CI size: clients rate through the counter, phone and web
channels while the server is SIGKILLed and restarted; afterwards every acknowledged
rating is stored exactly once, the rollups equal a rebuild and `portal verify` passes.

The full size is `make reliability` (python -m tests.reliability). RELIABILITY_SEED
replays a run's kill moments (the seed is printed and named in any failure).
"""

from __future__ import annotations

import os

from sqlalchemy import Engine

from portal.config import Settings
from tests.reliability import harness

CLIENTS, DURATION, KILLS = 6, 8.0, 3


def test_acknowledged_ratings_survive_sigkill(settings: Settings, owner_engine: Engine) -> None:
    seed = int(os.environ["RELIABILITY_SEED"]) if "RELIABILITY_SEED" in os.environ else None
    report = harness.run(
        settings, owner_engine, clients=CLIENTS, duration=DURATION, kills=KILLS, seed=seed
    )
    assert report.problems() == [], f"seed {report.seed}: {report.figures()}"
    assert report.kills_survived == KILLS
    assert report.acknowledged > 0 and report.lost == 0 and report.duplicated == 0
    # The kills really interrupted requests: some answers came only on a retry.
    assert report.retried_requests > 0, f"seed {report.seed}: no request was cut off"
