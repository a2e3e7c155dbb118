"""ASGI entry point: `uvicorn app:app` (or `portal serve`)."""

from portal.web.app import create_app

app = create_app()
