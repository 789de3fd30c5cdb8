"""poll and leases: renewed before each long step; a poll that lost its lease, or whose
run was resubmitted meanwhile, changes nothing; every lease of a round is released."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update

from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.poll import finish, poll_runs, runner
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_runs import (
    chip_states,
    components,
    config,
    finished_job,
    get,
    results,
)


def _set_run(engine: Engine, rid: int, **values: Any) -> None:
    with write_session(engine) as s:
        s.execute(update(RemoteRun).where(RemoteRun.remote_id == rid).values(**values))


def _submitted_long_ago(engine: Engine, rid: int, when: Any) -> None:
    from remotebridge.db.bridge import RemoteEvent

    with write_session(engine) as s:
        s.execute(update(RemoteEvent).where(RemoteEvent.remote_id == rid).values(at=when))


def _nothing_applied(engine: Engine, rid: int) -> None:
    assert results(engine) == []
    assert chip_states(engine) == {1: ("new", 0)}
    assert components(engine, rid) == {1: ("new", 0, 0)}


@pytest.mark.parametrize("step", ["fetch_files", "pull_products"])
def test_resubmitted_meanwhile_is_left_alone(engine: Engine, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             step: str) -> None:
    """The run got a new job while poll worked (its lease had expired): the late poll
    must not finish the resubmission."""
    rid, _job_dir = finished_job(engine, tmp_path)
    real = getattr(finish, step)

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        _set_run(engine, rid, job_id="resubmitted-42")
        return got

    monkeypatch.setattr(finish, step, meanwhile)
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state) for o in out] == [("deferred", "run")], out
    run = get(engine, rid)
    assert (run.state, run.job_id, run.owner) == ("run", "resubmitted-42", None)
    _nothing_applied(engine, rid)


def test_lease_taken_by_another_process(engine: Engine, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Our lease expired and another poller took the run: the renewal fails, we stop,
    and its lease is not released by us."""
    rid, _job_dir = finished_job(engine, tmp_path)
    real = finish.fetch_files

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        _set_run(engine, rid, owner="elsewhere:1")
        return real(*args, **kwargs)

    monkeypatch.setattr(finish, "fetch_files", meanwhile)
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state) for o in out] == [("deferred", "run")], out
    run = get(engine, rid)
    assert (run.state, run.owner) == ("run", "elsewhere:1")
    _nothing_applied(engine, rid)


def test_error_path_guarded_too(engine: Engine, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal (fault) found by a poll whose run was resubmitted: no move to error."""
    rid, job_dir = finished_job(engine, tmp_path)
    (job_dir / "job_summary.jsonl").write_text("not json\n")
    real = finish.fetch_files

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        _set_run(engine, rid, job_id="resubmitted-42")
        return real(*args, **kwargs)

    monkeypatch.setattr(finish, "fetch_files", meanwhile)
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state) for o in out] == [("deferred", "run")], out
    run = get(engine, rid)
    assert (run.state, run.fault, run.owner) == ("run", 0, None)


def test_unexpected_error_releases_the_round(engine: Engine, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rid, _job_dir = finished_job(engine, tmp_path)

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(runner, "finish_run", boom)
    with pytest.raises(RuntimeError):
        poll_runs(engine, config(tmp_path), force=True)
    run = get(engine, rid)
    assert (run.state, run.owner, run.lease_until) == ("run", None, None)


def test_unknown_past_walltime_is_finished(engine: Engine, tmp_path: Path) -> None:
    """The scheduler forgot the job and there is no summary: waiting until the walltime
    plus the margin has passed, then the summary is made from status/."""
    import shutil
    from datetime import timedelta

    from remotebridge.db.base import utcnow

    rid, job_dir = finished_job(engine, tmp_path)
    job_id = get(engine, rid).job_id or ""
    shutil.rmtree(tmp_path / "remote side" / ".rb_local_jobs" / job_id)
    (job_dir / "job_summary.jsonl").unlink()
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.job_state) for o in out] == [("waiting", "unknown")]
    assert runner.walltime_seconds(tmp_path / "jobs" / f"remote_{rid}") is not None
    _submitted_long_ago(engine, rid, utcnow() - timedelta(days=2))
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.job_state, o.state) for o in out] == [("full", "unknown", "full")]
    assert len(results(engine)) == 2


def test_unknown_past_walltime_unfinished_tasks_fail(engine: Engine, tmp_path: Path) -> None:
    """Same, but no task had finished: the tasks count as failed (normal retry)."""
    import shutil
    from datetime import timedelta

    from remotebridge.db.base import utcnow

    rid, job_dir = finished_job(engine, tmp_path)
    job_id = get(engine, rid).job_id or ""
    shutil.rmtree(tmp_path / "remote side" / ".rb_local_jobs" / job_id)
    (job_dir / "job_summary.jsonl").unlink()
    shutil.rmtree(job_dir / "status")
    (job_dir / "status").mkdir()
    _submitted_long_ago(engine, rid, utcnow() - timedelta(days=2))
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state, o.retry) for o in out] == [("retry", "pending", [1])], out
    assert components(engine, rid) == {1: ("failed", 1, 0)}
