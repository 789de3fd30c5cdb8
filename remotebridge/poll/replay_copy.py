"""PostgreSQL replay: COPY the checked rows into a temporary table, then one upsert.

Per table and per set of value columns: ``CREATE TEMP TABLE ... AS SELECT <cols> FROM
<table> WITH NO DATA`` (same column types, no constraints), ``COPY ... FROM STDIN`` of
the rows in PostgreSQL's text format, then ONE ``UPDATE <table> ... FROM <temp>`` of
the rows whose key is there and ONE ``INSERT ... SELECT ... WHERE NOT EXISTS`` of the
others. (Not ``INSERT ... ON CONFLICT DO UPDATE``: PostgreSQL checks NOT NULL on the
proposed row first, so an update that leaves out a NOT NULL column would fail, where
the batched way updated it.)

Remote values only ever travel as COPY data, escaped by :func:`copy_field` (backslash,
tab, newline and carriage return; None is ``\\N``); they never become SQL text.
Identifiers come from the table's metadata after :func:`~remotebridge.poll.replay.
check_records` has checked them against the stage's allow-list, and are quoted by
the dialect. Columns a row leaves out get the model's scalar default on insert (as
SQLAlchemy's ``insert`` would give them) and are left alone on update.
Measured by bench/bench_poll.py against the batched select-then-write path.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_temp_names = itertools.count(1)


class NotCopyable(Exception):
    """A batch needs a Python-side default that is not a constant (use the portable path)."""


def copy_field(value: Any) -> str:
    """One field of COPY text format (values already checked: str, int, finite float, None)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return (value.replace("\\", "\\\\").replace("\t", "\\t")
                .replace("\n", "\\n").replace("\r", "\\r"))
    if isinstance(value, bool):  # never passes the type check; refuse rather than guess
        raise TypeError("bool is not a dbinfo value type")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a dbinfo value type")


def insert_defaults(table: Table, given: set[str]) -> dict[str, Any]:
    """Scalar defaults of the columns a batch leaves out (what ``insert`` would add)."""
    out: dict[str, Any] = {}
    for col in table.c:
        if col.name in given or col.default is None:
            continue
        if not col.default.is_scalar:
            raise NotCopyable(f"{table.name}.{col.name} has a computed default")
        out[col.name] = col.default.arg  # type: ignore[attr-defined]
    return out


def copy_upsert(session: Session, table: Table, key_cols: Sequence[str],
                value_cols: Sequence[str], batch: Sequence[dict[str, Any]]) -> None:
    """Write ``batch`` (dicts of key and value columns) into ``table`` via COPY + upsert."""
    quote = session.get_bind().dialect.identifier_preparer.quote
    defaults = insert_defaults(table, {*key_cols, *value_cols})
    cols = [*key_cols, *value_cols, *defaults]
    col_list = ", ".join(quote(table.c[c].name) for c in cols)
    temp = quote(f"rb_replay_{next(_temp_names)}")
    target = session.get_bind().dialect.identifier_preparer.format_table(table)
    conn = session.connection()
    conn.exec_driver_sql(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "
                         f"SELECT {col_list} FROM {target} WITH NO DATA")
    _copy(conn, f"COPY {temp} ({col_list}) FROM STDIN", _copy_text(batch, cols, defaults))
    conn.exec_driver_sql(f"ANALYZE {temp}")
    keys = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in key_cols)
    if value_cols:
        sets = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in value_cols)
        conn.exec_driver_sql(f"UPDATE {target} AS t SET {sets} FROM {temp} AS s WHERE {keys}")
    conn.exec_driver_sql(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {temp} "
                         f"AS s WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {keys})")
    conn.exec_driver_sql(f"DROP TABLE {temp}")


def sqlite_upsert(session: Session, table: Table, key_cols: Sequence[str],
                  value_cols: Sequence[str], batch: Sequence[dict[str, Any]]) -> None:
    """SQLite: ONE ``INSERT ... ON CONFLICT (key) DO UPDATE`` executemany by the driver
    (values bound as ``?``; SQLAlchemy's per-row parameter handling cost more than the
    database here). Left-out columns get their scalar default on insert only."""
    quote = session.get_bind().dialect.identifier_preparer.quote
    defaults = insert_defaults(table, {*key_cols, *value_cols})
    given = [*key_cols, *value_cols]
    cols = [*given, *defaults]
    target = session.get_bind().dialect.identifier_preparer.format_table(table)
    keys = ", ".join(quote(c) for c in key_cols)
    action = "DO NOTHING" if not value_cols else "DO UPDATE SET " + ", ".join(
        f"{quote(c)} = excluded.{quote(c)}" for c in value_cols)
    sql = (f"INSERT INTO {target} ({', '.join(quote(c) for c in cols)}) VALUES "
           f"({', '.join('?' for _ in cols)}) ON CONFLICT ({keys}) {action}")
    tail = tuple(defaults.values())
    params = [tuple(row[c] for c in given) + tail for row in batch]
    conn = session.connection()
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    try:
        cur: Any = dbapi.cursor()
        cur.executemany(sql, params)
        cur.close()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc


def _copy(conn: Connection, sql: str, data: io.StringIO) -> None:
    """COPY FROM STDIN on the session's own connection; errors as SQLAlchemy's."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    try:
        cur: Any = dbapi.cursor()
        try:
            cur.copy_expert(sql, data)
        finally:
            cur.close()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc


def _copy_text(batch: Sequence[dict[str, Any]], cols: Sequence[str],
               defaults: dict[str, Any]) -> io.StringIO:
    given = [c for c in cols if c not in defaults]
    tail = "".join("\t" + copy_field(v) for v in defaults.values())
    buf = io.StringIO()
    write = buf.write
    for row in batch:
        write("\t".join([copy_field(row[c]) for c in given]) + tail + "\n")
    buf.seek(0)
    return buf
