"""cancel of runs in every non-terminal state on the local site: the real local
scheduler, real exec (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from remotebridge.cancel import cancel_run
from remotebridge.cli.remotetool import main
from remotebridge.db.bridge import RemoteComponent, RemoteEvent
from remotebridge.db.engine import read_session
from remotebridge.errors import IllegalTransition, LinkDown
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from tests.support.demo_runs import control_fixture, demo_env, down_config
from tests.support.demo_runs import run_row as get
from tests.support.poll_runs import config, prepared_run, submit

_env = demo_env
control = control_fixture("rbc")


def _job_state(tmp: Path, job_id: str) -> JobState:
    site = config(tmp).site()
    return make_scheduler(links_for(site)[0], site).status([job_id])[job_id]


def _notes(engine: Engine, rid: int) -> list[str]:
    with read_session(engine) as s:
        return list(s.execute(select(RemoteEvent.note).where(RemoteEvent.remote_id == rid)
                              .order_by(RemoteEvent.event_id)).scalars())


def test_cancel_of_a_running_run_cancels_its_job(engine: Engine, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, slow=60)
    job_id = submit(engine, tmp_path, rid)
    assert _job_state(tmp_path, job_id) in (JobState.RUNNING, JobState.QUEUED)
    out = cancel_run(engine, config(tmp_path), rid)
    assert out.before.value == "run" and out.jobs == [job_id]
    assert _job_state(tmp_path, job_id) is JobState.CANCELLED, "the scheduler confirmed"
    run = get(engine, rid)
    assert run.state == "cancelled" and run.owner is None
    notes = _notes(engine, rid)
    assert any(f"scheduler job {job_id} cancelled" in n for n in notes), notes
    with read_session(engine) as s:  # nothing came home: every component is free again
        assert s.execute(select(RemoteComponent).where(
            RemoteComponent.remote_id == rid)).all() == []
    with pytest.raises(IllegalTransition):  # terminal now
        cancel_run(engine, config(tmp_path), rid)


def test_cancel_finds_the_job_by_token_when_the_id_is_unknown(engine: Engine,
                                                               tmp_path: Path) -> None:
    from sqlalchemy import update

    from remotebridge.db.bridge import RemoteRun
    from remotebridge.db.engine import write_session

    rid = prepared_run(engine, tmp_path, slow=60)
    job_id = submit(engine, tmp_path, rid)
    with write_session(engine) as s:
        s.execute(update(RemoteRun).where(RemoteRun.remote_id == rid).values(job_id=None))
    out = cancel_run(engine, config(tmp_path), rid)
    assert out.jobs == [job_id]
    assert _job_state(tmp_path, job_id) is JobState.CANCELLED
    assert get(engine, rid).state == "cancelled"


def test_cancel_with_the_link_down_sends_nothing(engine: Engine, tmp_path: Path,
                                                 control: Path) -> None:
    rid = prepared_run(engine, tmp_path, slow=60)
    job_id = submit(engine, tmp_path, rid)
    with pytest.raises(LinkDown, match="nothing was sent"):
        cancel_run(engine, down_config(tmp_path, control), rid)
    run = get(engine, rid)
    assert run.state == "run" and run.owner is None and run.job_id == job_id
    assert _job_state(tmp_path, job_id) in (JobState.RUNNING, JobState.QUEUED)
    cancel_run(engine, config(tmp_path), rid)  # tidy up: no job left behind


def _cli(db_url: str, tmp: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    cfg = tmp / "rb.toml"
    cfg.write_text(f'[site.demo]\nkind = "local"\nscheduler = "local"\n'
                   f'local_root = "{tmp / "remote side"}"\ncores_per_node = 4\n'
                   f'bundle_bytes = 100000\nmax_attempts = 2\n')
    res = CliRunner().invoke(main, ["--db", db_url, "--config", str(cfg), *args], input=stdin)
    return res.exit_code, res.output


def test_cli_cancel_by_label_asks_first(engine: Engine, db_url: str, tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, slow=60)
    job_id = submit(engine, tmp_path, rid)
    code, out = _cli(db_url, tmp_path, "cancel", "--label", "demo", stdin="n\n")
    assert code == 1 and get(engine, rid).state == "run", out
    code, out = _cli(db_url, tmp_path, "cancel", "--label", "demo", "--yes")
    assert code == 0, out
    assert f"{rid}: run -> cancelled (job {job_id} cancelled)" in out
    code, out = _cli(db_url, tmp_path, "cancel", "--label", "demo", "--yes")
    assert code == 3, out  # nothing left to cancel
    code, out = _cli(db_url, tmp_path, "cancel")
    assert code == 2, out


def test_cli_cancel_by_label_goes_on_past_a_site_that_is_down(engine: Engine, db_url: str,
                                                              tmp_path: Path,
                                                              control: Path) -> None:
    """The label's first run needs its (down) site; the second does not: the second is
    cancelled, the first named on stderr with the link's exit code (75)."""
    from remotebridge.db.bridge import RemoteRun
    from remotebridge.db.engine import write_session

    rid = prepared_run(engine, tmp_path, slow=60)
    job_id = submit(engine, tmp_path, rid)
    with write_session(engine) as s:
        later = RemoteRun(stage="chip", label="demo", site="demo", state="new",
                          path_base=str(tmp_path / "jobs"))
        s.add(later)
        s.flush()
        other = later.remote_id
    cfg = tmp_path / "down.toml"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host fe-a\n  HostName 127.0.0.1\n  Port 9\n")
    cfg.write_text(f'[site.demo]\nkind = "ssh"\nscheduler = "slurm"\nfrontends = ["fe-a"]\n'
                   f'ssh_config = "{ssh_config}"\ncontrol_dir = "{control}"\n'
                   f'remote_root = "{tmp_path / "remote side"}"\n')
    res = CliRunner().invoke(main, ["--db", db_url, "--config", str(cfg), "cancel",
                                    "--label", "demo", "--yes"])
    assert res.exit_code == 75, res.output
    assert f"{other}: new -> cancelled" in res.stdout
    assert f"run {rid}: " in res.stderr and "1 of 2 runs not cancelled" in res.stderr
    assert get(engine, rid).state == "run" and get(engine, other).state == "cancelled"
    assert _job_state(tmp_path, job_id) in (JobState.RUNNING, JobState.QUEUED)
    cancel_run(engine, config(tmp_path), rid)  # tidy up: no job left behind
