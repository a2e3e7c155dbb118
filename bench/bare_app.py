"""The ceilings: a bare Starlette app doing only the HTTP part of the portal's work.

    uvicorn bench.bare_app:app --workers N --loop uvloop --http httptools

- `POST /api/v1/counter/ratings` and `POST /api/v1/phone/ratings`: read and parse the
  same JSON body as the counter endpoint (portal.web.api: size limit, content type,
  UTF-8 JSON object, the typed fields), check a bearer token is present, answer 201
  with a receipt-shaped JSON body. No database, no signature, no hashing.
- `GET /insurers/{code}`: render the insurer page template (the whole page, or its
  `reviews` block for an htmx request) through the portal's own template environment
  and `render()`, from a context captured once from the benchmark database (pickled at
  BENCH_PAGE_CONTEXT): the same context shape, no database per request.
- `GET /ping`: readiness.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from portal.accounts import ANONYMOUS
from portal.web.api import read_json, required_text, time_field
from portal.web.rendering import make_templates, render
from portal.web.security import ANON_CSRF_COOKIE, SecurityHeaders

RECEIPT = {
    "id": "0" * 32,
    "leaf_hash": "0" * 64,
    "recorded_at": "2026-01-01T00:00:00.000000Z",
}


def _context() -> dict[str, Any]:
    path = os.environ.get("BENCH_PAGE_CONTEXT")
    if not path:
        return {}
    with open(path, "rb") as f:
        return dict(pickle.load(f))  # noqa: S301 - our own file, written by bench/pages.py


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    portal = SimpleNamespace(templates=make_templates(), context=_context())
    yield {"portal": portal}


async def parse(request: Request) -> tuple[Response | None, bytes]:
    """The HTTP part of a rating: (a 401 answer or None, the raw body)."""
    if not request.headers.get("authorization") and not request.headers.get("x-signature"):
        return JSONResponse({"error": "missing_token"}, status_code=401), b""
    body, raw = await read_json(request)
    if "session_id" in body:  # counter
        fields = ("session_id", "level", "idempotency_key")
    else:  # phone
        fields = ("call_id", "kind", "stage", "digits")
    for name in fields:
        required_text(body, name)
    time_field(body, "occurred_at")
    return None, raw


async def ingest(request: Request) -> Response:
    refused, _ = await parse(request)
    return refused or JSONResponse(RECEIPT, status_code=201)


async def insurer_page(request: Request) -> Response:
    request.state.principal = ANONYMOUS
    data = dict(request.state.portal.context)
    push = {"HX-Push-Url": data.get("base", "/")}
    response = render(request, "public/insurer.html", data, block="reviews", headers=push)
    cookie = getattr(request.state, "new_csrf_cookie", None)
    if cookie:  # as the portal's route guard does for a visitor without one
        response.set_cookie(ANON_CSRF_COOKIE, cookie, httponly=True, secure=True, samesite="lax")
    return response


async def ping(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/api/v1/counter/ratings", ingest, methods=["POST"]),
        Route("/api/v1/phone/ratings", ingest, methods=["POST"]),
        Route("/insurers/{code}", insurer_page),
        Route("/ping", ping),
    ],
    middleware=[Middleware(SecurityHeaders)],
    lifespan=lifespan,
)
