"""Clients that keep submitting ratings over HTTP while a test breaks something.

Each client thread submits one rating after another through a real channel (counter
device, phone system, web form). A submission keeps its idempotency key and body
through every retry: a 503 is retried (the body must be the JSON error shape or an
error page, never a stack trace, and carry Retry-After); anything else that is not
success ends the submission as a failure. Everything is logged for the assertions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from portal.channels.web import idempotency_key
from tests.factories import CHINA

RETRY_PAUSE = 0.5  # s: shorter than Retry-After on purpose, to press the server
SUBMISSION_DEADLINE = 90.0  # s: a submission still failing after this is a failure
NONCE = re.compile(r'name="nonce" value="([^"]+)"')
RECEIPT = re.compile(r"^/receipt/([0-9a-f]{32})\?t=")
TRACE_MARKERS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "OperationalError")


@dataclass(frozen=True)
class Attempt:
    client: str
    kind: str  # "api" or "page"
    status: int | None  # None: no HTTP answer at all
    at: float  # time.monotonic()
    problem: str = ""  # what was wrong with the answer, if anything


@dataclass
class LoadLog:
    """What every client saw; appended from many threads."""

    attempts: list[Attempt] = field(default_factory=list)
    # (channel, idempotency key) -> the receipt's rating id
    acknowledged: dict[tuple[str, str], str] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    retried: set[tuple[str, str]] = field(default_factory=set)  # keys that needed a retry
    replays: int = 0  # success answers that were a stored rating's replay (200)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt(self, a: Attempt) -> None:
        with self.lock:
            self.attempts.append(a)

    def ack(self, channel: str, key: str, rating_id: str, *, replay: bool, retried: bool) -> None:
        with self.lock:
            self.acknowledged[(channel, key)] = rating_id
            self.ack_times.append(time.monotonic())
            self.replays += replay
            if retried:
                self.retried.add((channel, key))

    def fail(self, why: str) -> None:
        with self.lock:
            self.failures.append(why)

    def acks_after(self, t: float) -> int:
        with self.lock:
            return sum(1 for x in self.ack_times if x > t)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int | None]:
        with self.lock:
            return Counter(a.status for a in self.attempts if since <= a.at <= until)

    def problems(self) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.problem]


def check_unavailable(response: httpx.Response, kind: str) -> str:
    """What is wrong with a 503 answer ("" when nothing): Retry-After, shape, no trace."""
    problems = []
    if not response.headers.get("retry-after", "").isdigit():
        problems.append("no Retry-After")
    if any(m in response.text for m in TRACE_MARKERS):
        problems.append("internals in the body")
    if kind == "api":
        try:
            error = response.json()["error"]
            ok = error["code"] == "unavailable" and error["message"] and "field" in error
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            problems.append(f"not the JSON error shape: {response.text[:200]}")
    elif "text/html" not in response.headers.get("content-type", ""):
        problems.append("not an HTML error page")
    return "; ".join(problems)


class Client(threading.Thread):
    """One client: submissions one after another until `stop` is set."""

    name_prefix = "client"

    def __init__(self, base_url: str, log: LoadLog, stop: threading.Event, n: int) -> None:
        super().__init__(name=f"{self.name_prefix}-{n}", daemon=True)
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        self.log, self.stop_event = log, stop

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.submit()
        except Exception as exc:  # noqa: BLE001 - a client bug must show up as a failure
            self.log.fail(f"{self.name} crashed: {exc!r}")
        finally:
            self.http.close()

    def submit(self) -> None:
        raise NotImplementedError

    def send(self, kind: str, request: Callable[[], httpx.Response]) -> httpx.Response | None:
        """Send until an answer that is not a 503; None if the deadline passed first."""
        deadline = time.monotonic() + SUBMISSION_DEADLINE
        while time.monotonic() < deadline:
            try:
                response = request()
            except httpx.TransportError as exc:
                self.log.attempt(Attempt(self.name, kind, None, time.monotonic(), repr(exc)))
                time.sleep(RETRY_PAUSE)
                continue
            problem = check_unavailable(response, kind) if response.status_code == 503 else ""
            self.log.attempt(
                Attempt(self.name, kind, response.status_code, time.monotonic(), problem)
            )
            if response.status_code != 503:
                return response
            time.sleep(RETRY_PAUSE)
        return None

    def attempts_for(self, start: int) -> bool:
        """Did the submission that began at attempt index `start` need a retry?"""
        with self.log.lock:
            mine = [a for a in self.log.attempts[start:] if a.client == self.name]
        return any(a.status in (None, 503) for a in mine)

    def mark(self) -> int:
        with self.log.lock:
            return len(self.log.attempts)

    def expect(self, response: httpx.Response | None, ok: set[int], what: str) -> bool:
        if response is None:
            self.log.fail(f"{self.name}: {what}: no success before the deadline")
            return False
        if response.status_code not in ok:
            self.log.fail(f"{self.name}: {what}: {response.status_code} {response.text[:300]}")
            return False
        return True


class CounterClient(Client):
    """A counter device: open a service session, then the customer's one press."""

    name_prefix = "counter"

    def __init__(self, *args: object, device_id: int, token: str, staff_no: str) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.device_id, self.staff_no = device_id, staff_no
        self.headers = {"authorization": f"Bearer {token}"}

    def submit(self) -> None:
        start = self.mark()
        opened = self.send(
            "api",
            lambda: self.http.post(
                "/api/v1/counter/sessions",
                headers=self.headers,
                json={
                    "staff_no": self.staff_no,
                    "stage": "claim",
                    "idempotency_key": uuid.uuid4().hex,
                },
            ),
        )
        if not self.expect(opened, {200, 201}, "open session"):
            return
        assert opened is not None
        key = uuid.uuid4().hex
        body = {
            "session_id": opened.json()["session_id"],
            "level": secrets.choice(["satisfied", "basic", "dissatisfied"]),
            "idempotency_key": key,
            "occurred_at": datetime.now(CHINA).isoformat(),
        }
        rated = self.send(
            "api",
            lambda: self.http.post("/api/v1/counter/ratings", headers=self.headers, json=body),
        )
        if self.expect(rated, {200, 201}, "rate"):
            assert rated is not None
            self.log.ack(
                "counter",
                key,
                rated.json()["id"],
                replay=rated.status_code == 200,
                retried=self.attempts_for(start),
            )


class PhoneClient(Client):
    """A call centre's system: signed keypad ratings, the call id as the key."""

    name_prefix = "phone"

    def __init__(self, *args: object, client_id: str, secret: str, agent_no: str) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.client_id, self.secret, self.agent_no = client_id, secret, agent_no

    def _signed(self, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        return {
            "x-client-id": self.client_id,
            "x-timestamp": stamp,
            "x-signature": f"sha256={mac.hexdigest()}",
            "content-type": "application/json",
        }

    def submit(self) -> None:
        start, call_id = self.mark(), f"C-{uuid.uuid4().hex}"
        body = json.dumps(
            {
                "call_id": call_id,
                "kind": "hotline",
                "stage": "renewal",
                "agent_no": self.agent_no,
                "digits": str(secrets.choice(range(1, 6))),
                "scale": 5,
                "occurred_at": (datetime.now(CHINA) - timedelta(seconds=30)).isoformat(),
            }
        ).encode()
        rated = self.send(
            "api",
            lambda: self.http.post(
                "/api/v1/phone/ratings", content=body, headers=self._signed(body)
            ),
        )
        if self.expect(rated, {200, 201}, "phone rating"):
            assert rated is not None
            self.log.ack(
                "phone",
                call_id,
                rated.json()["id"],
                replay=rated.status_code == 200,
                retried=self.attempts_for(start),
            )


TEXTS = ["柜台办理很快，态度很好", "理赔等了太久，电话没人接", "续保提醒及时，点赞", "服务一般"]


class WebClient(Client):
    """A visitor on the rating form: load it (a page), send a review with a text."""

    name_prefix = "web"

    def __init__(self, *args: object, insurer: str) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.insurer = insurer
        self.csrf = secrets.token_urlsafe(32)  # the anonymous double-submit cookie
        # Sent by hand: the app's cookies are Secure, and this is plain HTTP on 127.0.0.1.
        self.http.headers["cookie"] = f"gp_csrf={self.csrf}"
        self.n = 0

    def submit(self) -> None:
        start = self.mark()
        page = self.send("page", lambda: self.http.get(f"/rate?insurer={self.insurer}&stage=claim"))
        if not self.expect(page, {200}, "rating form"):
            return
        assert page is not None
        match = NONCE.search(page.text)
        if match is None:
            self.log.fail(f"{self.name}: no nonce in the form")
            return
        nonce, self.n = match.group(1), self.n + 1
        form = {
            "csrf_token": self.csrf,
            "nonce": nonce,
            "insurer": self.insurer,
            "stage": "claim",
            "score": str(1 + self.n % 5),
            "text": f"{TEXTS[self.n % len(TEXTS)]}（{self.name}第{self.n}条）",
        }
        sent = self.send("page", lambda: self.http.post("/rate", data=form))
        if not self.expect(sent, {303}, "rating form sent"):
            return
        assert sent is not None
        receipt = RECEIPT.match(sent.headers.get("location", ""))
        if receipt is None:
            self.log.fail(f"{self.name}: no receipt link: {sent.headers.get('location')}")
            return
        self.log.ack(
            "web",
            idempotency_key(nonce),
            receipt.group(1),
            replay=False,
            retried=self.attempts_for(start),
        )


def run_clients(clients: list[Client]) -> None:
    for c in clients:
        c.start()


def stop_clients(clients: list[Client], stop: threading.Event, timeout: float = 120.0) -> None:
    """Let each finish the submission it is in, then end."""
    stop.set()
    for c in clients:
        c.join(timeout)
        assert not c.is_alive(), f"{c.name} did not finish"


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    """Poll until `condition()`; returns the seconds it took. A deadline, never luck."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - began


@dataclass(frozen=True)
class Health:
    at: float
    status: int
    body: dict[str, Any]


class HealthProbe(threading.Thread):
    """Samples /healthz every `step` seconds, for the backlog curve and the states seen."""

    def __init__(self, base_url: str, step: float = 0.25) -> None:
        super().__init__(name="healthz", daemon=True)
        self.base_url, self.step = base_url, step
        self.samples: list[Health] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=15) as http:
            while not self.done.is_set():
                self.samples.append(get_health(http))
                self.done.wait(self.step)

    def finish(self) -> list[Health]:
        self.done.set()
        self.join(30)
        return self.samples


def get_health(http: httpx.Client) -> Health:
    response = http.get("/healthz")
    return Health(time.monotonic(), response.status_code, response.json())
