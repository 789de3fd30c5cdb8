"""Replay accepts exactly the records prepare planned (expected.jsonl), fault 40.

Each test runs a real one-exposure chip job (two chips, local site, real local
scheduler), then changes the set of dbinfo records on the "remote side", or a value
naming a file, before poll reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from remotebridge import jobfolder
from remotebridge.poll import poll_runs
from remotebridge.poll.expect import _ident, check_planned
from remotebridge.poll.faults import FAULT_JOB_UNREADABLE, FAULT_NOT_PLANNED, PollFault
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_hostile import assert_refused
from tests.support.poll_runs import chip_states, config, finished_job, results, resummarise

Record = dict[str, Any]
Edit = Callable[[list[Record]], list[Record]]


def edit_records(job_dir: Path, edit: Edit) -> None:
    """Rewrite component 1's dbinfo file with ``edit(records)``."""
    path = job_dir / "dbinfo" / "1.dbinfo.jsonl"
    lines = path.read_text().splitlines()
    recs = edit([json.loads(line) for line in lines[1:]])
    path.write_text("\n".join([lines[0], *(json.dumps(r) for r in recs)]) + "\n")


def _with(index: int, part: str, col: str, value: Any) -> Edit:
    def edit(recs: list[Record]) -> list[Record]:
        recs[index][part][col] = value
        return recs
    return edit


def _extra(class_id: str) -> Edit:
    """One more record: a copy of the first under another chip of the same component."""
    def edit(recs: list[Record]) -> list[Record]:
        twin = json.loads(json.dumps(recs[0]))
        twin["key"]["class_id"] = class_id
        twin["values"]["uri"] = recs[0]["values"]["uri"].replace(
            recs[0]["key"]["class_id"], class_id)
        return [*recs, twin]
    return edit


def _swap_uris(recs: list[Record]) -> list[Record]:
    recs[0]["values"]["uri"], recs[1]["values"]["uri"] = \
        recs[1]["values"]["uri"], recs[0]["values"]["uri"]
    return recs


def _swap_keys(recs: list[Record]) -> list[Record]:
    """Each chip's record under the other chip's key (the set of keys stays right)."""
    recs[0]["key"], recs[1]["key"] = recs[1]["key"], recs[0]["key"]
    return recs


VARIANTS = [
    (lambda recs: [], ["2 planned record(s) missing"]),
    (lambda recs: recs[1:], ["1 planned record(s) missing", "xy00"]),
    (lambda recs: recs[:1], ["1 planned record(s) missing", "xy10"]),
    (_extra("xy99"), ["was not planned for component 1", "xy99"]),
    (_extra("xy00 "), ["was not planned for component 1"]),
    (_with(0, "key", "class_id", "xy07"), ["was not planned", "xy07"]),
    (_with(0, "values", "uri", "/etc/passwd"), ["uri is '/etc/passwd', the plan says"]),
    (_with(1, "values", "uri", ""), ["line 3", "uri is ''"]),
    (_with(0, "values", "uri", "relative.fits"), ["uri is 'relative.fits'"]),
    (_swap_uris, ["line 2", "the plan says"]),
    (_swap_keys, ["line 2", "the plan says"]),
]
IDS = ["missing-all", "missing-first", "partial-last", "extra-chip", "extra-space",
       "altered-key", "altered-uri", "empty-uri", "relative-uri", "swapped-uris",
       "swapped-keys"]
PLANNED = [{"v": 1, "table": "chipProcessedImfile", "key": {"chip_id": 1, "class_id": c},
            "values": {"uri": f"/data/work/e1/e1.{c}.ch.fits", "fault": 0, "bg": 1.5}}
           for c in ("xy00", "xy10")]


@pytest.mark.parametrize(("edit", "words"), VARIANTS, ids=IDS)
def test_check_planned_refuses(edit: Edit, words: list[str]) -> None:
    """Every variant, against the plan alone (no job): fault 40 naming what is wrong."""
    expected = {1: {_ident(r["table"], r["key"]): {"uri": r["values"]["uri"]}
                    for r in PLANNED}, 2: {}}
    recs = edit(json.loads(json.dumps(PLANNED)))
    items = [(1, "dbinfo/1.dbinfo.jsonl", n, r) for n, r in enumerate(recs, start=2)]
    with pytest.raises(PollFault) as err:
        check_planned(expected, {1, 2}, items)
    assert err.value.fault == FAULT_NOT_PLANNED
    for word in words:
        assert word in err.value.message


def test_check_planned_accepts_the_plan() -> None:
    expected = {1: {_ident(r["table"], r["key"]): {"uri": r["values"]["uri"]}
                    for r in PLANNED}}
    items = [(1, "f", n, r) for n, r in enumerate(reversed(PLANNED), start=2)]
    check_planned(expected, {1}, items)


@pytest.mark.parametrize(("edit", "words"), [VARIANTS[i] for i in (1, 2, 3, 6)],
                         ids=[IDS[i] for i in (1, 2, 3, 6)])
def test_unplanned_records_refused(engine: Engine, tmp_path: Path, edit: Edit,
                                   words: list[str]) -> None:
    """End to end with a real job: refused, nothing written, no product installed."""
    rid, job_dir = finished_job(engine, tmp_path)
    edit_records(job_dir, edit)
    assert_refused(engine, tmp_path, rid, FAULT_NOT_PLANNED, *words)


def test_measured_figures_stay_free(engine: Engine, tmp_path: Path) -> None:
    """Statistics, times and the job's own fault value are not planned: any typed value
    is stored."""
    rid, job_dir = finished_job(engine, tmp_path)
    edit_records(job_dir, _with(0, "values", "bg", 4242.5))
    edit_records(job_dir, _with(1, "values", "fault", 2))
    resummarise(job_dir)  # as if the job had written them so
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [o.action for o in out] == ["full"], out
    rows = results(engine)
    assert (rows[0].bg, rows[1].fault) == (4242.5, 2)
    assert chip_states(engine) == {1: ("full", 0)}


def test_expected_file_lists_the_plan(engine: Engine, tmp_path: Path) -> None:
    rid, _job_dir = finished_job(engine, tmp_path)
    folder = jobfolder.local_folder(str(tmp_path / "jobs"), rid)
    if not folder.exists():
        folder = next(tmp_path.rglob(jobfolder.folder_name(rid) + "/plan.jsonl")).parent
    lines = jobfolder.read_jsonl(folder, jobfolder.EXPECTED)
    assert lines.header["stage"] == "chip"
    assert [(r["stage_id"], r["table"], sorted(r["key"]), sorted(r["fixed"]))
            for r in lines.records] == [(1, "chipProcessedImfile", ["chip_id", "class_id"],
                                         ["uri"])] * 2


def test_expected_file_missing_is_fault_35(engine: Engine, tmp_path: Path) -> None:
    rid, _job_dir = finished_job(engine, tmp_path)
    local = next(p for p in tmp_path.rglob(jobfolder.EXPECTED.name)
                 if "remote side" not in str(p))
    local.unlink()
    assert_refused(engine, tmp_path, rid, FAULT_JOB_UNREADABLE, jobfolder.EXPECTED.name)
