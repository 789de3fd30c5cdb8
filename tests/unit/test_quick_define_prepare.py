"""The cron tick's cheap question for ``definebyquery`` and ``prepare``: cron asks
every stage of the label every round, and most rounds find nothing. The driver-only
answer (remotebridge.quickdb.define_due / prepare_due) must agree with what the full
path selects, leave every error to the full path, and load none of SQLAlchemy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from remotebridge import config as cfgmod
from remotebridge import quickdb
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import STAGE_NEW, STAGE_RUN_TABLES, CamRun
from remotebridge.define import ready_query
from remotebridge.quickdb import Due
from tests.support.db import add_chipruns
from tests.support.poll_runs import raw_config
from tests.support.tick_probe import probe

HEAVY = ("sqlalchemy", "alembic", "jinja2", "rich", "remotebridge.prepare",
         "remotebridge.define", "remotebridge.db")
def _config(tmp: Path, db_url: str) -> cfgmod.Config:
    return cfgmod.build(raw_config(tmp), db_override=db_url)


def _full_ready(engine: Engine, stage: str, label: str) -> bool:
    with read_session(engine) as s:
        return bool(s.execute(ready_query(stage, label, 1)).first())


def test_the_table_names_are_the_models() -> None:
    assert quickdb.STAGE_NEW == STAGE_NEW
    assert {stage: (model.__tablename__, pk) for stage, (model, pk)
            in STAGE_RUN_TABLES.items()} == quickdb.STAGE_TABLES


def test_define_due_agrees_with_the_full_path(engine: Engine, db_url: str,
                                              tmp_path: Path) -> None:
    cfg = _config(tmp_path, db_url)
    add_chipruns(engine, "L", 3)
    add_chipruns(engine, "done", 1, start=10, state="full")
    with engine.begin() as conn:  # chip 1 already in a remote run; a cam run of label L
        conn.execute(insert(RemoteRun), [{"remote_id": 1, "stage": "chip", "label": "L",
                                          "site": "demo", "state": "new",
                                          "path_base": "/x"}])
        conn.execute(insert(RemoteComponent), [{"remote_id": 1, "stage": "chip",
                                                "stage_id": 1, "state": "new", "fault": 0,
                                                "attempts": 0}])
    for stage in quickdb.STAGE_TABLES:
        for label in ("L", "done"):
            quick = quickdb.define_due(cfg, stage=stage, label=label)
            assert (quick is Due.MAYBE) == _full_ready(engine, stage, label), (stage, label)
    # every ready chip run taken: nothing for chip; a label nobody has is the full path's
    with engine.begin() as conn:
        conn.execute(insert(RemoteComponent), [{"remote_id": 1, "stage": "chip",
                                                "stage_id": i, "state": "new", "fault": 0,
                                                "attempts": 0} for i in (2, 3)])
    assert quickdb.define_due(cfg, stage="chip", label="L") is Due.NOTHING
    assert quickdb.define_due(cfg, stage="cam", label="nosuch") is Due.MAYBE
    assert quickdb.define_due(cfg, stage="nosuch", label="L") is Due.MAYBE
    with read_session(engine) as s:
        assert s.execute(select(CamRun)).first() is None


def test_prepare_due_agrees_with_the_full_path(engine: Engine, db_url: str,
                                               tmp_path: Path) -> None:
    cfg = _config(tmp_path, db_url)
    assert quickdb.prepare_due(cfg) is Due.NOTHING
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), [
            {"remote_id": 1, "stage": "chip", "label": "a", "site": "demo", "state": "new",
             "path_base": "/x"},
            {"remote_id": 2, "stage": "chip", "label": "b", "site": "demo", "state": "auth",
             "path_base": "/x"}])
    assert quickdb.prepare_due(cfg) is Due.MAYBE
    assert quickdb.prepare_due(cfg, label="a") is Due.MAYBE
    assert quickdb.prepare_due(cfg, label="b") is Due.NOTHING  # auth is exec's and poll's


def _probe(db_url: str, tmp: Path, args: list[str]) -> tuple[dict[str, Any], Any]:
    return probe(db_url, tmp, args, HEAVY)


def test_empty_ticks_import_nothing_heavy_and_print_what_the_full_path_prints(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    add_chipruns(engine, "L", 1, state="full")
    got, out = _probe(db_url, tmp_path, ["definebyquery", "--label", "L", "--stage", "chip"])
    assert got == {"code": 0, "heavy": []}
    assert out == {"remote_id": None, "stage": "chip", "label": "L", "components": 0,
                   "pretend": False, "remote_ids": []}
    got, out = _probe(db_url, tmp_path, ["prepare", "--label", "L"])
    assert got == {"code": 0, "heavy": []}
    assert out == {"prepared": [], "failed": [], "pretend": False}


@pytest.mark.parametrize("args, code", [
    (["definebyquery", "--label", "nosuch", "--stage", "chip"], 3),   # unknown label
    (["definebyquery", "--label", "L", "--stage", "chip", "--site", "nosuch"], 78),
    (["prepare", "--remote-id", "99"], 3),                            # unknown run
])
def test_the_ticks_keep_their_errors(engine: Engine, db_url: str, tmp_path: Path,
                                     args: list[str], code: int) -> None:
    add_chipruns(engine, "L", 1, state="full")
    got, _out = _probe(db_url, tmp_path, args)
    assert got["code"] == code, got


def test_work_takes_the_full_path(engine: Engine, db_url: str, tmp_path: Path) -> None:
    add_chipruns(engine, "L", 2)
    got, out = _probe(db_url, tmp_path, ["definebyquery", "--label", "L", "--stage", "chip"])
    assert got["code"] == 0 and "remotebridge.define" in got["heavy"]
    assert out["components"] == 2 and out["remote_id"] is not None
