"""Schemathesis against the channel API's own description (/api/v1/openapi.json).

Every operation gets positive data (valid by the schema) and negative data (schemathesis'
fuzzing mode: each case breaks the schema somewhere: a wrong type, a missing field, bad
JSON, a missing or malformed credential). The app is called in-process (Starlette's
TestClient, no network).

Signed and authenticated operations are called with a valid credential, so their payload
validation is really reached: a device bearer token for the counter endpoints, an HMAC
signature over the exact bytes sent for the phone and policies endpoints. A negative case
whose only fault is the credential is sent as generated (it must get 401), and every
secured operation is also called once without any credential.

Checks on every response: no 5xx; status code, content type, headers and body conform to
the spec (schemathesis' response checks); every 4xx carries the Error shape; a negative
case gets a 4xx, leaves every table's row count unchanged, and (when it carried a valid
credential) is not refused for authentication. A summary table is printed per operation.

Bounded for CI: HOSTILE_EXAMPLES cases per operation and mode (default 25), derandomized.
Scale up with e.g. HOSTILE_EXAMPLES=500.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import credentials
from portal.web.openapi import DOCUMENT
from tests.factories import World
from tests.hostile.conftest import REPORT, changed, row_counts
from tests.web.conftest import BASE

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "25"))
ERROR_STATUSES = sorted(
    int(c) for c in DOCUMENT["paths"]["/api/v1/insurers"]["get"]["responses"] if c.startswith("4")
)
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": ERROR_STATUSES},
        }
    }
)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
]
ERROR_KEYS = {"code", "message", "field"}
STATS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
FAILURES: dict[str, list[str]] = collections.defaultdict(list)


def _scheme(operation: Any) -> str | None:
    for requirement in operation.definition.raw.get("security", []):
        return next(iter(requirement))
    return None


class Credentials:
    """A valid device token and API client, and how to attach them to a request."""

    def __init__(self, token: str, client_id: str, secret: str) -> None:
        self.token, self.client_id, self.secret = token, client_id, secret

    def attach(self, scheme: str, headers: dict[str, Any], body: bytes) -> None:
        for name in list(headers):
            if name.lower() in ("authorization", "x-client-id", "x-timestamp", "x-signature"):
                del headers[name]
        if scheme == "device":
            headers["Authorization"] = f"Bearer {self.token}"
        elif scheme == "client":
            stamp = str(int(time.time()))
            mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
            headers["X-Client-Id"] = self.client_id
            headers["X-Timestamp"] = stamp
            headers["X-Signature"] = f"sha256={mac.hexdigest()}"


@pytest.fixture(scope="module")
def creds(engine: Engine, users: World) -> Credentials:
    with engine.begin() as conn:
        _, token = credentials.add_device(conn, users.insurer_a, users.branch_a, "schemathesis")
        client_id, secret = credentials.add_client(conn, users.insurer_a)
    return Credentials(token, client_id, secret)


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """The table of cases per operation, printed at the end of the run."""
    yield
    columns = ("positive", "negative", "no_auth", "2xx", "neg_2xx", "4xx", "5xx", "failures")
    lines = [f"{EXAMPLES} examples per operation and mode (HOSTILE_EXAMPLES), derandomized", ""]
    lines.append(f"{'operation':<54}" + "".join(f"{c:>9}" for c in columns))
    total: collections.Counter[str] = collections.Counter()
    for label, stats in sorted(STATS.items()):
        lines.append(f"{label:<54}" + "".join(f"{stats[c]:>9}" for c in columns))
        total.update(stats)
    name = f"total: {len(STATS)} operations"
    lines.append(f"{name:<54}" + "".join(f"{total[c]:>9}" for c in columns))
    REPORT["schemathesis: cases per operation"] = lines


def _request(case: Any, creds: Credentials, with_auth: bool) -> tuple[str, str, dict, bytes, dict]:
    kw = case.as_transport_kwargs(base_url=BASE)
    headers = dict(kw.get("headers") or {})
    if "json" in kw:
        body = json.dumps(kw["json"]).encode()
    elif kw.get("data") is not None:
        data = kw["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    else:
        body = b""
    scheme = _scheme(case.operation)
    if with_auth and scheme:
        creds.attach(scheme, headers, body)
    return kw["method"], kw["url"], headers, body, dict(kw.get("params") or {})


def _negated(case: Any, location: ParameterLocation) -> bool:
    component = case.meta.components.get(location)
    return component is not None and component.mode.is_negative


def _check(client: TestClient, engine: Engine, creds: Credentials, case: Any) -> None:
    mode = case.meta.generation.mode
    label = case.operation.label
    stats = STATS[label]
    secured = _scheme(case.operation) is not None
    negative = mode.is_negative
    # A case whose credential header was broken on purpose is sent as generated (401);
    # every other case carries a valid one, so that its payload is what gets judged.
    with_auth = not (negative and secured and _negated(case, ParameterLocation.HEADER))
    method, url, headers, body, params = _request(case, creds, with_auth)
    raw_headers = {k: str(v).encode("latin-1", "replace") for k, v in headers.items()}
    before = row_counts(engine) if negative or not with_auth else None
    try:
        response = client.request(method, url, headers=raw_headers, content=body, params=params)
    except Exception as exc:  # the TestClient re-raises what would have been a 500
        stats["5xx"] += 1
        stats["failures"] += 1
        FAILURES[label].append(
            f"{mode.value} {method} {url} params={params} body={body[:300]!r}"
            f" -> server error {exc!r}"
        )
        return
    stats["negative" if negative else "positive"] += 1
    if not with_auth:
        stats["no_auth"] += 1
    stats[f"{response.status_code // 100}xx"] += 1
    if negative and response.status_code < 300:
        # Accepted only where schemathesis itself judges the data valid as sent (e.g. an
        # unknown query parameter, a number that is the same string on the wire); any
        # other accepted negative case fails negative_data_rejection below.
        stats["neg_2xx"] += 1
    problems = []
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (Exception, BaseExceptionGroup) as exc:  # FailureGroup: every failed check
        problems.append(str(exc))
    if 400 <= response.status_code < 500:
        error = response.json().get("error") if response.content else None
        if not isinstance(error, dict) or set(error) != ERROR_KEYS:
            problems.append(f"{response.status_code} without the Error shape: {response.text}")
        if with_auth and secured and response.status_code == 401:
            problems.append(f"refused a valid credential: {response.text}")
    if before is not None:
        after = row_counts(engine)
        if after != before:
            problems.append(f"rows changed: {changed(before, after)}")
    path_broken = _negated(case, ParameterLocation.PATH) and response.status_code == 404
    if not with_auth and response.status_code != 401 and not path_broken:
        problems.append(f"no valid credential but {response.status_code}: {response.text[:300]}")
    if problems:
        stats["failures"] += 1
        if len(FAILURES[label]) < 5:
            FAILURES[label].append(
                f"{mode.value} {method} {url} params={params} body={body[:300]!r} "
                f"headers={headers}\n-> {response.status_code} {response.text[:500]}\n"
                + "\n".join(problems)
            )


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_operation(operation: Any, client: TestClient, engine: Engine, creds: Credentials) -> None:
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(DOCUMENT))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            _check(client, engine, creds, case)

        try:
            run()
        except Unsatisfiable:  # nothing of this operation can be broken (e.g. no parameters)
            assert mode.is_negative, f"no positive case for {operation.label}"
            STATS[operation.label]["negative"] += 0
    assert not FAILURES[operation.label], "\n\n".join(FAILURES[operation.label])


SECURED = [op for op in OPERATIONS if _scheme(op)]


@pytest.mark.parametrize("operation", SECURED, ids=[op.label for op in SECURED])
def test_without_credentials_401(operation: Any, client: TestClient, engine: Engine) -> None:
    """One plain request with a well-formed body and no credential at all: 401, nothing stored."""
    path = operation.path.replace("{task_id}", "1")
    body = b"{}" if operation.method.upper() == "POST" else b""
    before = row_counts(engine)
    response = client.request(
        operation.method.upper(), path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 401, response.text
    assert set(response.json()["error"]) == ERROR_KEYS
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert row_counts(engine) == before
    STATS[operation.label]["no_auth"] += 1
