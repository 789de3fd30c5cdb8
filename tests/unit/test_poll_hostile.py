"""Hostile data from the remote side: refused with a fault, nothing applied at home.

Each test runs a real one-exposure chip job (local site, real local scheduler), then
tampers with what the job left on the "remote side" before poll reads it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from remotebridge.config import SiteConfig
from remotebridge.poll import poll_runs
from remotebridge.ssh import Link, LocalLink
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_hostile import (  # noqa: F401 - helpers and fixtures moved to tests/support
    FAKE_TAR,
    Record,
    _set,
    assert_refused,
    edit_first_record,
)
from tests.support.poll_runs import (
    chip_states,
    components,
    config,
    finished_job,
    get,
    results,
    resummarise,
)


@pytest.mark.parametrize(("change", "words"), [
    (_set("table", "rawExp"), ["'rawExp' is not allowed", "line 2"]),
    (_set("values.exp_name", "x"), ["chipProcessedImfile.exp_name is not allowed"]),
    (_set("values.bg", "high"), ["chipProcessedImfile.bg must be float"]),
    (_set("values.n_stars", True), ["n_stars must be int"]),
    (_set("key.chip_id", 999), ["chip_id=999 is not the component 1"]),
    (_set("key.class_id", None), ["key chipProcessedImfile.class_id is null"]),
    (_set("values.hostname", "h" * 65), ["hostname is 65 characters"]),
    (_set("values.n_stars", 2**40), ["does not fit a 32-bit integer"]),
    (_set("values.uri", None), ["chipProcessedImfile.uri is null", "NOT NULL"]),
    (_set("values.fault", None), ["chipProcessedImfile.fault is null"]),
], ids=["table", "column", "type", "bool", "foreign-key", "null-key", "long", "bigint",
        "null-uri", "null-fault"])
def test_refused_records(engine: Engine, tmp_path: Path, change: Callable[[Record], None],
                         words: list[str]) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    edit_first_record(job_dir, change)
    assert_refused(engine, tmp_path, rid, 31, "dbinfo/1.dbinfo.jsonl", *words)


@pytest.mark.parametrize(("mutate", "where", "words"), [
    (lambda t: t.replace('"table"', '"table" "x"', 1), "dbinfo", ["line 2: not valid JSON"]),
    (lambda t: t.replace('"fault": 0', '"fault": NaN', 1), "dbinfo", ["NaN is not allowed"]),
    (lambda t: t.replace('"v": 1', '"v": 1, "v": 1', 1), "dbinfo", ["duplicate key"]),
    (lambda t: t.replace('"version": 2', '"version": 3', 1), "summary",
     ["job_summary.jsonl line 1", "version 3 is not supported"]),
    (lambda t: t.replace('"rc": 0', '"rc": "0"', 1), "summary", ["bad or missing field(s) rc"]),
    (lambda t: t + t.splitlines()[-1] + "\n", "summary", ["header says"]),
], ids=["json", "nan", "dupkey", "summary-version", "summary-type", "summary-count"])
def test_malformed_files(engine: Engine, tmp_path: Path, mutate: Callable[[str], str],
                         where: str, words: list[str]) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    path = job_dir / ("dbinfo/1.dbinfo.jsonl" if where == "dbinfo" else "job_summary.jsonl")
    before = path.read_text()
    path.write_text(mutate(before))
    assert path.read_text() != before
    assert_refused(engine, tmp_path, rid, 32, *words)


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_non_finite_float_refused(engine: Engine, tmp_path: Path, number: str) -> None:
    """``1e999`` is strict JSON but parses to inf: refused before anything is applied."""
    rid, job_dir = finished_job(engine, tmp_path)
    edit_first_record(job_dir, _set("values.bg", 12345.5))
    path = job_dir / "dbinfo" / "1.dbinfo.jsonl"
    path.write_text(path.read_text().replace("12345.5", number, 1))
    assert_refused(engine, tmp_path, rid, 31, "chipProcessedImfile.bg=", "not a finite")


def test_database_refusal_is_fault_31(engine: Engine, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the checks let through but the database refuses (IntegrityError): fault 31,
    the transaction rolled back, no traceback, the run in error."""
    from remotebridge.poll import finish, replay

    rid, job_dir = finished_job(engine, tmp_path)
    edit_first_record(job_dir, _set("values.uri", None))
    resummarise(job_dir)  # as if the job had written it so
    monkeypatch.setattr(replay, "_check_fit", lambda *_a: None)
    monkeypatch.setattr(finish, "check_planned", lambda *_a: None)  # the plan check too
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state, o.fault) for o in out] == [("error", "error", 31)], out
    run = get(engine, rid)
    assert (run.state, run.fault, run.owner) == ("error", 31, None)
    assert "the database refused the dbinfo replay" in run.note
    assert results(engine) == [] and chip_states(engine) == {1: ("new", 0)}
    assert components(engine, rid) == {1: ("new", 0, 0)}


def test_check_fit_refuses_nan() -> None:
    from remotebridge.db.pipeline import ChipProcessedImfile
    from remotebridge.poll import PollFault
    from remotebridge.poll.replay import _check_fit

    table = ChipProcessedImfile.__table__
    with pytest.raises(PollFault, match="bg=nan is not a finite number"):
        _check_fit(table, {"bg": float("nan")}, "x")  # type: ignore[arg-type]
    _check_fit(table, {"bg": None, "n_stars": None}, "x")  # type: ignore[arg-type]


def test_summary_claiming_foreign_task(engine: Engine, tmp_path: Path) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    path = job_dir / "job_summary.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["stage_id"] = 77
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    assert_refused(engine, tmp_path, rid, 32, "is not in this run's plan")


def test_sql_looking_value_is_data(engine: Engine, tmp_path: Path) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    evil = "x'); DROP TABLE \"chipRun\"; --"
    edit_first_record(job_dir, _set("values.hostname", evil))
    resummarise(job_dir)  # as if the job had written it so
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [o.action for o in out] == ["full"]
    rows = results(engine)
    assert [r.hostname for r in rows][0] == evil and len(rows) == 2
    assert "chipRun" in inspect(engine).get_table_names()
    assert chip_states(engine) == {1: ("full", 0)}


def test_unsafe_bundle_is_refused(engine: Engine, tmp_path: Path) -> None:
    rid, _job_dir = finished_job(engine, tmp_path)
    fake = tmp_path / "hostile-bin"
    fake.mkdir()
    tar = fake / "tar"
    tar.write_text(FAKE_TAR.replace("{python}", "/usr/bin/env python3"))
    tar.chmod(tar.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")

    def hostile(site: SiteConfig) -> list[Link]:
        return [LocalLink(site.local_root, env=env)]

    out = poll_runs(engine, config(tmp_path), force=True, links=hostile)
    assert [(o.action, o.fault) for o in out] == [("error", 33)], out
    run = get(engine, rid)
    assert run.state == "error" and run.fault == 33 and "evil.txt" in run.note
    assert results(engine) == [] and chip_states(engine) == {1: ("new", 0)}
    assert not list(tmp_path.rglob("evil.txt"))
