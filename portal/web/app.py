"""The ASGI application: lifespan state, routes, middleware and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from portal import ledger, search, sms
from portal.config import ROOT, Settings, load_settings
from portal.db import make_engine, unavailable
from portal.page_cache import LoopVersions, PageCache
from portal.search.outbox import catch_up
from portal.secrets_files import ensure_key_file
from portal.web import (
    audiences,
    auth,
    counter_api,
    counter_pages,
    counter_screen,
    insurers,
    ledger_api,
    moderation_pages,
    openapi,
    phone_api,
    phone_pages,
    policies_api,
    public,
    public_api,
    rankings_pages,
    rate,
    search_pages,
    threads,
    workspace,
)
from portal.web.api import MAX_BODY
from portal.web.errors import HANDLERS, refuse
from portal.web.rendering import make_templates
from portal.web.security import BodyLimit, SecurityHeaders
from portal.web.state import Portal

log = logging.getLogger("portal")


class _HideReceiptTokens(logging.Filter):
    """Receipt links carry their secret as ?t=...; access logs must not keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                RECEIPT_TOKEN.sub(r"\1t=[hidden]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


RECEIPT_TOKEN = re.compile(r"([?&])t=[^&\s\"]+")
logging.getLogger("uvicorn.access").addFilter(_HideReceiptTokens())
ROUTERS = (
    public.router,
    auth.router,
    audiences.router,
    ledger_api.router,
    counter_api.router,
    counter_screen.router,
    counter_pages.router,
    openapi.router,
    rate.router,
    insurers.router,
    search_pages.router,
    public_api.router,
    policies_api.router,
    workspace.router,
    moderation_pages.router,
    threads.router,
    phone_api.router,
    phone_pages.router,
    rankings_pages.router,
)


async def _every(seconds: float, job: Callable[[], Any], name: str) -> None:
    """Run a blocking job periodically off the event loop; failures are logged, not fatal.

    A database outage is expected to end: one line per round, not a traceback every
    two seconds; the engine reconnects by itself once the server is back."""
    while True:
        try:
            await run_in_threadpool(job)
        except Exception as exc:
            if unavailable(exc):
                log.warning("background job %s: database unavailable; will retry", name)
            else:
                log.exception("background job %s failed; will retry", name)
        await asyncio.sleep(seconds)


def _background(portal: Portal) -> list[asyncio.Task[None]]:
    tasks = [
        asyncio.create_task(
            _every(2.0, lambda: catch_up(portal.engine, portal.search), "search-outbox")
        )
    ]
    if portal.settings.checkpoint_interval > 0:
        tasks.append(
            asyncio.create_task(
                _every(
                    portal.settings.checkpoint_interval,
                    lambda: ledger.checkpoint(portal.engine, portal.key),
                    "checkpoint",
                )
            )
        )
    return tasks


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request body arrived (a device's short timeout, a
    closed tab): nothing was read, so nothing was done; nobody is left to answer, and it
    is not a server error (no 500, no stack trace in the log)."""
    return Response(status_code=400)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.runtime_database_url)
        index = search.make_index(settings, engine)
        with contextlib.suppress(Exception):  # a search outage must not stop the portal
            await run_in_threadpool(index.ensure)
        phone_key = ensure_key_file(settings.phone_key_path)
        portal = Portal(
            settings=settings,
            engine=engine,
            templates=make_templates(reload=settings.environment == "development"),
            key=ledger.load_key(settings.ledger_key_path, settings.ledger_origin),
            search=index,
            phone_key=phone_key,
            sms=sms.make_sender(settings, engine, phone_key),
            page_cache=PageCache(settings.page_cache_mb * 2**20),
            versions=LoopVersions.for_engine(engine) if settings.page_cache_mb else None,
        )
        tasks = _background(portal)
        try:
            yield {"portal": portal}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if portal.versions is not None:
                portal.versions.close()
            engine.dispose()

    routes = [r for router in ROUTERS for r in router.routes]
    routes.append(Mount("/static", StaticFiles(directory=ROOT / "static"), name="static"))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, production=settings.environment == "production"),
            Middleware(BodyLimit, refuse=refuse, limit=MAX_BODY),
        ],
        exception_handlers={**HANDLERS, ClientDisconnect: _client_gone},  # type: ignore[arg-type]
        lifespan=lifespan,
    )
