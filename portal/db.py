"""Engines, connection settings and migration glue for SQLite and PostgreSQL."""

from __future__ import annotations

import ctypes
import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from portal.config import ROOT, Settings
from portal.models import APPEND_ONLY, SQLModel

SQLITE_DBCONFIG_DEFENSIVE = 1010
BUSY_TIMEOUT_SECONDS = 30
SQLITE_POOL = 40


def _sqlite_handle(conn: sqlite3.Connection) -> int | None:
    """The `sqlite3 *` behind a Python 3.11 connection (first field after PyObject_HEAD)."""
    return ctypes.c_void_p.from_address(id(conn) + 2 * ctypes.sizeof(ctypes.c_void_p)).value


def enable_defensive(conn: sqlite3.Connection, path: str) -> bool:
    """Turn on SQLITE_DBCONFIG_DEFENSIVE: ordinary SQL can no longer corrupt the file."""
    if hasattr(conn, "setconfig"):  # Python 3.12+
        conn.setconfig(SQLITE_DBCONFIG_DEFENSIVE, True)
        return True
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)  # resolves the very libsqlite3 the module uses
    handle = _sqlite_handle(conn)
    lib.sqlite3_db_filename.restype = ctypes.c_char_p
    lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    # Guard against a layout we do not expect: the handle must name our database file.
    if not handle or lib.sqlite3_db_filename(handle, b"main").decode() != path:
        return False
    out = ctypes.c_int(0)
    lib.sqlite3_db_config(
        ctypes.c_void_p(handle),
        ctypes.c_int(SQLITE_DBCONFIG_DEFENSIVE),
        ctypes.c_int(1),
        ctypes.byref(out),
    )
    return out.value == 1


class WriteLockedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions also hold a lock that wakes the next
    writer at once, in this process and across processes.

    SQLite's busy handler waits for the write lock by sleeping 1, 2, 5, ... up to 100 ms
    at a time, so a writer often sleeps long after the lock was released, and nothing
    makes the waiting writers take turns: with two worker processes one of them could
    wait for seconds (docs/performance.md). Writers of one process queue on a
    threading.Lock; the one holding it then takes an exclusive flock() on a file next to
    the database, which writers of the other processes poll every 2 ms at most. SQLite's
    own locking still decides correctness (other programs take only that); these locks
    only decide who goes next, quickly. Taken at BEGIN IMMEDIATE (see on_begin), released
    when the transaction ends.
    """

    write_lock: threading.Lock | None = None
    file_lock: int | None = None  # the descriptor holding the flock()

    def hold(self, lock: threading.Lock, fd: int | None, timeout: float) -> None:
        if not lock.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked (in-process writers queue)")
        self.write_lock = lock
        if fd is None:
            return
        deadline, pause = time.monotonic() + timeout, 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.file_lock = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.release()
                    raise sqlite3.OperationalError(
                        "database is locked (writers of other processes)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def release(self) -> None:
        fd, self.file_lock = self.file_lock, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        lock, self.write_lock = self.write_lock, None
        if lock is not None:
            lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release()


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_LOCK_FILES: dict[tuple[str, int], int] = {}
# On by default; SQLITE_WRITE_LOCK=0 leaves the waiting to SQLite's busy handler
# (bench/ab_group_commit.py compares both).
WRITE_LOCK = os.environ.get("SQLITE_WRITE_LOCK", "1") == "1"


def _write_lock(path: str) -> threading.Lock:
    return _WRITE_LOCKS.setdefault(path, threading.Lock())


def _lock_file(path: str) -> int | None:
    """This process's descriptor of `<database>-writer.lock` (per process id: a forked
    child must not share its parent's open file, or both would hold the flock)."""
    if path in ("", ":memory:") or path.endswith("/:memory:"):
        return None
    key = (path, os.getpid())
    if key not in _LOCK_FILES:
        _LOCK_FILES[key] = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    return _LOCK_FILES[key]


def _configure_sqlite(engine: Engine) -> None:
    path = str(Path(engine.url.database or "").resolve())
    lock = _write_lock(path)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acknowledged rating survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cur.execute("PRAGMA trusted_schema=OFF")
        cur.execute("PRAGMA recursive_triggers=ON")  # REPLACE then fires DELETE triggers
        cur.close()
        enable_defensive(dbapi_conn, path)

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # Writers: IMMEDIATE takes the write lock up front, so concurrent writers queue on
        # busy_timeout instead of failing with SQLITE_BUSY when a read turns into a write.
        # Readers (see `reading`) take no lock at all: WAL gives them a snapshot.
        read_only = conn.get_execution_options().get("read_only", False)
        if read_only:
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.driver_connection
        locked = WRITE_LOCK and isinstance(dbapi_conn, WriteLockedConnection)
        if locked and dbapi_conn.write_lock is None:
            dbapi_conn.hold(lock, _lock_file(path), BUSY_TIMEOUT_SECONDS)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_conn, WriteLockedConnection):
                dbapi_conn.release()
            raise


def make_engine(url: str, **kw: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "factory": WriteLockedConnection}
        # As many pooled connections as threadpool threads (anyio's 40): with the default
        # 5, most concurrent reads opened an overflow connection (PRAGMAs, defensive mode)
        # and closed it after, ~11% of a cached insurer page's CPU (docs/performance.md).
        kw.setdefault("pool_size", SQLITE_POOL)
        kw.setdefault("max_overflow", 10)
        engine = create_engine(url, connect_args=connect_args, **kw)
        _configure_sqlite(engine)
        return engine
    # pre_ping: after a server restart, pooled connections are dead; each is tested at
    # checkout and replaced. connect_timeout: an unreachable server fails a request in
    # seconds (a 503) instead of hanging it.
    kw.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT})
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kw)


CONNECT_TIMEOUT = 5  # seconds
# SQLSTATE classes of a server that is out, not of a bad query: connection exception,
# transaction rollback (deadlock, serialization: the same request again succeeds),
# insufficient resources, operator intervention (shutdown, starting up).
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57")
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file")


def unavailable(exc: BaseException) -> bool:
    """Is this the database being out for a while (retry later), not a bug?

    Pool timeouts and disconnects, a server that refuses connections or is shutting
    down, a deadlock, SQLite still locked after its busy timeout. Bad SQL or a broken
    constraint is not: those stay errors.
    """
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return str(exc.orig).startswith(_SQLITE_UNAVAILABLE)
    sqlstate = getattr(exc.orig, "sqlstate", None)  # None: no server answered at all
    return sqlstate is None or str(sqlstate)[:2] in _UNAVAILABLE_CLASSES


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it never takes the write lock."""
    return engine.connect().execution_options(read_only=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: re-reading every row after commit cost 20-40% (perf notes).
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "portal" / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def migrate(settings: Settings) -> None:
    """Create or upgrade the schema as the owner, then grant the app role its rights."""
    from alembic import command

    command.upgrade(alembic_config(settings.database_url), "head")
    if settings.is_postgres and not settings.app_database_url:
        engine = make_engine(settings.database_url)
        try:
            grant_app_role(engine, settings.app_role)
        finally:
            engine.dispose()


# What the web app's role may do per table. Nothing may be deleted by the app: ratings
# and their companions are append-only, everything else is ended or hidden by UPDATE.
APP_PRIVILEGES = dict.fromkeys((*APPEND_ONLY, "phone_calls", "visit_attempts"), "SELECT, INSERT")
DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE"


def grant_app_role(engine: Engine, role: str) -> None:
    """Create the app's role if needed and give it exactly APP_PRIVILEGES."""
    if not role.replace("_", "").isalnum():
        raise ValueError(f"bad role name {role!r}")
    tables = sorted(SQLModel.metadata.tables)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(7262001)"))  # CREATE ROLE races
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(text(f'REVOKE ALL ON {", ".join(tables)} FROM "{role}"'))
        for table in tables:
            privileges = APP_PRIVILEGES.get(table, DEFAULT_PRIVILEGES)
            conn.execute(text(f'GRANT {privileges} ON {table} TO "{role}"'))
        conn.execute(text(f'GRANT SELECT ON alembic_version TO "{role}"'))
        conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
