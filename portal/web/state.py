"""What the lifespan opens and every handler receives through `request.state.portal`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.templating import Jinja2Templates

from portal import writer
from portal.config import Settings
from portal.db import reading
from portal.ledger import LedgerKey
from portal.page_cache import LoopVersions, PageCache

T = TypeVar("T")


@dataclass
class Portal:
    settings: Settings
    engine: Engine  # the app role's connection (INSERT/SELECT only on ledger tables)
    templates: Jinja2Templates
    key: LedgerKey
    search: Any  # portal.search.SearchIndex
    phone_key: bytes = b""  # HMAC key for customers' phone numbers (portal.secrets_files)
    sms: Any = None  # portal.sms.Sender
    page_cache: PageCache = field(default_factory=lambda: PageCache(0))  # 0: keeps nothing
    versions: LoopVersions | None = None  # SQLite: page versions read on the event loop

    async def read(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run fn(conn, ...) in a read-only connection, off the event loop."""

        def run() -> T:
            with reading(self.engine) as conn:
                return fn(conn, *args, **kw)

        return await run_in_threadpool(run)

    async def write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run fn(conn, ...) in one transaction, off the event loop."""

        def run() -> T:
            with self.engine.begin() as conn:
                return fn(conn, *args, **kw)

        return await run_in_threadpool(run)

    async def commit(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run fn(conn, ...) in a write transaction shared with concurrent requests (group
        commit, portal/writer.py), retried once after a lost unique-key race; returns after
        COMMIT. For the rating endpoints: fn must read before it writes."""
        return await writer.commit(self.engine, lambda conn: fn(conn, *args, **kw))

    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run fn(engine, ...) (a domain function managing its own transaction)."""
        return await run_in_threadpool(fn, self.engine, *args, **kw)
