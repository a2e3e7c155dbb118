"""PostgreSQL restarted under load (issue 8, outages).

The app runs under uvicorn on a PostgreSQL cluster of the test's own (never the shared
server), as the restricted app role. Counter, phone and web clients keep submitting;
the cluster is stopped (fast: open sessions are cut) for a few seconds and started
again. While it is down every request must get a 503 with Retry-After and the JSON
error shape (an error page for pages), never a 500 or a stack trace; each client
retries with the same idempotency key and body until it succeeds; afterwards every
acknowledged key is in the database exactly once, under the id its receipt named, and
the background jobs (outbox worker, checkpointer) have carried on by themselves.

PostgreSQL run of the suite only: it needs the server binaries, and the SQLite run has
no PostgreSQL to restart.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func, select

from portal.config import Settings
from portal.db import make_engine
from portal.models import Outbox, Rating
from tests.e2e.conftest import PortalServer
from tests.outages.conftest import make_channels, server_env
from tests.outages.load import (
    TRACE_MARKERS,
    CounterClient,
    HealthProbe,
    LoadLog,
    PhoneClient,
    WebClient,
    check_unavailable,
    get_health,
    run_clients,
    stop_clients,
    wait_for,
)
from tests.outages.pg_cluster import PgCluster

pytestmark = pytest.mark.postgres_only
OUTAGE_SECONDS = 5
SUCCESS = {200, 201, 303}


@pytest.fixture
def app_engine(cluster_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(cluster_settings.runtime_database_url)
    yield engine
    engine.dispose()


def stored(engine: Engine) -> tuple[Counter[str], dict[str, str], int]:
    """Ratings per idempotency key, key -> id, and pending outbox rows."""
    with engine.connect() as conn:
        rows = conn.execute(select(Rating.idempotency_key, Rating.id)).all()
        pending = conn.execute(
            select(func.count()).select_from(Outbox).where(Outbox.done_at.is_(None))
        ).scalar_one()
    return Counter(r[0] for r in rows), {r[0]: r[1] for r in rows}, int(pending)


def outage_answers(http: httpx.Client) -> dict[str, httpx.Response]:
    """A page and an API read while the database is down, besides the clients' writes."""
    return {"page": http.get("/"), "api": http.get("/api/v1/insurers")}


def test_postgres_restart_gives_503s_and_retries_store_each_rating_once(
    cluster_settings: Settings, app_engine: Engine, pg_cluster: PgCluster
) -> None:
    channels = make_channels(app_engine, cluster_settings)
    portal = PortalServer(cluster_settings, env=server_env())
    url = portal.start()
    log, stop = LoadLog(), threading.Event()
    device = dict(device_id=channels.device_id, token=channels.device_token,
                  staff_no=channels.teller)  # fmt: skip
    phone = dict(client_id=channels.client_id, secret=channels.client_secret,
                 agent_no=channels.call_agent)  # fmt: skip
    clients = [
        CounterClient(url, log, stop, 1, **device),
        CounterClient(url, log, stop, 2, **device),
        PhoneClient(url, log, stop, 1, **phone),
        PhoneClient(url, log, stop, 2, **phone),
        WebClient(url, log, stop, 1, insurer=channels.insurer),
    ]
    probe = HealthProbe(url)
    http = httpx.Client(base_url=url, timeout=15)
    try:
        run_clients(clients)
        probe.start()
        wait_for(lambda: len(log.acknowledged) >= 10, 60, "ratings before the outage")

        down_at = time.monotonic()  # from the moment the shutdown begins
        pg_cluster.stop()
        during = get_health(http)
        answers = outage_answers(http)
        wait_for(
            lambda: (
                time.monotonic() - down_at >= OUTAGE_SECONDS and log.statuses(down_at)[503] >= 10
            ),
            60,
            "clients to meet the outage",
        )
        pg_cluster.start()
        up_at = time.monotonic()
        wait_for(lambda: log.acks_after(up_at) >= 10, 60, "ratings after the restart")
        stop_clients(clients, stop)
        # The background jobs carried on: every rating indexed and in a signed checkpoint.
        keys, ids, _ = stored(app_engine)
        wait_for(
            lambda: stored(app_engine)[2] == 0 and get_health(http).body["tree_size"] == len(ids),
            60,
            "the outbox worker and the checkpointer to catch up",
        )
        final = get_health(http)
    finally:
        stop.set()
        samples = probe.finish() if probe.is_alive() else probe.samples
        http.close()
        portal.stop()

    # While it was down: 503s with Retry-After and the error shape, no 500, no traces.
    statuses = log.statuses()
    outage = log.statuses(down_at, up_at)
    assert statuses[500] == 0 and statuses[None] == 0, statuses
    assert set(statuses) <= SUCCESS | {503}, statuses
    assert outage[503] >= 10, outage
    assert not log.problems(), log.problems()[:3]
    for kind, response in answers.items():
        assert response.status_code == 503, (kind, response.status_code)
        assert not check_unavailable(response, kind), (kind, check_unavailable(response, kind))
    assert during.status == 503 and during.body["db"] == "down", during.body
    assert during.body["search"] == "down"  # the SQL fallback needs the database
    assert not any(m in str(during.body) for m in TRACE_MARKERS)

    # Retries with the same keys succeeded; each acknowledged rating is stored once.
    assert not log.failures, log.failures[:5]
    assert log.retried, "no submission needed a retry: the outage was not felt"
    acknowledged = {key: rid for (_, key), rid in log.acknowledged.items()}
    assert set(keys) == set(acknowledged)  # nothing stored that no client was told about
    duplicates = {k: n for k, n in keys.items() if n != 1}
    assert not duplicates
    assert all(ids[k] == rid for k, rid in acknowledged.items())

    # /healthz: 503 while down, 200 again after; all caught up.
    codes = [s.status for s in samples]
    assert 503 in codes and codes[-1] == 200
    assert all(s.body["db"] == ("ok" if s.status == 200 else "down") for s in samples)
    assert final.status == 200 and final.body["db"] == "ok" and final.body["outbox_pending"] == 0
    assert final.body["search"] == "fallback"
    print(  # the figures for the report (pytest -s)
        f"\npostgres restart: down {up_at - down_at:.1f} s; {sum(outage.values())} requests "
        f"while down: {dict(outage)}; whole run {dict(statuses)}; "
        f"{len(log.retried)} submissions retried after 503s, {log.replays} answered as "
        f"replays of a stored rating; {len(acknowledged)} acknowledged, {len(keys)} keys "
        f"stored, duplicates {len(duplicates)}; healthz 503 samples {codes.count(503)}"
    )
