"""The four stages chained on the demo survey: chip -> cam -> warp -> stack, each
prepared, run by the local scheduler's job.sh, brought home and replayed (a minimal
stand-in for exec/poll), so every stage's plan is exercised with real programs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from remotebridge.db import pipeline as p
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.demo.generate import init_survey
from remotebridge.prepare import load_stages, prepare_run
from remotebridge.prepare.base import validate_dbinfo
from tests.support.demo_runs import VENV_BIN
from tests.support.prepare_runs import site_config, stage_remote

TABLES = {"chipProcessedImfile": p.ChipProcessedImfile, "camProcessedExp": p.CamProcessedExp,
          "warpSkyfile": p.WarpSkyfile, "stackSumSkyfile": p.StackSumSkyfile}


def run_stage(engine: Engine, tmp: Path, stage: str, ids: list[int]) -> None:
    with write_session(engine) as s:
        run = RemoteRun(stage=stage, label="demo", site="demo", state="new",
                        path_base=str(tmp / "jobs"))
        s.add(run)
        s.flush()
        s.add_all([RemoteComponent(remote_id=run.remote_id, stage_id=i, stage=stage)
                   for i in ids])
        rid = run.remote_id
    res = prepare_run(engine, site_config(tmp), rid)
    job_dir = stage_remote(Path(res.folder))
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["bash", "job.sh"], cwd=job_dir, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    head = json.loads((job_dir / "job_summary.jsonl").read_text().splitlines()[0])
    assert head["failed"] == head["missing"] == 0, (job_dir / "job_summary.jsonl").read_text()
    bring_home(job_dir)
    replay(engine, job_dir, stage)


def bring_home(job_dir: Path) -> None:
    for line in (job_dir / "outputs.manifest").read_text().splitlines():
        if line.startswith("#"):
            continue
        remote, local, permanent = line.split("\t")[:3]
        if permanent == "1" and Path(remote).exists():
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(remote, local)


def replay(engine: Engine, job_dir: Path, stage: str) -> None:
    schema = load_stages()[stage].dbinfo_schema
    with write_session(engine) as s:
        for f in sorted((job_dir / "dbinfo").iterdir()):
            for line in f.read_text().splitlines()[1:]:
                rec = json.loads(line)
                assert validate_dbinfo(schema, rec) == []
                s.execute(insert(TABLES[rec["table"]]), [{**rec["key"], **rec["values"]}])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_chip_cam_warp_stack(engine: Engine, tmp_path: Path) -> None:
    init_survey(engine, tmp_path / "survey", exposures=3, chips=2, size=64)
    with write_session(engine) as s:
        chips = list(s.execute(select(p.ChipRun.chip_id, p.ChipRun.workdir)).all())
    run_stage(engine, tmp_path, "chip", [c for c, _ in chips])
    with write_session(engine) as s:
        s.execute(insert(p.CamRun), [{"cam_id": c, "chip_id": c, "label": "demo",
                                      "workdir": w} for c, w in chips])
    run_stage(engine, tmp_path, "cam", [c for c, _ in chips])
    with write_session(engine) as s:
        cells = list(s.execute(select(p.Skycell.skycell_id, p.Skycell.tess_id)).all())
        s.execute(insert(p.WarpRun), [{"warp_id": c, "cam_id": c, "label": "demo",
                                       "workdir": w, "tess_id": cells[0][1]} for c, w in chips])
        s.execute(insert(p.WarpSkyCellMap), [{"warp_id": c, "skycell_id": sky}
                                             for c, _ in chips for sky, _t in cells[:2]])
    run_stage(engine, tmp_path, "warp", [c for c, _ in chips])
    with write_session(engine) as s:
        s.execute(insert(p.StackRun), [{"stack_id": 1, "label": "demo", "workdir":
                                        chips[0][1], "tess_id": cells[0][1],
                                        "skycell_id": cells[0][0], "filter": "g"}])
        s.execute(insert(p.StackInputSkyfile), [{"stack_id": 1, "warp_id": c}
                                                for c, _ in chips])
    run_stage(engine, tmp_path, "stack", [1])
    with write_session(engine) as s:
        stack = s.get(p.StackSumSkyfile, 1)
        assert stack is not None and stack.fault == 0 and stack.n_inputs == len(chips)


@pytest.mark.parametrize("parts", [("/w", "e1", "e1.xy.ch"), ("/w/", "e1", "n"), ("", "e", "n"),
                                   ("/w", "/abs", "n"), ("/w", "e", "/n"), ("neb://h/w", "e", ""),
                                   ("/w", "", "n")])
def test_product_base_is_posixpath_join(parts: tuple[str, str, str]) -> None:
    import posixpath

    from remotebridge.prepare.chip import product_base

    assert product_base(*parts) == posixpath.join(*parts)
