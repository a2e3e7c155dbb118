"""Crash safety under load: clients rate through every channel while the server is
killed (SIGKILL) at random moments and restarted; then nothing acknowledged may be
missing or stored twice, the rollups must equal a rebuild and the ledger must verify.

Each client is one real-world sender: a counter device, a call-centre system or a
browser. It logs every acknowledged receipt with its idempotency key, and retries a
request whose answer it did not get (connection refused or reset, a timeout, a 503)
with the SAME key and body: the first attempt may have committed before the kill. A
tenth of first attempts also give up waiting almost at once (a device's short timeout),
so retries race attempts still running; a third of web ratings prove the policy with a
texted code, consumed inside the rating's transaction.

The harness makes its own insurer (a fresh code per run), so on a shared test database
every check is scoped to what this run wrote.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bs4 import BeautifulSoup
from sqlalchemy import Engine, func, select

from portal import credentials, directory, ledger, rollups, verification
from portal.config import Settings
from portal.models import (
    CounterSession,
    LedgerEntry,
    Rating,
    RollupCounterDaily,
    SmsMessage,
    Staff,
)
from portal.policies import normalise_phone, phone_hash
from portal.policies import register as register_policy
from portal.ratings import day_of
from portal.secrets_files import ensure_key_file
from tests.e2e.conftest import PortalServer
from tests.e2e.conftest import _free_port as free_port

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("counter", "phone", "web")
STAGES = ("issuance", "renewal", "claim")
REQUEST_TIMEOUT = 30.0  # a request slower than this is retried (same key) like a lost one
GIVE_UP = 180.0  # a client that cannot get one answer for this long fails the run
MIN_UPTIME = 0.3  # each kill waits this long after a restart, so requests get in first
# Besides the kills, this share of first attempts stops waiting for the answer almost at
# once (a device with a short timeout): the retry then races an attempt still running.
IMPATIENT = 0.1
IMPATIENT_READ = 0.02


def verified_per_client(kills: int) -> int:
    """Policies registered per web client, each proving one rating. A client is one
    browser address, and the portal texts at most MAX_PER_IP codes per address and
    window; a code request cut off by a kill (or a timeout) after the code was stored is
    sent again and stores a second one. So each client leaves room for one such retry
    per kill, and two timeouts: with exactly MAX_PER_IP policies a fast run's client was
    refused (429) after a kill, as it should be."""
    return max(1, verification.MAX_PER_IP - kills - 2)


class GaveUp(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """What the harness registered for this run: its own insurer, branch and senders."""

    insurer: str
    branch: str
    teller: str
    call_agent: str
    devices: tuple[tuple[int, str], ...]  # (device id, bearer token) per counter client
    phone_client: tuple[str, str]  # (client id, secret)
    policies: tuple[tuple[str, str], ...] = ()  # (policy no, mobile) for verified web ratings
    phone_key: bytes = b""  # the portal's key for phone hashes (to find a code's SMS)


def prepare(engine: Engine, clients: int, phone_key: bytes = b"", policies: int = 0) -> Target:
    code = "RL" + secrets.token_hex(3).upper()
    branch, teller, agent = f"{code}-B1", f"{code}-T1", f"{code}-C1"
    with engine.begin() as conn:
        directory.add_insurer(conn, code, f"可靠性测试保险{code[2:]}")
        directory.add_branch(conn, code, branch, "可靠性测试株洲中支", "430200")
        directory.import_staff(
            conn,
            [
                directory.StaffRow(code, branch, teller, "韩柜员", "teller"),
                directory.StaffRow(code, branch, agent, "韩坐席", "call_agent"),
            ],
        )
        devices = tuple(
            credentials.add_device(conn, code, branch, f"evaluator {n}") for n in range(clients)
        )
        phone = credentials.add_client(conn, code)
        insured = tuple((f"{code}P{k:05d}", f"1390{k:07d}") for k in range(policies))
        insurer_id = directory.insurer_id(conn, code)
        for number, mobile in insured:
            digest = phone_hash(phone_key, normalise_phone(mobile))
            register_policy(conn, insurer_id, number, digest)
    return Target(code, branch, teller, agent, devices, phone, insured, phone_key)


# --- what the clients send ---------------------------------------------------------


def sign(client_id: str, secret: str, body: bytes) -> dict[str, str]:
    """The phone contract's HMAC, written independently of portal.credentials."""
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "x-client-id": client_id,
        "x-timestamp": stamp,
        "x-signature": f"sha256={mac}",
        "content-type": "application/json",
    }


def web_key(nonce: str) -> str:
    """The web form's idempotency key: the SHA-256 of its nonce (channels/web.py docstring)."""
    return "form-" + hashlib.sha256(f"idempotency:{nonce}".encode()).hexdigest()


@dataclass
class Ack:
    channel: str
    key: str  # the idempotency key as stored with the rating
    receipt_id: str
    leaf_hash: str | None  # the API receipts carry it; the web answers with a link
    attempts: int  # requests it took (more than one: a retry after a kill)
    replayed: bool = False  # answered 200: an earlier, unanswered attempt had committed
    verified: bool = False  # a web rating with the policy proven by a texted code


@dataclass
class ClientStats:
    retries: int = 0  # requests sent again after no answer (connection lost, timeout)
    unavailable: int = 0  # 503 answers (retried after Retry-After)
    server_errors: list[str] = field(default_factory=list)  # any other 5xx: a defect
    refused: list[str] = field(default_factory=list)  # an unexpected 4xx: a defect


class Sender:
    """One client: a thread posting ratings through one channel until told to stop."""

    def __init__(
        self,
        n: int,
        channel: str,
        base: str,
        target: Target,
        run: str,
        engine: Engine,
        policies: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.n, self.channel, self.base, self.target, self.run = n, channel, base, target, run
        self.engine = engine  # to read the verification code the dev SMS sender "sent"
        self.policies = list(policies)  # this client's own: one verified rating each
        self.run_ip = f"{int(target.insurer[2:4], 16)}.{int(target.insurer[4:6], 16)}"
        self.rng = random.Random(f"{run}-{n}")
        self.acks: list[Ack] = []
        self.stats = ClientStats()
        self.error: BaseException | None = None
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self.csrf_cookie = ""
        self.thread = threading.Thread(target=self._main, name=f"{channel}-{n}", daemon=True)

    def _main(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                self.acks.append(getattr(self, f"_{self.channel}")(i))
                i += 1
        except BaseException as err:  # reported by the harness
            self.error = err
        finally:
            self.http.close()

    def start(self, stop: threading.Event) -> None:
        self.stop = stop
        self.thread.start()

    def _send(
        self, make: Callable[[], httpx.Response], expect: tuple[int, ...]
    ) -> tuple[httpx.Response, int]:
        """Send until answered; a lost answer is sent again unchanged (same key, same body)."""
        deadline = time.monotonic() + GIVE_UP
        attempts, pause = 0, 0.025
        while True:
            attempts += 1
            if time.monotonic() > deadline:
                raise GaveUp(f"{self.channel}-{self.n}: no answer for {GIVE_UP:.0f} s")
            write = expect != (200,)  # not the form page
            impatient = attempts == 1 and write and self.rng.random() < IMPATIENT
            self.http.timeout = httpx.Timeout(
                REQUEST_TIMEOUT, read=IMPATIENT_READ if impatient else REQUEST_TIMEOUT
            )
            try:
                resp = make()
            except httpx.TransportError:  # no answer: maybe committed, maybe not
                self.stats.retries += 1
                pause = min(pause * 2, 1.0)  # the server takes seconds to come back
                time.sleep(pause * (0.5 + self.rng.random()))
                continue
            if resp.status_code == 503:
                self.stats.unavailable += 1
                time.sleep(min(float(resp.headers.get("retry-after", "1")), 1.0))
                continue
            if resp.status_code >= 500:
                self.stats.server_errors.append(f"{resp.status_code} {resp.text[:300]}")
                time.sleep(0.1)
                continue
            if resp.status_code not in expect:
                self.stats.refused.append(f"{resp.status_code} {resp.text[:300]}")
                raise GaveUp(f"{self.channel}-{self.n}: unexpected {resp.status_code}")
            return resp, attempts

    # counter: open a service session, then the customer's press
    def _counter(self, i: int) -> Ack:
        device_id, token = self.target.devices[self.n]
        auth = {"authorization": f"Bearer {token}"}
        key = f"{self.run}-c{self.n}-{i}"
        session = {
            "staff_no": self.target.teller,
            "stage": self.rng.choice(STAGES),
            "ticket": f"A{i % 1000:03d}",
            "idempotency_key": key + "-open",
        }
        opened, _ = self._send(
            lambda: self.http.post(
                f"{self.base}/api/v1/counter/sessions", json=session, headers=auth
            ),
            (200, 201),
        )
        body = {
            "session_id": opened.json()["session_id"],
            "level": self.rng.choice(("satisfied", "basic", "dissatisfied")),
            "idempotency_key": key,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        rated, attempts = self._send(
            lambda: self.http.post(f"{self.base}/api/v1/counter/ratings", json=body, headers=auth),
            (200, 201),
        )
        receipt, replayed = rated.json(), rated.status_code == 200
        return Ack("counter", key, receipt["id"], receipt["leaf_hash"], attempts, replayed)

    # phone: a signed keypad rating after a hotline call (signed again on every attempt)
    def _phone(self, i: int) -> Ack:
        client_id, secret = self.target.phone_client
        call_id = f"{self.run}-p{self.n}-{i}"
        scale = self.rng.choice((3, 5))
        body = json.dumps(
            {
                "call_id": call_id,
                "kind": "hotline",
                "stage": self.rng.choice(STAGES),
                "agent_no": self.target.call_agent,
                "digits": str(self.rng.randint(1, scale)),
                "scale": scale,
                "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "policy_no": None,
                "caller_phone": None,
            }
        ).encode()
        rated, attempts = self._send(
            lambda: self.http.post(
                f"{self.base}/api/v1/phone/ratings",
                content=body,
                headers=sign(client_id, secret, body),
            ),
            (200, 201),
        )
        receipt, replayed = rated.json(), rated.status_code == 200
        return Ack("phone", call_id, receipt["id"], receipt["leaf_hash"], attempts, replayed)

    # web: what a browser does: load the form, post it with its CSRF token and Origin
    def _web(self, i: int) -> Ack:
        """A browser: load the form, post it with its CSRF token (cookie and field) and
        Origin; every third rating proves the policy first with a texted code."""
        stage = self.rng.choice(STAGES)
        page, _ = self._send(
            lambda: self.http.get(
                f"{self.base}/rate",
                params={"insurer": self.target.insurer, "stage": stage},
                headers=self._browser(),
            ),
            (200,),
        )
        # The cookie is Secure: a browser keeps it for 127.0.0.1, httpx does not over http.
        self.csrf_cookie = page.cookies.get("gp_csrf") or self.csrf_cookie
        form = BeautifulSoup(page.text, "html.parser").find("form", id="rate-form")
        hidden = {i["name"]: i.get("value", "") for i in form.find_all("input", type="hidden")}
        data = hidden | {
            "stage": stage,
            "score": str(self.rng.randint(1, 5)),
            "text": f"可靠性测试第{i}条：服务态度好，办理很快。" if i % 2 else "",
            "branch": self.target.branch if i % 3 else "",
            "staff_no": self.target.teller if i % 3 == 1 else "",
        }
        verified = i % 3 == 0 and bool(self.policies)
        if verified:
            policy_no, mobile = self.policies.pop()
            data |= {"policy_no": policy_no, "phone": mobile}
            self._send(
                lambda: self.http.post(
                    f"{self.base}/rate/code", data=data, headers=self._browser()
                ),
                (200,),
            )
            data["code"] = self._texted_code(mobile)
        posted, attempts = self._send(
            lambda: self.http.post(f"{self.base}/rate", data=data, headers=self._browser()),
            (303,),
        )
        location = posted.headers["location"]  # /receipt/{id}?t={nonce}
        receipt_id = location.split("/")[2].split("?")[0]
        key = web_key(hidden["nonce"])
        return Ack("web", key, receipt_id, None, attempts, verified=verified)

    def _texted_code(self, mobile: str) -> str:
        digest = phone_hash(self.target.phone_key, normalise_phone(mobile))
        with self.engine.connect() as conn:
            body = conn.execute(
                select(SmsMessage.body)
                .where(SmsMessage.phone_hash == digest)
                .order_by(SmsMessage.id.desc())
                .limit(1)
            ).scalar_one()
        return re.search(r"\b\d{6}\b", body).group(0)  # type: ignore[union-attr]

    def _browser(self) -> dict[str, str]:
        """What a browser sends (Origin, the CSRF cookie) and the reverse proxy adds (the
        browser's own address: the code limits count per address)."""
        return {
            "origin": self.base,
            "x-forwarded-for": f"10.{self.run_ip}.{self.n + 1}",
        } | self._cookie()

    def _cookie(self) -> dict[str, str]:
        return {"cookie": f"gp_csrf={self.csrf_cookie}"} if self.csrf_cookie else {}


# --- the server, killed and restarted ------------------------------------------------


# A parent process imports the app once; each (re)start forks a child that runs the app
# under uvicorn on the same port. The child is the server that gets SIGKILLed. A restart
# then costs the app's start-up, not the seconds of importing it again (on a loaded
# machine they stretch to tens of seconds, and the kills would wait on them).
FORKER = """
import os
import signal
import sys

import uvicorn

import app

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed servers
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(2, 1)
        uvicorn.run(app.app, host="127.0.0.1", port=int(line), log_level="warning")
        os._exit(0)
    print(pid, flush=True)
"""


class CrashingServer(PortalServer):
    """The real app under uvicorn, with a background checkpoint every second so kills
    also land in the middle of sequencing; kill() is SIGKILL: no shutdown, no cleanup."""

    def __init__(self, settings: Settings, log: Any) -> None:
        super().__init__(settings, env={"CHECKPOINT_INTERVAL": "1"}, log=log)
        self.forker: subprocess.Popen[str] | None = None
        self.pid: int | None = None

    def start(self, port: int | None = None) -> str:
        if self.pid is not None:
            raise RuntimeError("the portal is already running")
        if self.forker is None:
            ledger.load_key(self.settings.ledger_key_path, self.settings.ledger_origin, create=True)
            self.port = port or self.port or free_port()
            self.forker = subprocess.Popen(
                [sys.executable, "-c", FORKER],
                env=self.environment(),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                text=True,
            )
            assert self.forker.stdout is not None and self.forker.stdin is not None
            if self.forker.stdout.readline().strip() != "ready":
                raise RuntimeError("the portal could not be imported")
        assert self.forker.stdout is not None and self.forker.stdin is not None
        self.forker.stdin.write(f"{self.port}\n")
        self.forker.stdin.flush()
        self.pid = int(self.forker.stdout.readline())
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not _alive(self.pid):
                self.stop()
                raise RuntimeError("the portal did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        _gone(self.pid)
        self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
            if not _gone(self.pid, 30):
                self.kill()
            self.pid = None
        if self.forker is not None:
            assert self.forker.stdin is not None
            self.forker.stdin.close()  # it forks no more and exits
            self.forker.wait(timeout=30)
            self.forker = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- the run and its checks ----------------------------------------------------------


@dataclass
class Report:
    database: str
    seed: int
    clients: int
    duration_s: float
    kills: int
    kills_survived: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    unacknowledged_rows: int = 0  # stored ratings no client holds a receipt for
    receipt_mismatches: int = 0  # stored leaf hash differs from the receipt's
    not_in_ledger: int = 0  # acknowledged but not sequenced after `portal checkpoint`
    retried_requests: int = 0
    acks_after_retry: int = 0  # acknowledged on a second or later attempt
    # of those, answered as a replay (API channels say so with 200): the attempt whose
    # answer was lost (a kill or a client's timeout) had committed, and the retry with the
    # same key did not store it twice
    committed_unanswered: int = 0
    unavailable_503: int = 0
    server_errors: int = 0
    refused: int = 0
    client_failures: list[str] = field(default_factory=list)
    server_tracebacks: int = 0
    rollup_drift: list[str] = field(default_factory=list)
    checkpoint: str = ""
    verify: str = ""
    ledger_tree_size: int = 0
    load_s: float = 0.0  # clients ran this long (the kills' restarts stretch the duration)
    elapsed_s: float = 0.0
    per_channel: dict[str, dict[str, int]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        bad = {
            k: v
            for k, v in asdict(self).items()
            if k
            in (
                "lost",
                "duplicated",
                "unacknowledged_rows",
                "receipt_mismatches",
                "not_in_ledger",
                "server_errors",
                "refused",
                "client_failures",
                "server_tracebacks",
                "rollup_drift",
            )
            and v
        }
        if self.kills_survived != self.kills:
            bad["kills_survived"] = self.kills_survived
        if self.checkpoint != "ok":
            bad["checkpoint"] = self.checkpoint
        if self.verify != "ok":
            bad["verify"] = self.verify
        if not all(c["acknowledged"] for c in self.per_channel.values()):
            bad["per_channel"] = self.per_channel  # every channel must have carried load
        return [f"{k}: {v}" for k, v in bad.items()]

    def figures(self) -> dict[str, Any]:
        return asdict(self)


def run(
    settings: Settings,
    owner: Engine,
    *,
    clients: int,
    duration: float,
    kills: int,
    seed: int | None = None,
    say: Callable[[str], None] = print,
) -> Report:
    """Load, kill, restart; then stop the server and check everything."""
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    database = "postgresql" if settings.is_postgres else "sqlite"
    say(
        f"reliability: seed={seed} database={database} clients={clients} "
        f"duration={duration}s kills={kills}"
    )
    rng = random.Random(seed)
    report = Report(database, seed, clients, duration, kills)
    web_clients = len(range(CHANNELS.index("web"), clients, len(CHANNELS)))
    phone_key = ensure_key_file(settings.phone_key_path)
    per_client = verified_per_client(kills)
    target = prepare(owner, clients, phone_key, policies=per_client * web_clients)
    fd, log_name = tempfile.mkstemp(prefix="portal-reliability-", suffix=".log")
    began = time.monotonic()
    with os.fdopen(fd, "wb") as log:
        senders = _load(owner, CrashingServer(settings, log), target, report, rng, say)
    report.elapsed_s = round(time.monotonic() - began, 1)
    acks = [a for s in senders for a in s.acks]
    for s in senders:
        report.retried_requests += s.stats.retries
        report.unavailable_503 += s.stats.unavailable
        report.server_errors += len(s.stats.server_errors)
        report.refused += len(s.stats.refused)
        if s.error is not None or s.thread.is_alive():
            report.client_failures.append(f"{s.thread.name}: {s.error!r}")
        for e in s.stats.server_errors[:3] + s.stats.refused[:3]:
            say(f"  {s.thread.name}: {e}")
    report.acks_after_retry = sum(a.attempts > 1 for a in acks)
    report.committed_unanswered = sum(a.attempts > 1 and a.replayed for a in acks)
    output = Path(log_name).read_text(errors="replace")
    report.server_tracebacks = output.count("Traceback")
    if report.server_tracebacks:
        say(f"  server log {log_name}:\n{output[-4000:]}")
    else:
        os.unlink(log_name)
    _check_ratings(owner, target, acks, report)
    _check_rollups(owner, target, report)
    report.checkpoint = _cli(settings, "checkpoint")
    report.verify = _cli(settings, "verify")
    _check_ledger(owner, acks, report)
    say("  " + json.dumps({k: v for k, v in report.figures().items() if v}, ensure_ascii=False))
    return report


def _load(
    owner: Engine,
    server: CrashingServer,
    target: Target,
    report: Report,
    rng: random.Random,
    say: Callable[[str], None],
) -> list[Sender]:
    """Clients rate until the duration is over and every kill has been survived."""
    base = server.start()
    started = time.monotonic()
    run_id = f"rl{report.seed}-{target.insurer[2:].lower()}"
    web = [n for n in range(report.clients) if CHANNELS[n % 3] == "web"]
    senders = [
        Sender(n, CHANNELS[n % 3], base, target, run_id, owner, _share(target, web, n))
        for n in range(report.clients)
    ]
    stop = threading.Event()
    for s in senders:
        s.start(stop)
    try:
        kills, duration = report.kills, report.duration_s
        moments = sorted(rng.uniform(0.05, 0.95) * duration for _ in range(kills))
        for n, moment in enumerate(moments, start=1):
            up = time.monotonic()
            time.sleep(max(started + moment - time.monotonic(), MIN_UPTIME))
            server.kill()
            killed = time.monotonic()
            server.start()
            report.kills_survived += 1
            say(
                f"  kill {n}/{kills} at {killed - started:.1f} s, after {killed - up:.1f} s up;"
                f" back in {time.monotonic() - killed:.1f} s"
            )
        time.sleep(max(started + duration - time.monotonic(), 0))
    finally:
        stop.set()
        for s in senders:
            s.thread.join(GIVE_UP + REQUEST_TIMEOUT + 10)
        server.stop()
        report.load_s = round(time.monotonic() - started, 1)
    return senders


def _share(target: Target, web: list[int], n: int) -> tuple[tuple[str, str], ...]:
    """A web client's own policies (none for the other channels)."""
    return target.policies[web.index(n) :: len(web)] if n in web else ()


def _check_ratings(owner: Engine, target: Target, acks: list[Ack], report: Report) -> None:
    """Every acknowledged rating exactly once, by its key and its receipt id; nothing else."""
    with owner.connect() as conn:
        insurer_id = directory.insurer_id(conn, target.insurer)
        stored = conn.execute(
            select(
                Rating.id, Rating.idempotency_key, Rating.channel, Rating.leaf_hash, Rating.verified
            ).where(Rating.insurer_id == insurer_id)
        ).all()
        sessions = conn.execute(
            select(CounterSession.rating_id).where(CounterSession.insurer_id == insurer_id)
        ).scalars()
        session_ratings = Counter(sessions)
    by_key: dict[str, list[Any]] = {}
    for row in stored:
        by_key.setdefault(row.idempotency_key, []).append(row)
    acked_ids = {a.receipt_id for a in acks}
    report.acknowledged = len(acks)
    zero = {"acknowledged": 0, "lost": 0, "duplicated": 0, "after_retry": 0, "verified": 0}
    per = {c: dict(zero) for c in CHANNELS}
    for a in acks:
        rows = by_key.get(a.key, [])
        per[a.channel]["acknowledged"] += 1
        per[a.channel]["after_retry"] += a.attempts > 1
        if not any(r.id == a.receipt_id for r in rows):
            per[a.channel]["lost"] += 1
        per[a.channel]["duplicated"] += max(len(rows) - 1, 0)
        for r in rows:
            if r.id != a.receipt_id:
                continue
            if a.leaf_hash and a.leaf_hash != r.leaf_hash:
                report.receipt_mismatches += 1  # the receipt named another leaf hash
            if a.channel == "web" and a.verified != r.verified:
                report.receipt_mismatches += 1  # a proven rating stored as unverified
        per[a.channel]["verified"] += a.verified
    # Each counter rating had a session of its own: a retried opening that opened a
    # second session (or a session left without its rating) shows up here.
    per["counter"]["duplicated"] += abs(
        sum(session_ratings.values()) - per["counter"]["acknowledged"]
    )
    report.lost = sum(c["lost"] for c in per.values())
    report.duplicated = sum(c["duplicated"] for c in per.values())
    report.unacknowledged_rows = sum(r.id not in acked_ids for r in stored)
    report.per_channel = per


ROLLUP_NAMES = ("daily", "staff", "monthly", "staff monthly")


def _scoped_rollups(conn: Any, insurer_id: int, staff_ids: list[int]) -> tuple[list[Any], ...]:
    out = []
    for all_, staff in ((rollups.DAILY, rollups.STAFF), (rollups.MONTHLY, rollups.STAFF_MONTHLY)):
        out.append(conn.execute(select(all_).where(all_.c.insurer_id == insurer_id)))
        out.append(conn.execute(select(staff).where(staff.c.staff_id.in_(staff_ids))))
    return tuple(sorted(tuple(r) for r in rows) for rows in out)


def _check_rollups(owner: Engine, target: Target, report: Report) -> None:
    """The rollups kept in each rating's transaction equal a rebuild from the ratings
    (rebuilt inside a transaction that is rolled back: the database is left as it was),
    and the counter's completion rollup equals a count of its service sessions."""
    with owner.connect() as conn:
        with conn.begin() as tx:
            insurer_id = directory.insurer_id(conn, target.insurer)
            staff_ids = list(
                conn.execute(select(Staff.id).where(Staff.insurer_id == insurer_id)).scalars()
            )
            kept = _scoped_rollups(conn, insurer_id, staff_ids)
            rollups.rebuild(conn, day_of)
            rebuilt = _scoped_rollups(conn, insurer_id, staff_ids)
            tx.rollback()
        for name, a, b in zip(ROLLUP_NAMES, kept, rebuilt, strict=True):
            if a != b:
                report.rollup_drift.append(
                    f"{name}: kept {set(a) - set(b)} rebuilt {set(b) - set(a)}"
                )
        sessions = conn.execute(
            select(
                CounterSession.opened_at, CounterSession.staff_id, CounterSession.rating_id
            ).where(CounterSession.insurer_id == insurer_id)
        ).all()
        counted: Counter[tuple[Any, ...]] = Counter()
        for s in sessions:
            key = (day_of(s.opened_at), s.staff_id)
            counted[key + ("opened",)] += 1
            counted[key + ("rated",)] += s.rating_id is not None
        kept_completion: Counter[tuple[Any, ...]] = Counter()
        for r in conn.execute(
            select(RollupCounterDaily).where(RollupCounterDaily.insurer_id == insurer_id)
        ):
            kept_completion[(r.day, r.staff_id, "opened")] += r.opened
            kept_completion[(r.day, r.staff_id, "rated")] += r.rated
        if +counted != +kept_completion:
            report.rollup_drift.append(
                f"counter completion: kept {kept_completion} counted {counted}"
            )


def _cli(settings: Settings, *args: str) -> str:
    """`portal ...` as an operator runs it, with the server's environment."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LEDGER_KEY_PATH": str(settings.ledger_key_path),
        "PHONE_KEY_PATH": str(settings.phone_key_path),
        "ENVIRONMENT": "test",
    }
    env.pop("MEILI_URL", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "portal", *args, "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return f"`portal {' '.join(args)}` still running after 300 s (stuck)"
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return "ok"


def _check_ledger(owner: Engine, acks: list[Ack], report: Report) -> None:
    """After `portal checkpoint`, every acknowledged rating has exactly one leaf."""
    ids = [a.receipt_id for a in acks]
    leaves: Counter[str] = Counter()
    with owner.connect() as conn:
        for start in range(0, len(ids), 500):
            leaves.update(
                conn.execute(
                    select(LedgerEntry.rating_id).where(
                        LedgerEntry.rating_id.in_(ids[start : start + 500])
                    )
                ).scalars()
            )
        report.ledger_tree_size = conn.execute(
            select(func.count()).select_from(LedgerEntry)
        ).scalar_one()
    report.not_in_ledger = sum(leaves[i] != 1 for i in set(ids))
