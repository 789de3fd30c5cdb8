"""The bulk replay stores exactly what the batched (select-then-write) way stored.

PostgreSQL now replays through COPY into a temporary table and one upsert; SQLite
through one ``INSERT ... ON CONFLICT`` executemany. Both are compared, row for row,
against :func:`_select_then_write` (the method used before) on hostile values.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.exc import IntegrityError

from remotebridge.db.engine import make_engine, write_session
from remotebridge.db.pipeline import ChipProcessedImfile
from remotebridge.poll import PollFault, replay
from remotebridge.poll.replay import _select_then_write, apply_rows, check_records
from remotebridge.poll.replay_copy import copy_field
from remotebridge.prepare.chip import ChipStage
from tests.support.db import add_chipruns

HOSTILE = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "\\",
    "ends with backslash\\", "x'); DROP TABLE \"chipRun\"; --", "$$ ; COPY x FROM PROGRAM",
    "%(rows)s %s :name", "", "ünïcødé ✓ 星", "\x01\x7f\u2028", "a\tb\\tc\nd\\ne",
]
Item = tuple[int, str, int, dict[str, Any]]


def _items(values: list[dict[str, Any]]) -> list[Item]:
    out: list[Item] = []
    for i, vals in enumerate(values):
        chip = 1 + i % 3
        rec = {"v": 1, "table": "chipProcessedImfile",
               "key": {"chip_id": chip, "class_id": f"xy{i:02d}"}, "values": vals}
        out.append((chip, f"dbinfo/{chip}.dbinfo.jsonl", i + 1, rec))
    return out


def _hostile_values(salt: float) -> list[dict[str, Any]]:
    vals: list[dict[str, Any]] = []
    for i, s in enumerate(HOSTILE):
        vals.append({"uri": s, "hostname": s[:64], "fault": -(2**31) + i,
                     "bg": 0.1 + salt + i * 1e-17, "bg_stdev": 1e-300, "n_stars": 2**31 - 1,
                     "fwhm": None, "dtime_script": -0.0 if i % 2 else 12345678.123456789})
    vals.append({"uri": "/only/uri"})                      # defaults on insert
    vals.append({"uri": "/u", "bg": 3, "n_stars": None})   # int into a float column
    return vals


def _stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        t = ChipProcessedImfile.__table__
        return [tuple(r) for r in conn.execute(select(t).order_by(t.c.chip_id, t.c.class_id))]


def _replay(engine: Engine, items: list[Item], how: Any) -> None:
    tables = check_records("chip", ChipStage.dbinfo_schema, items)
    with write_session(engine) as s:
        assert how(s, tables) == len(items)


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(ChipProcessedImfile))


def test_copy_field_escapes_the_text_format() -> None:
    assert copy_field(None) == "\\N"
    assert copy_field("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_field("\\N") == "\\\\N"
    assert copy_field(0.1) == "0.1" and float(copy_field(1e-300)) == 1e-300
    assert copy_field(-(2**31)) == "-2147483648"
    with pytest.raises(TypeError):
        copy_field(True)


def test_insert_stores_what_the_batched_way_stored(engine: Engine) -> None:
    add_chipruns(engine, "t", 3)
    items = _items(_hostile_values(0.0))
    _replay(engine, items, _select_then_write)
    before = _stored(engine)
    _clear(engine)
    _replay(engine, items, apply_rows)
    assert _stored(engine) == before
    row = {r[1]: r for r in before}
    assert row["xy00"][2] == "tab\there" and row["xy04"][2] == "\\N"
    assert row[f"xy{len(HOSTILE):02d}"][3:] == (0, None, None, None, None, None, "")


def test_update_stores_what_the_batched_way_stored(engine: Engine) -> None:
    add_chipruns(engine, "t", 3)
    first, second = _items(_hostile_values(0.0)), _items(_hostile_values(1.0))
    second[-1][3]["values"] = {"uri": "/u", "hostname": "only\tthis"}  # others left alone
    results = []
    for how in (_select_then_write, apply_rows):
        _clear(engine)
        _replay(engine, first, apply_rows)
        _replay(engine, second, how)
        results.append(_stored(engine))
    assert results[0] == results[1]
    last = {r[1]: r for r in results[1]}[f"xy{len(second) - 1:02d}"]
    assert (last[2], last[4], last[-1]) == ("/u", 3.0, "only\tthis")


def test_nul_is_refused_before_anything_is_written(engine: Engine) -> None:
    add_chipruns(engine, "t", 3)
    vals = _hostile_values(0.0)
    vals[3]["hostname"] = "nul\x00here"
    with pytest.raises(PollFault, match="holds a NUL character"):
        _replay(engine, _items(vals), apply_rows)
    assert _stored(engine) == []


def test_a_doubtful_record_gets_the_full_message(engine: Engine) -> None:
    """The fast check lets nothing through that the full checks would refuse."""
    items = _items(_hostile_values(0.0))
    items[5][3]["values"]["n_stars"] = 2**31
    with pytest.raises(PollFault, match=r"line 6: chipProcessedImfile.n_stars=2147483648"):
        check_records("chip", ChipStage.dbinfo_schema, items)
    items = _items(_hostile_values(0.0))
    items[7][3]["values"]["fault"] = True
    with pytest.raises(PollFault, match=r"line 8: .*fault must be int"):
        check_records("chip", ChipStage.dbinfo_schema, items)
    items = _items(_hostile_values(0.0))
    items[2][3]["values"]["uri"] = "u" * 256
    with pytest.raises(PollFault, match=r"line 3: .*is 256 characters"):
        check_records("chip", ChipStage.dbinfo_schema, items)


def test_postgres_replays_by_copy(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL no longer takes the select-then-write way, and the refusal of a row by
    the database still arrives as SQLAlchemy's IntegrityError (fault 31 in poll)."""
    from tests.support.db import truncate_pg

    truncate_pg(pg_url)
    engine = make_engine(pg_url)
    try:
        add_chipruns(engine, "t", 3)
        monkeypatch.setattr(replay, "_select_then_write", _refuse)
        _replay(engine, _items(_hostile_values(0.0)), apply_rows)
        assert len(_stored(engine)) == len(HOSTILE) + 2
        _clear(engine)  # a new row without its NOT NULL uri: the database refuses it
        tables = check_records("chip", ChipStage.dbinfo_schema,
                               _items([{"uri": "/x"}, {"hostname": "h"}]))
        with pytest.raises(IntegrityError), write_session(engine) as s:
            apply_rows(s, tables)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM \"chipProcessedImfile\"")
                                ).scalar_one() == 0
    finally:
        engine.dispose()


def test_postgres_update_may_leave_out_not_null_columns(pg_url: str) -> None:
    """As with the batched way, an update need not repeat a NOT NULL column (uri)."""
    from tests.support.db import truncate_pg

    truncate_pg(pg_url)
    engine = make_engine(pg_url)
    try:
        add_chipruns(engine, "t", 3)
        _replay(engine, _items(_hostile_values(0.0)), apply_rows)
        _replay(engine, _items([{"hostname": "h\\"}]), apply_rows)
        first = _stored(engine)[0]
        assert (first[1], first[2], first[-1]) == ("xy00", "tab\there", "h\\")
    finally:
        engine.dispose()


def _refuse(*_a: Any) -> int:
    raise AssertionError("the batched way was used")
