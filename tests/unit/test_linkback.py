"""Runs in ``auth`` resume by themselves once the link works again, and every exec and
poll exits 75 while it does not (local site, real local scheduler; SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select

from remotebridge.cli.context import AppContext
from remotebridge.cli.exec_cmd import exec_cmd
from remotebridge.cli.exec_cmd import exit_code as exec_exit
from remotebridge.cli.poll_cmd import exit_code as poll_exit
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteEvent, RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.exec import exec_runs
from remotebridge.linkback import RESUMED_NOTE, resume_auth
from remotebridge.poll import poll_runs
from remotebridge.ssh import live_frontends
from remotebridge.states import RunState
from tests.support.demo_runs import control_fixture, demo_env, down_config
from tests.support.demo_runs import run_row as get
from tests.support.poll_runs import config, prepared_run, submit, toml_site, wait_job

_env = demo_env
control = control_fixture("rbl")


def history(engine: Engine, rid: int) -> list[tuple[str | None, str, str]]:
    with read_session(engine) as s:
        rows = s.execute(select(RemoteEvent.from_state, RemoteEvent.to_state, RemoteEvent.note)
                         .where(RemoteEvent.remote_id == rid)
                         .order_by(RemoteEvent.event_id)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_exec_keeps_exiting_75_then_resumes_and_submits(engine: Engine, tmp_path: Path,
                                                        control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    down = down_config(tmp_path, control)
    (first,) = exec_runs(engine, down)
    assert first.result == "auth" and get(engine, rid).state == "auth"
    for _ in range(2):  # every later exec, too: exit 75, the run still in auth
        (again,) = exec_runs(engine, down)
        assert (again.remote_id, again.result) == (rid, "auth")
        assert again.message.startswith("still in auth, link down:")
        assert exec_exit([again]) == 75 and get(engine, rid).state == "auth"
    (back,) = exec_runs(engine, config(tmp_path))  # the link works again: no command typed
    run = get(engine, rid)
    assert back.result == "run" and run.state == "run" and run.job_id == back.job_id
    assert run.prev_state is None
    assert ("auth", "pending", RESUMED_NOTE) in history(engine, rid)


def test_poll_keeps_exiting_75_then_resumes_to_run(engine: Engine, tmp_path: Path,
                                                   control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    job_id = submit(engine, tmp_path, rid)
    wait_job(tmp_path, job_id)
    down = down_config(tmp_path, control)
    assert [o.action for o in poll_runs(engine, down, force=True)] == ["auth"]
    for _ in range(2):
        (held,) = poll_runs(engine, down, force=True)
        assert (held.remote_id, held.action, held.state, held.job_id) == \
            (rid, "auth", "auth", job_id)
        assert poll_exit([held]) == 75 and get(engine, rid).state == "auth"
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.remote_id, o.action) for o in out] == [(rid, "full")]
    assert ("auth", "run", RESUMED_NOTE) in history(engine, rid)
    assert get(engine, rid).state == "full"


def test_cli_second_exec_and_poll_exit_75(engine: Engine, db_url: str, tmp_path: Path,
                                          control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    down = tmp_path / "down.toml"
    down.write_text(toml_site({"kind": "ssh", "scheduler": "slurm", "frontends": ["fe-a"],
                               "control_dir": str(control),
                               "remote_root": str(tmp_path / "remote side")}))
    obj = AppContext(config_path=str(down), db_url=db_url, quiet=True)
    runner = CliRunner()
    assert runner.invoke(exec_cmd, [], obj=obj).exit_code == 75
    r = runner.invoke(exec_cmd, [], obj=obj)
    assert r.exit_code == 75 and "still in auth" in r.output
    from remotebridge.cli.poll_cmd import poll

    assert runner.invoke(poll, [], obj=obj).exit_code == 75
    assert get(engine, rid).state == "auth"


def test_a_run_moved_or_leased_by_another_process_is_left_alone(engine: Engine,
                                                                tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    with write_session(engine) as s:
        statemachine.transition(s, rid, RunState.PENDING, RunState.AUTH, note="link down: x")
        run = s.get(RemoteRun, rid)
        assert run is not None
        run.owner, run.lease_until = "other-host:1", utcnow() + timedelta(hours=1)
    cfg = config(tmp_path)
    back = resume_auth(engine, cfg, live_frontends)
    assert back.resumed == [] and back.held == []
    assert get(engine, rid).state == "auth"
    with write_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        run.owner, run.lease_until = None, None
    assert resume_auth(engine, cfg, live_frontends).resumed == [(rid, RunState.PENDING)]


def test_only_sites_with_runs_in_auth_are_checked(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    asked: list[str] = []

    def live(site):  # type: ignore[no-untyped-def]
        asked.append(site.name)
        return live_frontends(site)

    assert resume_auth(engine, config(tmp_path), live).resumed == [] and asked == []
    assert get(engine, rid).state == "pending"
