"""Runs for the status page tests, put into the database through the library.

Three runs of label ``demo`` (one ``new``, one in ``run`` with transfer figures, one in
``error`` whose note holds a script tag and an escape sequence, with a failed task's
log in its job folder) and one of label ``other``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, update

from remotebridge import config as cfgmod
from remotebridge.db import statemachine
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.define import define_by_query
from remotebridge.states import RunState
from tests.support.db import add_chipruns

HOSTILE = "<script>alert('x')</script> \x1b[31mred\x1b[0m"
LOG_TEXT = "task 2 of chip 2: Traceback (most recent call last)\nValueError: bad <b>pixel</b>\n"
PUSH_NOTE = ("exec: submitted job 4242 (token rb-t); job folder 5 files; inputs 0 missing "
             "of 2, pushed 2 files 2048 bytes (1.00 MB/s) over localhost")


@dataclass
class Demo:
    """The ids of the runs made by :func:`populate`."""

    config: cfgmod.Config
    new: int
    running: int
    failed: int
    other: int
    jobs: Path


def site_config(tmp: Path) -> cfgmod.Config:
    """A local site ``demo`` whose remote side is under ``tmp``."""
    return cfgmod.build({"site": {"demo": {
        "kind": "local", "scheduler": "local", "local_root": str(tmp / "remote side")}}})


def _define(engine: Engine, cfg: cfgmod.Config, jobs: Path, label: str) -> int:
    res = define_by_query(engine, cfg, label=label, stage="chip", limit=2, path_base=str(jobs))
    assert res.remote_id is not None
    return res.remote_id


def move(engine: Engine, rid: int, wanted: RunState, note: str = "", **values: object) -> None:
    """Move run ``rid`` to ``wanted`` through the state machine; ``note`` goes into the
    history line and becomes the run's note, as exec and poll do."""
    with write_session(engine) as s:
        statemachine.move(s, rid, wanted, note=note, **values)
        s.execute(update(RemoteRun).where(RemoteRun.remote_id == rid).values(note=note))


def write_folder(jobs: Path, rid: int) -> Path:
    """A job folder with allocation, job script, outputs manifest and a failed task's log."""
    folder = jobs / f"remote_{rid}"
    (folder / "logs").mkdir(parents=True)
    (folder / "allocation.json").write_text(json.dumps({
        "nodes": 1, "tasks_per_node": 2, "threads": 2, "slots": 2, "walltime": "00:20:00",
        "steps": ["2 tasks of 150 s"]}))
    (folder / "job.sh").write_text("#!/bin/bash\necho '<script>job</script>'\n")
    (folder / "plan.jsonl").write_text('{"task": 1}\n')
    (folder / "outputs.manifest").write_text(
        "# remotebridge.outputs v1\n/r/out/c1.fits\t/home/out/c1.fits\t1\t1\n"
        "/r/out/c1.tmp\t/home/out/c1.tmp\t0\t1\n")
    (folder / "logs" / "task-2.log").write_text(LOG_TEXT)
    return folder


def populate(engine: Engine, tmp: Path) -> Demo:
    """The runs described in the module docstring."""
    cfg = site_config(tmp)
    jobs = tmp / "jobs"
    add_chipruns(engine, "demo", 6)
    add_chipruns(engine, "other", 2, start=100)
    new, running, failed = (_define(engine, cfg, jobs, "demo") for _ in range(3))
    other = _define(engine, cfg, jobs, "other")
    move(engine, running, RunState.PENDING, "prepared")
    move(engine, running, RunState.RUN, PUSH_NOTE, job_id="4242")
    move(engine, failed, RunState.PENDING, "prepared")
    move(engine, failed, RunState.RUN, "exec: submitted job 4243", job_id="4243")
    move(engine, failed, RunState.ERROR, "poll: " + HOSTILE, fault=31)
    with write_session(engine) as s:
        s.execute(update(RemoteComponent).where(RemoteComponent.remote_id == failed,
                                                RemoteComponent.stage_id == 6)
                  .values(state="failed", fault=3, attempts=1))
    write_folder(jobs, failed)
    return Demo(cfg, new, running, failed, other, jobs)
