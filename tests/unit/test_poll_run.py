"""poll on the demo survey: local site, the real local scheduler, real demo programs,
real exec (SQLite and PostgreSQL). Hostile remote data lives in test_poll_hostile.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from remotebridge import config as cfgmod
from remotebridge.cli.context import AppContext
from remotebridge.cli.poll_cmd import poll
from remotebridge.db.bridge import RemoteComponent
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun
from remotebridge.demo.generate import init_survey
from remotebridge.exec import exec_runs
from remotebridge.poll import poll_runs, poll_until
from remotebridge.prepare import prepare_run
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from tests.support.demo_runs import (
    control_fixture,
    define_run,
    demo_env,
    down_config,
    local_site,
    wait_job_end,
)
from tests.support.demo_runs import run_row as get


def raw_config(tmp: Path, **site: Any) -> dict[str, Any]:
    return {"site": {"demo": {**local_site(tmp, max_attempts=2), **site}}}


def config(tmp: Path, **site: Any) -> cfgmod.Config:
    return cfgmod.build(raw_config(tmp, **site))


_env = demo_env
control = control_fixture("rbp")


def prepared_run(engine: Engine, tmp: Path, *, exposures: int = 2,
                 corrupt: int | None = None, slow: float = 0.0) -> int:
    """A prepared chip run of a fresh demo survey (optionally one raw chip image corrupt,
    or job.sh made to sleep first so a poll finds it running)."""
    init_survey(engine, tmp / "survey", exposures=exposures, chips=2, size=64)
    cfg = config(tmp)
    rid = define_run(engine, cfg, tmp)
    if corrupt is not None:
        corrupt_raw(engine, corrupt)
    prep = prepare_run(engine, cfg, rid)
    if slow:
        script = Path(prep.folder) / "job.sh"
        lines = script.read_text().splitlines(keepends=True)
        script.write_text(lines[0] + f"sleep {slow}\n" + "".join(lines[1:]))
    return rid


def corrupt_raw(engine: Engine, chip_id: int) -> str:
    """Overwrite one raw chip image of ``chip_id`` with bytes that are not FITS."""
    from remotebridge.db.pipeline import RawImfile

    with read_session(engine) as s:
        exp = s.execute(select(ChipRun.exp_id).where(ChipRun.chip_id == chip_id)).scalar_one()
        uri = s.execute(select(RawImfile.uri).where(RawImfile.exp_id == exp)
                        .order_by(RawImfile.class_id)).scalars().first()
    assert uri is not None
    size = os.path.getsize(uri)
    Path(uri).write_bytes(b"not a fits file " * (size // 16 + 1))
    return uri


def submit(engine: Engine, tmp: Path, rid: int) -> str:
    out = exec_runs(engine, config(tmp), remote_id=rid)
    assert [o.result for o in out] == ["run"], out
    return get(engine, rid).job_id or ""


def wait_job(tmp: Path, job_id: str, timeout: float = 120) -> JobState:
    """Wait for the job to end on the site (the scheduler, not poll)."""
    site = config(tmp).site()
    return wait_job_end(make_scheduler(links_for(site)[0], site), job_id, timeout, 0.3)


def components(engine: Engine, rid: int) -> dict[int, tuple[str, int, int]]:
    with read_session(engine) as s:
        rows = s.execute(select(RemoteComponent.stage_id, RemoteComponent.state,
                                RemoteComponent.attempts, RemoteComponent.fault)
                         .where(RemoteComponent.remote_id == rid)).all()
    return {sid: (state, att, fault) for sid, state, att, fault in rows}


def chip_states(engine: Engine) -> dict[int, tuple[str, int]]:
    with read_session(engine) as s:
        return {c: (st, f) for c, st, f in s.execute(
            select(ChipRun.chip_id, ChipRun.state, ChipRun.fault)).all()}


def results(engine: Engine) -> list[ChipProcessedImfile]:
    with read_session(engine) as s:
        return list(s.execute(select(ChipProcessedImfile).order_by(
            ChipProcessedImfile.chip_id, ChipProcessedImfile.class_id)).scalars())


def toml_site(site: dict[str, Any]) -> str:
    """A config file with one site ``demo`` (values are str, int or lists of str)."""
    return "[site.demo]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in site.items())


def test_chip_run_polled_to_full(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path)
    submit(engine, tmp_path, rid)
    out = poll_until(engine, config(tmp_path), wait=120, remote_id=rid, pause=0.5)
    assert out[-1].action == "full" and out[-1].state == "full", out
    assert out[-1].full == [1, 2] and out[-1].records == 4 and out[-1].files > 0
    run = get(engine, rid)
    assert run.state == "full" and run.fault == 0 and run.owner is None
    assert run.last_poll is not None
    assert {c: s for c, (s, _f) in chip_states(engine).items()} == {1: "full", 2: "full"}
    assert {sid: st for sid, (st, _a, _f) in components(engine, rid).items()} == \
        {1: "full", 2: "full"}
    rows = results(engine)
    assert len(rows) == 4
    for row in rows:
        assert os.path.isfile(row.uri), row.uri  # the product is installed at home
        stats = json.loads(Path(row.uri.replace(".fits", ".stats.json")).read_text())
        assert row.fault == 0
        assert row.bg == pytest.approx(stats["bg"]) and row.n_stars == stats["n_stars"]
        assert row.fwhm == pytest.approx(stats["fwhm"]) and row.hostname == stats["hostname"]
        assert os.path.isfile(row.uri.replace(".fits", ".log"))
    # polling again is harmless: nothing is left in 'run'
    assert poll_runs(engine, config(tmp_path), force=True) == []
    assert len(results(engine)) == 4


def test_poll_before_the_end_only_touches_last_poll(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, slow=4)
    job_id = submit(engine, tmp_path, rid)
    before = get(engine, rid).last_poll
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.job_state, o.state) for o in out] == [("waiting", "running", "run")]
    run = get(engine, rid)
    assert run.state == "run" and run.owner is None and run.job_id == job_id
    assert run.last_poll is not None and (before is None or run.last_poll >= before)
    assert results(engine) == []
    # not due yet (poll_interval 300 s): a plain poll does nothing at all
    assert poll_runs(engine, config(tmp_path)) == []
    wait_job(tmp_path, job_id)
    assert poll_runs(engine, config(tmp_path)) == []
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [o.action for o in out] == ["full"]


def test_failing_task_retried_then_abandoned(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, corrupt=1)
    cfg = config(tmp_path)
    submit(engine, tmp_path, rid)
    out = poll_until(engine, cfg, wait=120, remote_id=rid, pause=0.5)
    last = out[-1]
    assert (last.action, last.state, last.full, last.retry) == ("retry", "pending", [2], [1])
    assert components(engine, rid) == {1: ("failed", 1, 0), 2: ("full", 0, 0)}
    assert chip_states(engine) == {1: ("new", 0), 2: ("full", 0)}
    folder = tmp_path / "jobs" / f"remote_{rid}"
    subset = (folder / "retry.a2.tasks").read_text().splitlines()
    assert subset[0] == "# remotebridge.subset v1"
    plan = [json.loads(ln) for ln in (folder / "plan.jsonl").read_text().splitlines()[1:]]
    assert sorted(int(t) for t in subset[1:]) == sorted(
        t["task_id"] for t in plan if t["stage_id"] in (0, 1))
    job_sh = (folder / "job.sh").read_text()
    assert "cmd.a2.0000" in job_sh and "cmd.0000" not in job_sh
    info = json.loads((folder / "job.json").read_text())
    assert info["retry"]["attempt"] == 2 and info["tasks"]["cmd"] == 4
    assert len([ln for ln in (folder / "plan.jsonl").read_text().splitlines()]) == 1 + len(plan)
    # the follow-up submission fails again: abandoned, the rest is full
    submit(engine, tmp_path, rid)
    out = poll_until(engine, cfg, wait=120, remote_id=rid, pause=0.5)
    last = out[-1]
    assert (last.action, last.state, last.full, last.abandoned) == ("full", "full", [], [1])
    assert components(engine, rid) == {1: ("abandoned", 2, 34), 2: ("full", 0, 0)}
    assert chip_states(engine) == {1: ("new", 34), 2: ("full", 0)}
    assert [r.chip_id for r in results(engine)] == [2, 2]
    assert get(engine, rid).state == "full"


def test_link_down_goes_to_auth(engine: Engine, tmp_path: Path, control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    job_id = submit(engine, tmp_path, rid)
    wait_job(tmp_path, job_id)
    out = poll_runs(engine, down_config(tmp_path, control), force=True)
    assert [(o.action, o.state) for o in out] == [("auth", "auth")]
    run = get(engine, rid)
    assert run.state == "auth" and run.prev_state == "run" and "link down" in run.note
    assert results(engine) == [] and chip_states(engine) == {1: ("new", 0)}


def test_cli_quiet_json_and_auth_exit(engine: Engine, db_url: str, tmp_path: Path,
                                      control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    job_id = submit(engine, tmp_path, rid)
    good, down = tmp_path / "good.toml", tmp_path / "down.toml"
    good.write_text(toml_site(raw_config(tmp_path)["site"]["demo"]))
    down.write_text(toml_site({"kind": "ssh", "scheduler": "slurm", "frontends": ["fe-a"],
                               "control_dir": str(control),
                               "remote_root": str(tmp_path / "remote side")}))
    runner = CliRunner()
    # not due (exec just polled it): nothing printed
    r = runner.invoke(poll, [], obj=AppContext(config_path=str(good), db_url=db_url))
    assert r.exit_code == 0 and r.output == ""
    wait_job(tmp_path, job_id)
    r = runner.invoke(poll, ["--force", "--label", "other"],
                      obj=AppContext(config_path=str(good), db_url=db_url))
    assert r.exit_code == 0 and r.output == ""
    r = runner.invoke(poll, ["--remote-id", str(rid), "--force"],
                      obj=AppContext(config_path=str(down), db_url=db_url, json=True))
    assert r.exit_code == 75, r.output
    assert json.loads(r.output)[0]["action"] == "auth"
    from remotebridge.db import statemachine
    from remotebridge.db.engine import write_session

    with write_session(engine) as s:
        statemachine.revertauth(s)
    r = runner.invoke(poll, ["--wait", "60"],
                      obj=AppContext(config_path=str(good), db_url=db_url))
    assert r.exit_code == 0, r.output
    assert f"remote run {rid}: run -> full (job " in r.output


def test_unknown_job_with_summary_is_finished(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    job_id = submit(engine, tmp_path, rid)
    wait_job(tmp_path, job_id)
    # the scheduler forgets the job (Slurm MinJobAge, Moab purge)
    shutil.rmtree(tmp_path / "remote side" / ".rb_local_jobs" / job_id)
    summary = tmp_path / "remote side" / f"remote_{rid}" / "job_summary.jsonl"
    kept = summary.read_bytes()
    summary.unlink()
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.job_state) for o in out] == [("waiting", "unknown")]
    assert get(engine, rid).state == "run"
    summary.write_bytes(kept)
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.job_state, o.state) for o in out] == [("full", "unknown", "full")]
    assert len(results(engine)) == 2


def test_job_killed_before_its_summary(engine: Engine, tmp_path: Path) -> None:
    """A job killed mid-way (as at its walltime) wrote no summary: poll has the helper
    build it from status/, and the tasks that never ran count as failed."""
    rid = prepared_run(engine, tmp_path, exposures=1, slow=30)
    job_id = submit(engine, tmp_path, rid)
    site = config(tmp_path).site()
    make_scheduler(links_for(site)[0], site).cancel(job_id)
    assert wait_job(tmp_path, job_id) is JobState.CANCELLED
    job_dir = tmp_path / "remote side" / f"remote_{rid}"
    assert not (job_dir / "job_summary.jsonl").exists()
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state, o.retry) for o in out] == [("retry", "pending", [1])]
    assert components(engine, rid) == {1: ("failed", 1, 0)}
    # poll removed the summary it had made, so the next attempt starts clean
    assert not (job_dir / "job_summary.jsonl").exists()


def test_listed_job_in_an_unmapped_state_is_never_timed_out(tmp_path: Path) -> None:
    """Queued under a state name we do not know is not 'forgotten': no walltime rule."""
    from datetime import timedelta

    from remotebridge.db.base import utcnow
    from remotebridge.poll.finish import RunInfo
    from remotebridge.poll.runner import _ended

    (tmp_path / "allocation.json").write_text('{"walltime_seconds": 600}')
    run = RunInfo(remote_id=1, stage="chip", site="demo", job_id="7", folder=tmp_path,
                  job_dir="/r/remote_1", since=utcnow() - timedelta(days=2))
    assert _ended(run, JobState.UNKNOWN, set())  # not listed, long past its walltime
    assert not _ended(run, JobState.LISTED, set())
    assert _ended(run, JobState.LISTED, {"/r/remote_1"})  # its summary says it ended
