"""Replaying dbinfo records into the pipeline database: checked first, then applied in bulk.

:func:`check_records` refuses the whole replay (fault 31) if any record names a table
or column the stage does not allow, carries a value of the wrong type or one that
does not fit its column (an over-long string, a NUL, an integer beyond 32 bits, a
null in a NOT NULL column, a non-finite float such as ``1e999``), repeats a key, or
has a key of a stage run that is not the component whose dbinfo file it came from.
Only then :func:`apply_rows` writes, inside the caller's transaction, never with
SQL text made from remote values. On PostgreSQL (psycopg2) each table and set of
value columns is one COPY into a temporary table, one ``UPDATE ... FROM`` and one
``INSERT ... SELECT`` (:mod:`remotebridge.poll.replay_copy`; measured by
bench/bench_poll.py at several times the batched way below). Otherwise bound
parameters only. On SQLite each table gets ONE driver executemany of ``INSERT ... ON
CONFLICT (key) DO UPDATE`` with ``?`` parameters (in-process, so per-row execution is
cheap; SQLAlchemy's per-row parameter handling cost more than SQLite did). Elsewhere
(the portable way, SQLAlchemy Core ``insert``/``update`` executemany): one select of the keys
already present per 500 components, then the new rows in one bulk INSERT (batched
multi-row VALUES by SQLAlchemy's insertmanyvalues) and the others in one executemany
UPDATE by key. Measured (bench/bench_poll.py): psycopg2 runs an ``ON CONFLICT``
executemany row by row, about twice as slow as the batched plain INSERT.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.types import Integer, String

from remotebridge.db.base import Base
from remotebridge.db.pipeline import STAGE_RUN_TABLES
from remotebridge.poll.faults import FAULT_DBINFO_REFUSED, PollFault
from remotebridge.poll.replay_copy import NotCopyable, copy_upsert, sqlite_upsert
from remotebridge.prepare.base import DbinfoSchema, validate_dbinfo

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
"""Integer columns are 32-bit on PostgreSQL."""
IN_CHUNK = 500


@dataclass
class Rows:
    """Checked rows for one table: key dict and values dict per row."""

    table: Table
    key_cols: list[str]
    stage_col: str
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def stage_key_column(stage: str) -> str:
    """The column naming the stage run (chip_id, cam_id, ...)."""
    if stage not in STAGE_RUN_TABLES:
        raise PollFault(f"stage {stage!r} has no stage run table to replay into",
                        fault=FAULT_DBINFO_REFUSED)
    return STAGE_RUN_TABLES[stage][1]


def check_records(stage: str, schema: DbinfoSchema,
                  records: Iterable[tuple[int, str, int, dict[str, Any]]]) -> dict[str, Rows]:
    """Validate ``(stage_id, file, line, record)`` items; returns the rows per table."""
    stage_col = stage_key_column(stage)
    out: dict[str, Rows] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    rules: dict[str, dict[str, _Rule]] = {}
    for stage_id, name, line, rec in records:
        table_rules = rules.get(str(rec.get("table"))) if type(rec) is dict else None
        if table_rules is not None and _fast_ok(table_rules, rec) \
                and rec["key"].get(stage_col) == stage_id:
            rows = out[rec["table"]]
        else:
            rows = _check_slowly(stage_id, f"{name} line {line}", rec, schema, stage_col, out)
            rules.setdefault(rec["table"], _rules_for(rows.table, schema[rec["table"]]))
        key = rec["key"]
        ident = (rec["table"], tuple(key[c] for c in rows.key_cols))
        if ident in seen:
            raise PollFault(f"{name} line {line}: key {key} appears twice",
                            fault=FAULT_DBINFO_REFUSED)
        seen.add(ident)
        rows.rows.append((key, rec["values"]))
    return out


def _check_slowly(stage_id: int, where: str, rec: dict[str, Any], schema: DbinfoSchema,
                  stage_col: str, out: dict[str, Rows]) -> Rows:
    """Every check with its message (the first record of a table, and any doubtful one)."""
    problems = validate_dbinfo(schema, rec)
    if problems:
        raise PollFault(f"{where}: dbinfo record refused: {'; '.join(problems)}",
                        fault=FAULT_DBINFO_REFUSED)
    rows = out.get(rec["table"]) or _rows_for(rec["table"], schema, stage_col, where)
    out[rec["table"]] = rows
    key, values = rec["key"], rec["values"]
    if key.get(stage_col) != stage_id:
        raise PollFault(f"{where}: key {stage_col}={key.get(stage_col)!r} is not the "
                        f"component {stage_id} this file belongs to",
                        fault=FAULT_DBINFO_REFUSED)
    _check_fit(rows.table, {**key, **values}, where)
    return rows


@dataclass(frozen=True)
class _Rule:
    """What a value of one column may be, precomputed for :func:`_fast_ok`."""

    types: tuple[type, ...]
    max_len: int | None
    int32: bool
    nullable: bool


def _rules_for(table: Table, spec: dict[str, dict[str, type]]) -> dict[str, _Rule]:
    rules = {}
    for part in ("key", "values"):
        for col, wanted in spec[part].items():
            ctype, column = table.c[col].type, table.c[col]
            rules[f"{part}:{col}"] = _Rule(
                types=(float, int) if wanted is float else (wanted,),
                max_len=ctype.length if isinstance(ctype, String) else None,
                int32=isinstance(ctype, Integer), nullable=bool(column.nullable))
    rules["key"] = _Rule((), len(spec["key"]), False, False)
    return rules


def _fast_ok(rules: dict[str, _Rule], rec: dict[str, Any]) -> bool:
    """True only when every check would pass; anything doubtful goes the slow way
    (:func:`_check_slowly`), which gives the refusal its message."""
    key, values = rec.get("key"), rec.get("values")
    if type(key) is not dict or type(values) is not dict or len(key) != rules["key"].max_len:
        return False
    return _part_ok(rules, "key:", key) and _part_ok(rules, "values:", values)


def _part_ok(rules: dict[str, _Rule], part: str, data: dict[str, Any]) -> bool:
    for col, value in data.items():
        rule = rules.get(part + col) if type(col) is str else None
        if rule is None:
            return False
        kind = type(value)
        if value is None:
            if not rule.nullable:
                return False
        elif kind not in rule.types:
            return False
        elif kind is str:
            if (rule.max_len is not None and len(value) > rule.max_len) or "\x00" in value:
                return False
        elif kind is int:
            if rule.int32 and not INT_MIN <= value <= INT_MAX:
                return False
        elif not math.isfinite(value):
            return False
    return True


def _rows_for(table_name: str, schema: DbinfoSchema, stage_col: str, where: str) -> Rows:
    table = Base.metadata.tables.get(table_name)
    key_cols = sorted(schema[table_name]["key"])
    if table is None or stage_col not in key_cols:
        raise PollFault(f"{where}: table {table_name!r} cannot be replayed (unknown, or its "
                        f"key lacks {stage_col})", fault=FAULT_DBINFO_REFUSED)
    for col in [*key_cols, *schema[table_name]["values"]]:
        if col not in table.c:
            raise PollFault(f"{where}: {table_name}.{col} is not a column",
                            fault=FAULT_DBINFO_REFUSED)
    return Rows(table, key_cols, stage_col)


def _check_fit(table: Table, data: dict[str, Any], where: str) -> None:
    """Refuse values the column cannot hold (PostgreSQL would fail mid-transaction)."""
    for col, value in data.items():
        ctype = table.c[col].type
        if isinstance(value, str) and isinstance(ctype, String) and ctype.length \
                and len(value) > ctype.length:
            raise PollFault(f"{where}: {table.name}.{col} is {len(value)} characters, the "
                            f"column holds {ctype.length}", fault=FAULT_DBINFO_REFUSED)
        if isinstance(value, str) and "\x00" in value:
            raise PollFault(f"{where}: {table.name}.{col} holds a NUL character",
                            fault=FAULT_DBINFO_REFUSED)
        if type(value) is int and isinstance(ctype, Integer) \
                and not INT_MIN <= value <= INT_MAX:
            raise PollFault(f"{where}: {table.name}.{col}={value} does not fit a 32-bit "
                            "integer", fault=FAULT_DBINFO_REFUSED)
        if value is None and not table.c[col].nullable:
            what = "key " if table.c[col].primary_key else ""
            raise PollFault(f"{where}: {what}{table.name}.{col} is null (the column is "
                            "NOT NULL)", fault=FAULT_DBINFO_REFUSED)
        if isinstance(value, float) and not math.isfinite(value):
            raise PollFault(f"{where}: {table.name}.{col}={value} is not a finite number",
                            fault=FAULT_DBINFO_REFUSED)


def _existing(session: Session, rows: Rows, stage_ids: Sequence[int]) -> set[tuple[Any, ...]]:
    t = rows.table
    found: set[tuple[Any, ...]] = set()
    cols = [t.c[c] for c in rows.key_cols]
    for i in range(0, len(stage_ids), IN_CHUNK):
        part = list(stage_ids[i:i + IN_CHUNK])
        query = select(*cols).where(t.c[rows.stage_col].in_(part))
        found.update(tuple(r) for r in session.execute(query).all())
    return found


def apply_rows(session: Session, tables: dict[str, Rows]) -> int:
    """Insert or update (by key) every checked row; returns how many rows were written."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg2":
        return _bulk(session, tables, copy_upsert)
    if bind.dialect.name == "sqlite":
        return _bulk(session, tables, sqlite_upsert)
    return _select_then_write(session, tables)


def _bulk(session: Session, tables: dict[str, Rows], write: Any) -> int:
    """One bulk ``write`` (see replay_copy) per table and set of value columns."""
    written = 0
    for rows in tables.values():
        batches: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        for key, values in rows.rows:
            batches[frozenset(values)].append({**key, **values})
        for cols, batch in batches.items():
            try:
                write(session, rows.table, rows.key_cols, sorted(cols), batch)
            except NotCopyable:
                _select_then_write(session, {"_": Rows(rows.table, rows.key_cols,
                                                       rows.stage_col,
                                                       [_split(rows, b) for b in batch])})
        written += len(rows.rows)
    return written


def _split(rows: Rows, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    key = {c: data[c] for c in rows.key_cols}
    return key, {c: v for c, v in data.items() if c not in key}


def _select_then_write(session: Session, tables: dict[str, Rows]) -> int:
    """The portable way: existing keys first, then bulk INSERT and bulk UPDATE by key."""
    written = 0
    for rows in tables.values():
        ids = sorted({key[rows.stage_col] for key, _ in rows.rows})
        present = _existing(session, rows, ids)
        new: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        old: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        for key, values in rows.rows:
            if tuple(key[c] for c in rows.key_cols) in present:
                params = {f"k_{k}": v for k, v in key.items()}
                params.update({f"v_{k}": v for k, v in values.items()})
                old[frozenset(values)].append(params)
            else:
                new[frozenset(values)].append({**key, **values})
        for batch in new.values():
            session.execute(insert(rows.table), batch)
        for cols, batch in old.items():
            if cols:
                session.execute(_update_stmt(rows, sorted(cols)), batch)
        written += len(rows.rows)
    return written


def _update_stmt(rows: Rows, value_cols: list[str]) -> Any:
    t = rows.table
    where = and_(*[t.c[k] == bindparam(f"k_{k}") for k in rows.key_cols])
    return update(t).where(where).values({c: bindparam(f"v_{c}") for c in value_cols})
