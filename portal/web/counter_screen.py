"""The evaluator screen at /counter (服务评价器): one static page, the device's own JS.

The page itself is public and holds no data: the device pairs in the browser with its
bearer token (kept in localStorage) and talks to the counter API (counter_api.py).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from portal.models import STAGES
from portal.web.rendering import render
from portal.web.routing import Router

router = Router()

RETURN_TO_IDLE_SECONDS = 5  # the thank-you state, then the next customer
RETRY_SECONDS = 5  # how often queued ratings are retried while offline


@router.route("/counter", roles="public")
async def counter_screen(request: Request) -> Response:
    context = {
        "stages": STAGES,
        "return_seconds": RETURN_TO_IDLE_SECONDS,
        "retry_seconds": RETRY_SECONDS,
    }
    return render(request, "counter/screen.html", context, headers={"Cache-Control": "no-store"})
