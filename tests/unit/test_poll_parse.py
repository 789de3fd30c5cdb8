"""The untrusted-data readers of poll, and the dbinfo checks, without running a job."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, select

from remotebridge.db.engine import read_session, write_session
from remotebridge.db.pipeline import ChipProcessedImfile
from remotebridge.poll.faults import PollFault
from remotebridge.poll.remote_files import (
    parse_dbinfo,
    parse_frames,
    parse_jsonl,
    parse_summary,
)
from remotebridge.poll.replay import apply_rows, check_records
from remotebridge.prepare.chip import ChipStage
from tests.support.db import add_chipruns


def doc(fmt: str, records: list[Any], **head: Any) -> bytes:
    lines = [json.dumps({"format": fmt, "version": 1, **head})]
    lines += [json.dumps(r) for r in records]
    return ("\n".join(lines) + "\n").encode()


def rec(chip: int = 1, cls: str = "xy00", **values: Any) -> dict[str, Any]:
    return {"v": 1, "table": "chipProcessedImfile", "key": {"chip_id": chip, "class_id": cls},
            "values": {"uri": "/d/x.fits", "fault": 0, **values}}


def test_frames_round_trip_and_refusals() -> None:
    data = b"5 a\nhello- b\n0 c\n"
    assert parse_frames(data, {"a", "b", "c"}) == {"a": b"hello", "b": None, "c": b""}
    with pytest.raises(PollFault, match="unexpected file"):
        parse_frames(b"1 /etc/passwd\nx", {"a"})
    with pytest.raises(PollFault, match="truncated"):
        parse_frames(b"10 a\nshort", {"a"})
    with pytest.raises(PollFault, match="larger than"):
        parse_frames(b"! a\n", {"a"})
    with pytest.raises(PollFault, match="unexpected file"):
        parse_frames(b"1 a\nx1 a\ny", {"a"})


def test_jsonl_header_and_strictness() -> None:
    head, recs = parse_jsonl(doc("remotebridge.dbinfo", [rec()]), "f", "remotebridge.dbinfo")
    assert head["version"] == 1 and len(recs) == 1
    with pytest.raises(PollFault, match="f line 1: not a remotebridge.dbinfo header"):
        parse_jsonl(doc("remotebridge.plan", []), "f", "remotebridge.dbinfo")
    with pytest.raises(PollFault, match="not UTF-8"):
        parse_jsonl(b'{"format": "\xff"}\n', "f", "x")
    with pytest.raises(PollFault, match="f line 2: not valid JSON .*Infinity"):
        parse_jsonl(doc("x", []) + b'{"a": Infinity}\n', "f", "x")
    with pytest.raises(PollFault, match="empty"):
        parse_jsonl(b"", "f", "x")
    with pytest.raises(PollFault, match="longer than"):
        parse_jsonl(doc("x", []) + b'"' + b"a" * 70000 + b'"\n', "f", "x")
    with pytest.raises(PollFault, match="version True"):
        parse_jsonl(b'{"format": "x", "version": true}\n', "f", "x")


def test_summary_and_dbinfo_shapes() -> None:
    task = {"task_id": 1, "stage_id": 7, "phase": "cmd", "rc": None, "start": None,
            "end": None, "host": None}
    got = parse_summary(doc("remotebridge.job_summary", [task], tasks=1))
    assert got[1].rc is None and got[1].stage_id == 7
    with pytest.raises(PollFault, match="appears twice"):
        parse_summary(doc("remotebridge.job_summary", [task, task], tasks=2))
    with pytest.raises(PollFault, match="phase"):
        parse_summary(doc("remotebridge.job_summary", [{**task, "phase": "rm -rf"}], tasks=1))
    with pytest.raises(PollFault, match="exactly"):
        parse_dbinfo(doc("remotebridge.dbinfo", [{**rec(), "sql": "DROP"}]), "d")
    with pytest.raises(PollFault, match="record version 2"):
        parse_dbinfo(doc("remotebridge.dbinfo", [{**rec(), "v": 2}]), "d")
    with pytest.raises(PollFault, match="key and values objects"):
        parse_dbinfo(doc("remotebridge.dbinfo", [{**rec(), "values": [1]}]), "d")


def test_check_records() -> None:
    schema = ChipStage.dbinfo_schema
    rows = check_records("chip", schema, [(1, "d", 2, rec(bg=1)), (1, "d", 3, rec(cls="xy01"))])
    assert len(rows["chipProcessedImfile"].rows) == 2
    with pytest.raises(PollFault, match="appears twice") as exc:
        check_records("chip", schema, [(1, "d", 2, rec()), (1, "d", 3, rec())])
    assert exc.value.fault == 31
    with pytest.raises(PollFault, match="is not the component 2"):
        check_records("chip", schema, [(2, "d", 2, rec(chip=1))])
    with pytest.raises(PollFault, match="NUL"):
        check_records("chip", schema, [(1, "d", 2, rec(hostname="a\x00b"))])
    with pytest.raises(PollFault, match="no stage run table"):
        check_records("nosuch", schema, [])


def test_apply_rows_inserts_then_updates(engine: Engine) -> None:
    add_chipruns(engine, "demo", 2)
    schema = ChipStage.dbinfo_schema
    first = [(1, "d", 2, rec(bg=1.0, hostname="a")), (2, "d", 2, rec(chip=2, bg=2.0))]
    with write_session(engine) as s:
        assert apply_rows(s, check_records("chip", schema, first)) == 2
    again = [(1, "d", 2, rec(bg=5.5, hostname="x'); DROP TABLE \"chipRun\"; --")),
             (1, "d", 3, rec(cls="xy01", n_stars=3))]
    with write_session(engine) as s:
        assert apply_rows(s, check_records("chip", schema, again)) == 2
    with read_session(engine) as s:
        got = {(r.chip_id, r.class_id): (r.bg, r.hostname, r.n_stars)
               for r in s.execute(select(ChipProcessedImfile)).scalars()}
    assert got == {(1, "xy00"): (5.5, "x'); DROP TABLE \"chipRun\"; --", None),
                   (1, "xy01"): (None, "", 3), (2, "xy00"): (2.0, "", None)}
