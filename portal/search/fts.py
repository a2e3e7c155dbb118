"""SQLite FTS5 (trigram) over review texts: the fallback's accelerator for long terms.

`search_docs` holds the indexed copy of each visible text and `search_fts` is an
external-content FTS5 index over it. The SQL fallback still checks every hit against
the live `rating_texts` row, so this index only narrows the scan: a stale entry can
delay a match but never shows a hidden or unredacted text.

The trigram tokenizer matches substrings of 3 or more characters and silently finds
nothing for shorter ones (SQLite 3.40), while most Chinese words (理赔, 态度) have two.
`MIN_TERM` is where the fallback switches to LIKE (see sql.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Select, bindparam, column, literal_column, select, table, text

from portal.search.base import ReviewDoc
from portal.search.documents import chunks

MIN_TERM = 3
DDL = (
    "CREATE TABLE IF NOT EXISTS search_docs ("
    " doc INTEGER PRIMARY KEY, rating_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5("
    " body, content='search_docs', content_rowid='doc', tokenize='trigram')",
)
DOCS = table("search_docs", column("doc"), column("rating_id"), column("body"))
FTS = table("search_fts", column("rowid"))
# External-content FTS5 tables are told what to forget with the old values.
FORGET = text("INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', :doc, :body)")
LEARN = text(
    "INSERT INTO search_fts(rowid, body) SELECT doc, body FROM search_docs WHERE rating_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def create(conn: Connection) -> None:
    for statement in DDL:
        conn.exec_driver_sql(statement)


def delete(conn: Connection, rating_ids: Iterable[str]) -> None:
    for batch in chunks(rating_ids):
        rows = conn.execute(select(DOCS.c.doc, DOCS.c.body).where(DOCS.c.rating_id.in_(batch)))
        old = [{"doc": r.doc, "body": r.body} for r in rows]
        if old:
            conn.execute(FORGET, old)
            conn.execute(DOCS.delete().where(DOCS.c.rating_id.in_(batch)))


def upsert(conn: Connection, docs: list[ReviewDoc]) -> None:
    ids = [d.id for d in docs]
    delete(conn, ids)
    for batch in chunks(ids):
        wanted = set(batch)
        rows = [{"rating_id": d.id, "body": d.text} for d in docs if d.id in wanted]
        conn.execute(DOCS.insert(), rows)
        conn.execute(LEARN, {"ids": batch})


def ids(conn: Connection) -> set[str]:
    return set(conn.execute(select(DOCS.c.rating_id)).scalars())


def phrase(term: str) -> str:
    """An FTS5 string literal: the term matched as a substring, never as query syntax."""
    return '"' + term.replace('"', '""') + '"'


def matching(term: str) -> Select[tuple[str]]:
    """Rating ids whose indexed text contains `term` (at least MIN_TERM characters)."""
    hits = select(FTS.c.rowid).where(literal_column("search_fts").op("MATCH")(phrase(term)))
    return select(DOCS.c.rating_id).where(DOCS.c.doc.in_(hits))
