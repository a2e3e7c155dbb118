"""The durable-write floor: the bare POST of bench/bare_app.py, plus one row committed
before the answer, through the portal's own group-commit writer.

    BENCH_FLOOR_URL=sqlite:///... uvicorn bench.floor_app:app --workers N ...

`POST /api/v1/counter/ratings` parses the body as the bare endpoint does, then stores
(a new id, the raw body, the time) in `bench_floor` with `portal.writer.commit` (the
SQLite write lock and fsync per batch, or PostgreSQL's round trips and WAL flush per
batch) and answers 201 only after the COMMIT, as design.md's invariant 4 asks of every
rating. No token lookup, no idempotency key, no hashing, no rollups, no ledger, no
outbox: what any endpoint that keeps what it acknowledges costs at least, with this
stack on this machine. bench/ingest.py creates the table before the server starts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.bare_app import RECEIPT, parse, ping
from portal import writer
from portal.db import make_engine
from portal.ids import new_id
from portal.prepared import Prepared
from portal.web.security import SecurityHeaders

FLOOR = Table(
    "bench_floor",
    MetaData(),
    Column("id", String(32), primary_key=True),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
_INSERT = Prepared(FLOOR.insert())
_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:  # per worker process, after the fork
        _engine = make_engine(os.environ["BENCH_FLOOR_URL"])
    return _engine


async def store(request: Request) -> Response:
    refused, raw = await parse(request)
    if refused:
        return refused
    row = {"id": new_id(), "body": raw.decode(), "received_at": datetime.now(UTC)}
    await writer.commit(engine(), lambda conn: _INSERT.executemany(conn, [row]))
    return JSONResponse(RECEIPT, status_code=201)


app = Starlette(
    routes=[
        Route("/api/v1/counter/ratings", store, methods=["POST"]),
        Route("/ping", ping),
    ],
    middleware=[Middleware(SecurityHeaders)],
)
