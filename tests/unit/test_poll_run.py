"""poll on the demo survey: local site, the real local scheduler, real demo programs,
real exec (SQLite and PostgreSQL). Hostile remote data lives in test_poll_hostile.py."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from remotebridge.cli.context import AppContext
from remotebridge.cli.poll_cmd import poll
from remotebridge.poll import poll_runs, poll_until
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from tests.support.demo_runs import (
    down_config,
)
from tests.support.demo_runs import run_row as get
from tests.support.poll_run import (  # noqa: F401 - helpers and fixtures moved to tests/support
    _env,
    control,
)
from tests.support.poll_runs import (
    chip_states,
    components,
    config,
    prepared_run,
    raw_config,
    results,
    submit,
    toml_site,
    wait_job,
)


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
    # the runner's measured elapsed (all phases) is stored and feeds the cost model
    from remotebridge.db.engine import read_session
    from remotebridge.prepare.registry import get_stage

    with read_session(engine) as session:
        measured = get_stage("chip").measured_cost(session, 10)
    assert measured is not None and measured > 0
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


def test_poll_of_a_running_job_stores_the_runner_progress(engine: Engine, tmp_path: Path
                                                          ) -> None:
    """While the job runs, poll reads runner/progress.json and show reports it."""
    from remotebridge import runs
    from remotebridge.jobfolder import PROGRESS, remote_job_dir

    rid = prepared_run(engine, tmp_path, slow=4)
    job_id = submit(engine, tmp_path, rid)
    remote = Path(remote_job_dir(tmp_path / "jobs" / f"remote_{rid}")) / PROGRESS.name
    for _ in range(200):
        if remote.exists():
            break
        time.sleep(0.1)
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [o.action for o in out] == ["waiting"]
    stored = json.loads(get(engine, rid).progress)
    assert stored["tasks"] >= 1 and {"done", "running", "left"} <= set(stored)
    detail = runs.show_run(engine, rid)
    shown = detail.to_dict()["progress"]
    assert "started" in stored and "estimated_end" in shown
    assert {k: v for k, v in shown.items() if k != "estimated_end"} == stored
    wait_job(tmp_path, job_id)


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
    # per chip: only the bad chip's task and its exposure's post task, not the good chip
    bad = next(t for t in plan if t["stage_id"] == 1 and t["phase"] == "cmd"
               and Path(t["argv"][t["argv"].index("--raw") + 1]).read_bytes()
               .startswith(b"not a fits"))
    assert sorted(int(t) for t in subset[1:]) == sorted(
        t["task_id"] for t in plan if t["stage_id"] == 0 or t["task_id"] == bad["task_id"]
        or (t["stage_id"] == 1 and t["phase"] == "post"))
    # the retry asks for an allocation of its own size: one command, not four
    alloc = json.loads((folder / "allocation.json").read_text())
    assert alloc["inputs"]["n_commands"] == 1 and alloc["slots"] <= 2
    job_sh = (folder / "job.sh").read_text()
    # the dynamic runner (the default) runs just the subset; multi-prog chunks: test_poll_retry
    assert " --subset retry.a2.tasks " in job_sh and "rb_chunk cmd." not in job_sh
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

    from remotebridge import jobfolder
    from remotebridge.db.base import utcnow
    from remotebridge.poll.finish import RunInfo
    from remotebridge.poll.runner import _ended

    (tmp_path / "allocation.json").write_text(
        jobfolder.json_doc(jobfolder.ALLOCATION, {"walltime_seconds": 600}))
    run = RunInfo(remote_id=1, stage="chip", site="demo", job_id="7", folder=tmp_path,
                  job_dir="/r/remote_1", since=utcnow() - timedelta(days=2))
    assert _ended(run, JobState.UNKNOWN, set())  # not listed, long past its walltime
    assert not _ended(run, JobState.LISTED, set())
    assert _ended(run, JobState.LISTED, {"/r/remote_1"})  # its summary says it ended
