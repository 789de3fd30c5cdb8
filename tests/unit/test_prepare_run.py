"""prepare_run end to end on the demo survey (SQLite and PostgreSQL), and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, delete, select

from remotebridge import config as cfgmod
from remotebridge.cli.context import AppContext
from remotebridge.cli.prepare_cmd import prepare, review
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.db.pipeline import ChipRun, DetrendFile, RawImfile
from remotebridge.demo.generate import init_survey
from remotebridge.errors import IllegalTransition, PrepareError
from remotebridge.prepare import load_stages, plan, prepare_run
from remotebridge.prepare.base import validate_dbinfo
from remotebridge.prepare.chip import ChipStage
from remotebridge.prepare.plan import OutputList
from tests.support.demo_runs import VENV_BIN
from tests.support.prepare_runs import new_run, site_config, stage_remote


@pytest.fixture
def demo(engine: Engine, tmp_path: Path) -> tuple[Engine, Path, int]:
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    return engine, tmp_path, new_run(engine, tmp_path)


def state_of(engine: Engine, rid: int) -> tuple[str, int, str]:
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        return run.state, run.fault, run.note


def check_inputs(job_dir: Path) -> list[str]:
    r = subprocess.run(["python3", "rbhelper.py", "check-inputs", "inputs.manifest"],
                       cwd=job_dir, capture_output=True, text=True, check=True)
    return r.stdout.splitlines()


def test_demo_chip_run_end_to_end(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    res = prepare_run(engine, site_config(tmp), rid)
    assert state_of(engine, rid)[0] == "pending"
    folder = Path(res.folder)
    assert res.info["tasks"] == {"pre": 1, "cmd": 4, "post": 2}
    for name in ["plan.jsonl", "job.json", "allocation.json"]:
        assert json.loads((folder / name).read_text().splitlines()[0][:-1] + "}")["version"] == 1
    assert (folder / "inputs.manifest").read_text().startswith("# remotebridge.inputs v2\n")
    job_dir = stage_remote(folder)
    missing = next(ln for ln in (folder / "inputs.manifest").read_text().splitlines()
                   if "rb_chip.py" in ln).split("\t")[1]
    os.unlink(missing)
    assert check_inputs(job_dir) == [missing]
    stage_remote(folder)
    assert check_inputs(job_dir) == []
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["bash", "job.sh"], cwd=job_dir, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = (job_dir / "job_summary.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["ok"] == 7
    assert all(json.loads(ln)["rc"] == 0 for ln in lines[1:8])
    records = [json.loads(ln) for f in sorted((job_dir / "dbinfo").iterdir())
               for ln in f.read_text().splitlines()[1:]]
    assert len(records) == 4
    for rec in records:
        assert validate_dbinfo(ChipStage.dbinfo_schema, rec) == []
        assert rec["values"]["fault"] == 0 and rec["values"]["n_stars"] is not None


def test_pretend_writes_nothing(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    res = prepare_run(engine, site_config(tmp), rid, pretend=True)
    assert res.pretend and res.job is not None and "job.sh" in res.job.files
    assert state_of(engine, rid)[0] == "new"
    assert not (tmp / "jobs").exists()


def test_missing_input_goes_to_error(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    with read_session(engine) as s:
        uri = s.execute(select(RawImfile.uri).order_by(RawImfile.exp_id)).scalars().first()
    assert uri is not None
    os.unlink(uri)
    with pytest.raises(PrepareError, match="does not exist at home") as exc:
        prepare_run(engine, site_config(tmp), rid)
    assert exc.value.path == uri and exc.value.component == 1
    state, fault, note = state_of(engine, rid)
    assert (state, fault) == ("error", 11) and uri in note and "stage_id=1" in note
    with pytest.raises(IllegalTransition):
        prepare_run(engine, site_config(tmp), rid)


def test_a_product_planned_twice_is_refused(engine: Engine, tmp_path: Path) -> None:
    """The pipeline queued one exposure's chip work twice (two chipRuns, same exposure
    and workdir: the race two hosts' advance once had). Both would write the same
    products; prepare refuses the run naming both components (fault 18) instead of
    letting the job overwrite one with the other and poll refuse its summary."""
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    with write_session(engine) as s:
        first = s.get(ChipRun, 1)
        assert first is not None
        s.add(ChipRun(exp_id=first.exp_id, label=first.label, state=first.state,
                      workdir=first.workdir, data_group=first.data_group, fault=0,
                      registered=first.registered, end_stage=first.end_stage,
                      tess_id=first.tess_id))
    rid = new_run(engine, tmp_path)
    with pytest.raises(PrepareError, match="a product is planned twice: components 1, 3 "
                                           "all make it") as exc:
        prepare_run(engine, site_config(tmp_path), rid)
    assert exc.value.fault == 18 and exc.value.component == 3 and exc.value.path
    state, fault, note = state_of(engine, rid)
    assert (state, fault) == ("error", 18) and exc.value.path in note


@pytest.mark.parametrize("bits", [plan.SEEN_BITS, 64])
def test_listed_twice_is_exact_and_names_every_component(bits: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact whatever the bitmap: with 64 slots nearly every output shares a slot with
    another, and still only the paths really listed twice are named."""
    monkeypatch.setattr(plan, "SEEN_BITS", bits)
    outs = OutputList()
    for i in range(2000):
        outs.add(f"/r/p{i}.fits", f"/l/p{i}.fits", True, i)
    assert outs.listed_twice() == {}
    outs.add("/r/p7.fits", "/l/p7.fits", True, 9000)
    outs.add("/r/p7.fits", "/l/p7.fits", True, 9001)
    outs.add("/r/p8.fits", "/l/p8.fits", False, 8)
    assert outs.listed_twice() == {"/r/p7.fits": [7, 9000, 9001], "/r/p8.fits": [8, 8]}


def test_no_detrend_names_chip(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    with write_session(engine) as s:
        s.execute(delete(DetrendFile).where(DetrendFile.det_type == "flat"))
    with pytest.raises(PrepareError, match="no flat detrend for chip") as exc:
        prepare_run(engine, site_config(tmp), rid)
    assert exc.value.component == 1 and exc.value.fault == 12


def test_allocation_that_cannot_fit(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    cfg = cfgmod.build({"site": {"demo": {"kind": "local", "scheduler": "local",
                                          "local_root": str(tmp / "r"), "walltime_max": 1000}},
                        "stage": {"chip": {"cost_seconds": 5000.0}}})
    with pytest.raises(PrepareError, match="allocation does not fit"):
        prepare_run(engine, cfg, rid)
    assert state_of(engine, rid)[:2] == ("error", 13)


def test_stages_registered() -> None:
    stages = load_stages()
    assert set(stages) >= {"chip", "cam", "warp", "stack"}
    for cls in stages.values():
        assert cls.name and cls.description and cls.dbinfo_schema


def test_cli_pretend_and_review(demo: tuple[Engine, Path, int]) -> None:
    engine, tmp, rid = demo
    cfg_file = tmp / "config.toml"
    cfg_file.write_text(f'[site.demo]\nkind = "local"\nscheduler = "local"\n'
                        f'local_root = "{tmp / "remote side"}"\n')
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    app = AppContext(config_path=str(cfg_file), db_url=url, json=True)
    r = runner.invoke(prepare, ["--remote-id", str(rid), "--pretend"], obj=app)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["pretend"] and data["prepared"][0]["review"]["tasks"]["cmd"] == 4
    assert state_of(engine, rid)[0] == "new"
    app = AppContext(config_path=str(cfg_file), db_url=url, json=True)
    assert runner.invoke(prepare, ["--remote-id", str(rid)], obj=app).exit_code == 0
    app = AppContext(config_path=str(cfg_file), db_url=url, json=True)
    r = runner.invoke(review, [str(rid)], obj=app)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["state"] == "pending" and data["chunks"][0]["limit"] == 60000
    assert data["heads"]["inputs.manifest"][0] == "# remotebridge.inputs v2"
    assert data["heads"]["inputs.manifest"][1].endswith("\tsha256")  # review shows digests
    assert len(data["heads"]["inputs.manifest"][2].split("\t")[5]) == 64
