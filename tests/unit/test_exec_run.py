"""exec on the demo survey with the local site and the real local scheduler (SQLite and PostgreSQL).

Link faults are produced for real (an ssh site whose front ends have no master) or
with a test double of the *link* (a LocalLink that loses the submit answer).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, update

from remotebridge.cli.context import AppContext
from remotebridge.cli.exec_cmd import exec_cmd
from remotebridge.db import statemachine
from remotebridge.db.bridge import RemoteEvent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.exec import exec_runs, folder_files, open_folder, token_attempt
from remotebridge.exec.submit import pending_token
from remotebridge.schedulers import JobState
from remotebridge.states import ExecResult, RunState
from tests.support.demo_runs import (
    VENV_BIN,
)
from tests.support.demo_runs import run_row as get
from tests.support.exec_run import (  # noqa: F401 - helpers and fixtures moved to tests/support
    LosingLink,
    MeddlingLink,
    _env,
    control,
    down_config,
    local_config,
    local_raw,
    losing_links,
    make_runs,
    meddling,
    registry,
    wait_done,
)


def test_exec_submits_and_the_job_runs(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "run" and out.job_id and not out.adopted
    run = get(engine, rid)
    assert (run.state, run.job_id, run.attempt) == ("run", out.job_id, 1)
    assert run.last_poll is not None and run.owner is None
    assert run.submit_token == out.token and token_attempt(out.token, rid) == 1
    assert out.missing == out.inputs > 0 and out.pushed_files == out.inputs
    assert "MB/s" in run.note and "pushed" in run.note
    assert wait_done(tmp_path, out.job_id) is JobState.COMPLETED
    job_dir = Path(open_folder(Path(tmp_path / "jobs" / f"remote_{rid}")).job_dir)
    head = json.loads((job_dir / "job_summary.jsonl").read_text().splitlines()[0])
    assert head["ok"] == head["tasks"] == 4  # pre, 2 chips, post


def test_exec_twice_submits_once(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    cfg = local_config(tmp_path)
    assert [o.result for o in exec_runs(engine, cfg)] == ["run"]
    assert exec_runs(engine, cfg) == []
    assert exec_runs(engine, cfg, remote_id=rid) == []
    assert len(registry(tmp_path)) == 1


def test_only_missing_inputs_are_pushed_on_resubmission(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    cfg = local_config(tmp_path)
    (first,) = exec_runs(engine, cfg)
    wait_done(tmp_path, str(first.job_id))
    # poll's resubmission: run -> pending; one input purged from the site meanwhile
    with write_session(engine) as s:
        statemachine.transition(s, rid, RunState.RUN, RunState.PENDING, note="retry")
    manifest = (tmp_path / "jobs" / f"remote_{rid}" / "inputs.manifest").read_text()
    gone = manifest.splitlines()[2].split("\t")[1]
    os.unlink(gone)
    (second,) = exec_runs(engine, cfg)
    assert second.result == "run" and (second.missing, second.pushed_files) == (1, 1)
    assert second.token != first.token and token_attempt(second.token, rid) == 2
    assert get(engine, rid).attempt == 2 and Path(gone).exists()
    assert len(registry(tmp_path)) == 2


def test_submission_clears_the_previous_jobs_progress(engine: Engine, tmp_path: Path) -> None:
    """A resubmitted run does not show the progress poll read from its previous job."""
    (rid,) = make_runs(engine, tmp_path)
    with write_session(engine) as s:
        s.execute(update(RemoteRun).where(RemoteRun.remote_id == rid)
                  .values(progress='{"done": 3, "failed": 1, "running": 0, "left": 0}'))
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "run"
    assert get(engine, rid).progress is None


def test_folder_files_leave_out_what_the_job_makes(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    local = tmp_path / "jobs" / f"remote_{rid}"
    for rel in ["status/1.json", "dbinfo/1.dbinfo.jsonl", "job_summary.jsonl", "job.77.out",
                "rb_local.x.err"]:
        (local / rel).parent.mkdir(exist_ok=True)
        (local / rel).write_text("{}")
    folder = open_folder(local)
    rels = {os.path.relpath(s.local, local) for s in folder_files(folder)}
    assert {"job.sh", "job.json", "rbhelper.py", "inputs.manifest", "plan.jsonl"} <= rels
    assert not rels & {"status/1.json", "dbinfo/1.dbinfo.jsonl", "job_summary.jsonl",
                       "job.77.out", "rb_local.x.err"}
    assert all(s.remote.startswith(folder.job_dir + "/") for s in folder_files(folder))


def test_link_down_goes_to_auth_then_revertauth(engine: Engine, tmp_path: Path,
                                                control: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    (out,) = exec_runs(engine, down_config(tmp_path, control))
    assert out.result == "auth" and "fe-a" in out.message
    run = get(engine, rid)
    assert (run.state, run.prev_state, run.job_id, run.submit_token) == \
        ("auth", "pending", None, None)
    assert run.note.startswith("link down:") and run.owner is None
    assert not (tmp_path / "remote side" / f"remote_{rid}").exists()  # nothing pushed
    assert registry(tmp_path) == []
    with write_session(engine) as s:
        assert statemachine.revertauth(s, label="demo") == [(rid, RunState.PENDING)]
    (again,) = exec_runs(engine, local_config(tmp_path))
    assert again.result == "run" and get(engine, rid).state == "run"


def test_lost_submit_answer_is_adopted_by_token(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    (out,) = exec_runs(engine, local_config(tmp_path), link_factory=losing_links)
    assert out.result == "run" and out.adopted  # the adapter found it by token: it says so
    jobs = registry(tmp_path)
    assert jobs == [out.job_id] and out.token is not None and out.token in jobs[0]
    assert get(engine, rid).job_id == out.job_id


def test_token_left_by_a_failed_exec_is_adopted_next_time(engine: Engine,
                                                          tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    LosingLink.lose_find = 1
    (out,) = exec_runs(engine, local_config(tmp_path), link_factory=losing_links)
    assert out.result == "retry"
    run = get(engine, rid)
    assert run.state == "pending" and pending_token(run.submit_token, rid, 0)
    assert len(registry(tmp_path)) == 1  # the job exists, exec does not know its id
    (again,) = exec_runs(engine, local_config(tmp_path))
    assert again.result == "run" and again.adopted and again.token == run.submit_token
    assert registry(tmp_path) == [again.job_id]


def test_two_exec_processes_submit_each_run_once(engine: Engine, tmp_path: Path) -> None:
    ids = make_runs(engine, tmp_path, runs=3, exposures=3)
    cfg_file = tmp_path / "config.toml"
    site = local_raw(tmp_path)["site"]["demo"]  # type: ignore[index]
    cfg_file.write_text("[site.demo]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in site.items()))
    url = engine.url.render_as_string(hide_password=False)
    tool = str(Path(VENV_BIN) / "remotetool")
    argv = [tool, "--db", url, "--config", str(cfg_file), "--json", "exec"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = [o["remote_id"] for out, _ in outs for o in json.loads(out)]
    assert sorted(done) == ids
    assert len(registry(tmp_path)) == 3
    assert {get(engine, r).state for r in ids} == {"run"}


def test_cli_json_and_exit_codes(engine: Engine, tmp_path: Path, control: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    url = engine.url.render_as_string(hide_password=False)
    cfg_file = tmp_path / "down.toml"
    down = down_config(tmp_path, control).site()
    cfg_file.write_text(
        f'[site.demo]\nkind = "ssh"\nscheduler = "slurm"\nfrontends = ["fe-a"]\n'
        f'ssh_config = "{down.ssh_config}"\ncontrol_dir = "{control}"\n'
        f'remote_root = "{tmp_path / "remote side"}"\n')
    runner = CliRunner()
    r = runner.invoke(exec_cmd, [], obj=AppContext(config_path=str(cfg_file), db_url=url,
                                                  json=True))
    assert r.exit_code == 75
    assert json.loads(r.stdout)[0]["result"] == "auth"
    r = runner.invoke(exec_cmd, [], obj=AppContext(config_path=str(cfg_file), db_url=url,
                                                  quiet=True))
    assert r.exit_code == 75  # the run still in auth, the link still down: 75 every time
    with write_session(engine) as s:
        statemachine.revertauth(s)
    good = tmp_path / "good.toml"
    good.write_text(f'[site.demo]\nkind = "local"\nscheduler = "local"\n'
                    f'local_root = "{tmp_path / "remote side"}"\n')
    r = runner.invoke(exec_cmd, ["--remote-id", str(rid)],
                      obj=AppContext(config_path=str(good), db_url=url, json=True))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["job_id"] == get(engine, rid).job_id
    r = runner.invoke(exec_cmd, ["--remote-id", "999"],
                      obj=AppContext(config_path=str(good), db_url=url))
    assert r.exit_code != 0


def test_job_of_a_run_cancelled_meanwhile_is_cancelled(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    (out,) = exec_runs(engine, local_config(tmp_path),
                       link_factory=meddling(engine, rid, "rb-local-submit", "cancel"))
    assert out.result == "cancelled" and out.job_id and "cancelled" in out.message
    assert registry(tmp_path) == [out.job_id]
    assert wait_done(tmp_path, out.job_id) is JobState.CANCELLED
    run = get(engine, rid)
    assert (run.state, run.job_id) == ("cancelled", None)
    with write_session(engine) as s:
        notes = [e.note for e in s.query(RemoteEvent).filter_by(remote_id=rid)]
    assert any(out.job_id in n and "cancelled" in n for n in notes)


def test_cli_exits_1_when_a_job_had_to_be_cancelled() -> None:
    from remotebridge.cli.exec_cmd import exit_code
    from remotebridge.exec import ExecOutcome

    assert exit_code([ExecOutcome(1, ExecResult.RUN), ExecOutcome(2, ExecResult.CANCELLED)]) == 1
    assert exit_code([ExecOutcome(2, ExecResult.ORPHAN)]) == 1


@pytest.mark.parametrize("at", ["rb-local-submit", "check-inputs"])
def test_lost_lease_stops_exec_before_the_next_step(engine: Engine, tmp_path: Path,
                                                    at: str) -> None:
    """The lease passed to another exec: renewal fails, nothing (more) is submitted."""
    (rid,) = make_runs(engine, tmp_path)
    (out,) = exec_runs(engine, local_config(tmp_path),
                       link_factory=meddling(engine, rid, at, "steal"))
    run = get(engine, rid)
    assert (run.state, run.owner) == ("pending", "other-host:1")  # left to its holder
    if at == "check-inputs":
        assert out.result == "retry" and "another process" in out.message
        assert registry(tmp_path) == []  # stopped before the submission
    else:  # submitted, then pending -> run refused by held_by_me(): the job is cancelled
        assert out.result == "cancelled" and registry(tmp_path) == [out.job_id]


def test_input_changed_at_home_goes_to_error_not_retried(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    manifest = (tmp_path / "jobs" / f"remote_{rid}" / "inputs.manifest").read_text()
    local = next(ln.split("\t")[0] for ln in manifest.splitlines()[2:]
                 if ln.split("\t")[4] == "0")  # a survey file in tmp_path, not a program
    assert local.startswith(str(tmp_path))
    with open(local, "ab") as fh:
        fh.write(b"grown since prepare")
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "error" and "changed at home" in out.message
    assert f"remotetool revert --to new {rid}" in out.message
    run = get(engine, rid)
    assert (run.state, run.fault, run.owner) == ("error", 21, None)
    assert registry(tmp_path) == []
    assert exec_runs(engine, local_config(tmp_path)) == []  # not retried every round


def test_outcome_json_keeps_the_result_string() -> None:
    from remotebridge.exec import ExecOutcome

    data = ExecOutcome(3, ExecResult.ORPHAN, message="m").to_dict()
    assert type(data["result"]) is str and data["result"] == "orphan"
    assert [r.value for r in ExecResult] == ["run", "auth", "retry", "failed", "error",
                                             "cancelled", "orphan"]
