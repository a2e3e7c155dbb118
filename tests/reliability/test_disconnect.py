"""A client that hangs up before its request body has arrived (a device's short timeout,
a closed browser tab) is not a server error: no 500 and no stack trace in the log. The
crash harness found these when its clients gave up waiting; here the ASGI app gets the
disconnect directly, so the test needs no timing."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from portal import ledger
from portal.config import Settings
from portal.web.app import create_app

HALF_BODIES = [
    ("/rate", b"application/x-www-form-urlencoded", b"insurer=TA&stage=cl"),  # CSRF reads it
    ("/api/v1/phone/ratings", b"application/json", b'{"call_id": "C-'),  # signature reads it
    ("/api/v1/policies", b"application/json", b'{"policies": ['),
]


@pytest.mark.parametrize(("path", "content_type", "half"), HALF_BODIES)
def test_a_client_gone_mid_body_is_no_server_error(
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    path: str,
    content_type: bytes,
    half: bytes,
) -> None:
    ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:  # runs the lifespan
        headers = [
            (b"host", b"testserver"),
            (b"content-type", content_type),
            (b"content-length", b"4096"),
            (b"x-client-id", b"gpc_0000000000000000"),
            (b"x-timestamp", b"1763690000"),
            (b"x-signature", b"sha256=00"),
        ]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "server": ("testserver", 443),
            "client": ("10.9.9.9", 50000),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "state": dict(client.app_state),
        }
        incoming = iter(
            [
                {"type": "http.request", "body": half, "more_body": True},
                {"type": "http.disconnect"},
            ]
        )
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return next(incoming)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with caplog.at_level(logging.ERROR):
            anyio.run(app, scope, receive, send)  # raises if the disconnect escapes
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses and statuses[0] < 500, statuses
    assert not [r for r in caplog.records if r.exc_info], caplog.text
