"""Writers from several processes while checkpoints run: every acknowledged rating ends
up in the ledger exactly once, with gap-free leaf indices, and the ledger verifies."""

from __future__ import annotations

import multiprocessing as mp
import threading

from sqlalchemy import Engine, select

from portal import ledger
from portal.config import Settings
from portal.db import make_engine
from portal.models import LedgerEntry
from portal.ratings import record
from tests.factories import make_world, rating_in

PROCESSES = 4
PER_PROCESS = 250


def _writer(url: str, worker: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    world = make_world(engine)
    acked = []
    for i in range(PER_PROCESS):
        receipt = record(
            engine, rating_in(world, idempotency_key=f"conc-{worker}-{i}", value=1 + (i % 5))
        )
        acked.append(receipt.id)  # acknowledged: record() returned after commit
    engine.dispose()
    out.put(acked)


def test_concurrent_writers_and_checkpoints(settings: Settings, engine: Engine) -> None:
    key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    make_world(engine)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_writer, args=(settings.runtime_database_url, w, out))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    stop = threading.Event()
    signed: list[int] = []

    def checkpointer() -> None:
        while not stop.is_set():
            cp = ledger.checkpoint(engine, key, batch=97)
            if cp is not None:
                signed.append(cp.tree_size)

    thread = threading.Thread(target=checkpointer)
    thread.start()
    acked = [rid for _ in procs for rid in out.get(timeout=300)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    stop.set()
    thread.join()
    ledger.checkpoint(engine, key)

    assert len(acked) == len(set(acked)) == PROCESSES * PER_PROCESS
    with engine.connect() as conn:
        entries = conn.execute(
            select(LedgerEntry.leaf_index, LedgerEntry.rating_id).order_by(LedgerEntry.leaf_index)
        ).all()
    assert [i for i, _ in entries] == list(range(len(entries)))  # gap-free
    sequenced = [r for _, r in entries]
    assert len(sequenced) == len(set(sequenced))  # each rating once
    assert set(acked) <= set(sequenced)  # every acknowledged rating is there
    assert len(signed) >= 2 and signed == sorted(signed)  # checkpoints ran meanwhile
    assert ledger.verify(engine, key.private.public_key(), key.origin) == []
