"""The real app under uvicorn (tests/e2e's PortalServer) for the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from portal.config import Settings
from tests.e2e.conftest import PortalServer
from tests.reliability.harness import Target, prepare


@pytest.fixture(scope="module")
def target(owner_engine: Engine) -> Target:
    """An insurer of this module's own, with a counter device and a phone client."""
    return prepare(owner_engine, clients=1)


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    portal = PortalServer(settings)
    yield portal.start()
    portal.stop()
