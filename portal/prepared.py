"""Hot statements, compiled once per dialect and run on the driver's own connection.

Why: a rating is about a dozen small statements (docs/performance.md). Through
SQLAlchemy's Connection.execute each cost ~100-140 µs of CPU on this machine (cache key,
execution context, result set-up, events), several times what SQLite takes to run it,
and the group-commit writer runs them one after another under the GIL. A `Prepared`
statement is compiled by SQLAlchemy once per dialect (and per set of columns, for an
INSERT), with its bind and result processors taken from the column types, so values
are stored exactly as SQLAlchemy stores them (SQLite's DATETIME strings, booleans as
0/1) and read back the same way. Errors from the driver are raised as SQLAlchemy's
(IntegrityError, OperationalError, ...), so callers and the writer's retry see no
difference. It runs in the caller's transaction: the same DBAPI connection.

Only for statements on the ratings' write path; everything else goes through
SQLAlchemy as usual. Not handled, because none of these statements needs it: result
columns of Numeric or Float type on psycopg (their result processor wants the cursor's
type code), and UPDATEs of tables with `onupdate` defaults (Core would fill them in).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert

_MISSING = object()


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: bool
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]  # name, processor, constant
    row: Any  # a namedtuple class for a statement that returns rows, else None
    results: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, process, constant in self.binds:
            value = params.get(name, constant)
            if value is _MISSING:
                raise KeyError(f"statement parameter {name!r} was not given")
            values.append(value if process is None or value is None else process(value))
        if self.positional:
            return tuple(values)
        return dict(zip((b[0] for b in self.binds), values, strict=True))

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Any]:
        procs = self.results
        if not any(procs):
            return [self.row._make(r) for r in raw]
        return [
            self.row._make(
                [v if p is None or v is None else p(v) for p, v in zip(procs, r, strict=True)]
            )
            for r in raw
        ]


class Prepared:
    """A Core statement run on the DBAPI connection of the caller's transaction."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[type, tuple[str, ...] | None], _Plan] = {}

    def _plan(self, dialect: Dialect, keys: tuple[str, ...] | None) -> _Plan:
        found = self._plans.get((type(dialect), keys))
        if found is not None:
            return found
        stmt = self.stmt
        # inline(): no implicit RETURNING of the key on PostgreSQL; nothing here reads it.
        target = stmt.inline() if isinstance(stmt, Insert) else stmt
        compiled = target.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        names = compiled.positiontup if dialect.positional else list(compiled.binds)
        binds = []
        for name in names or ():
            bind = compiled.binds[name]
            constant = _MISSING if bind.required else bind.effective_value
            if constant is None and keys is not None and name not in keys:
                constant = _default(stmt, name)  # a column the INSERT leaves out
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, process, constant))
        row, results = None, ()
        if not isinstance(stmt, Insert) and hasattr(stmt, "selected_columns"):
            columns = list(stmt.selected_columns)
            row = collections.namedtuple("Row", [c.key for c in columns], rename=True)
            results = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            )
        plan = _Plan(compiled.string, dialect.positional, tuple(binds), row, results)
        self._plans[(type(dialect), keys)] = plan
        return plan

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row of a SELECT, as named tuples."""
        plan = self._plan(conn.dialect, None)
        cursor = _run(conn, plan, plan.parameters(params))
        return plan.rows(cursor.fetchall())

    def rows_on(self, raw: Any, dialect: Dialect, params: Mapping[str, Any]) -> list[Any]:
        """The same on a DBAPI connection the caller holds itself (outside any pool)."""
        plan = self._plan(dialect, None)
        cursor = _on_driver(raw, dialect, plan.sql, plan.parameters(params), many=False)
        return plan.rows(cursor.fetchall())

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        found = self.first(conn, params)
        return None if found is None else found[0]

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """One execution of a statement that returns no rows; the rows it changed."""
        keys = tuple(params) if isinstance(self.stmt, Insert) else None
        plan = self._plan(conn.dialect, keys)
        return _run(conn, plan, plan.parameters(params)).rowcount

    def executemany(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """An INSERT or UPDATE for many parameter sets (of the same keys)."""
        if not params:
            return
        keys = tuple(params[0]) if isinstance(self.stmt, Insert) else None
        plan = self._plan(conn.dialect, keys)
        if len(params) == 1:  # psycopg runs executemany() in pipeline mode: a sync more
            _run(conn, plan, plan.parameters(params[0]))
            return
        _run(conn, plan, [plan.parameters(p) for p in params], many=True)


def _default(stmt: Any, name: str) -> Any:
    """A column's scalar default, for an INSERT that leaves the column out."""
    column = stmt.table.c.get(name)
    default = getattr(column, "default", None)
    if default is None or not default.is_scalar:
        raise ValueError(f"column {name!r} has no scalar default: give it a value")
    return default.arg


def driver_sql(conn: Connection, sql: str) -> None:
    """A statement without parameters (a SAVEPOINT), on the driver."""
    _cursor(conn, sql, None, many=False)


def _run(conn: Connection, plan: _Plan, params: Any, many: bool = False) -> Any:
    return _cursor(conn, plan.sql, params, many)


def _cursor(conn: Connection, sql: str, params: Any, many: bool) -> Any:
    if not conn.in_transaction():
        # What Connection.execute() does (autobegin): the caller's commit() or rollback()
        # then decides, and SQLite's BEGIN (IMMEDIATE for writers) is issued as usual.
        conn.begin()
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return _on_driver(raw, conn.dialect, sql, params, many)


def _on_driver(raw: Any, dialect: Dialect, sql: str, params: Any, many: bool) -> Any:
    """Run on a DBAPI connection; the driver's errors raised as SQLAlchemy's."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        elif params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
    except dialect.loaded_dbapi.Error as err:
        raise DBAPIError.instance(
            sql, params, err, dialect.loaded_dbapi.Error, dialect=dialect
        ) from err
    return cursor
