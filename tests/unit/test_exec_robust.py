"""exec against a scheduler that keeps refusing, a job folder on another host, and a
submit answer lost after the scheduler forgot the job (issue 10 items 7, 8, 9)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update

from remotebridge import jobfolder as jf
from remotebridge.config import SiteConfig
from remotebridge.db.bridge import RemoteEvent
from remotebridge.db.engine import write_session
from remotebridge.exec import exec_runs, open_folder
from remotebridge.exec.trace import StartTrace, parse_trace
from remotebridge.remote import rbhelper
from remotebridge.schedulers import JobState
from remotebridge.ssh import Link, LocalLink, Result
from tests.support.demo_runs import run_row as get
from tests.support.exec_run import (  # noqa: F401
    LosingLink,
    _env,
    local_config,
    losing_links,
    make_runs,
    registry,
    wait_done,
)

__all__ = ["_env"]

REFUSAL = b"sbatch: error: QOSMaxSubmitJobPerUserLimit"


class RefusingLink(LocalLink):
    """A link double: every submission is refused by the scheduler."""

    def run(self, argv: Sequence[str], **kw: object) -> Result:
        if "rb-local-submit" in argv:
            return Result(1, b"", REFUSAL)
        return super().run(argv, **kw)  # type: ignore[arg-type]


def refusing(site: SiteConfig) -> list[Link]:
    return [RefusingLink(site.local_root)]


def test_refused_submissions_end_in_error_after_max_attempts(engine: Engine,
                                                            tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    cfg = local_config(tmp_path)
    assert cfg.site().max_attempts == 3
    for n in (1, 2):
        (out,) = exec_runs(engine, cfg, link_factory=refusing)
        assert out.result == "failed" and f"({n} of 3)" in out.message
        run = get(engine, rid)
        assert (run.state, run.fault, run.owner) == ("pending", 0, None)
        assert "QOSMaxSubmitJobPerUserLimit" in run.note
    (out,) = exec_runs(engine, cfg, link_factory=refusing)
    assert out.result == "error"
    run = get(engine, rid)
    assert (run.state, run.fault, run.prev_state) == ("error", 24, "pending")
    assert "refused 3 submissions" in run.note and "QOSMaxSubmitJobPerUserLimit" in run.note
    assert exec_runs(engine, cfg, link_factory=refusing) == []  # no longer tried
    assert registry(tmp_path) == []


def test_folder_missing_here_is_left_for_another_host(engine: Engine, tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    cfg = local_config(tmp_path)
    folder = tmp_path / "jobs" / f"remote_{rid}"
    away = tmp_path / "other host" / folder.name
    away.parent.mkdir()
    shutil.move(folder, away)
    (out,) = exec_runs(engine, cfg)
    assert out.result == "retry" and "not on host" in out.message
    run = get(engine, rid)
    assert (run.state, run.fault, run.owner) == ("pending", 0, None)
    assert "left for a host that has it" in run.note
    shutil.move(away, folder)  # the host that has it takes it
    (out,) = exec_runs(engine, cfg)
    assert out.result == "run" and get(engine, rid).state == "run"


def test_folder_nobody_has_for_a_lease_period_gets_a_fault(engine: Engine,
                                                          tmp_path: Path) -> None:
    (rid,) = make_runs(engine, tmp_path)
    cfg = local_config(tmp_path)
    shutil.rmtree(tmp_path / "jobs" / f"remote_{rid}")
    (out,) = exec_runs(engine, cfg)
    assert out.result == "retry" and get(engine, rid).state == "pending"
    (out,) = exec_runs(engine, cfg)  # another round, still inside the lease period
    assert out.result == "retry"
    with write_session(engine) as s:  # the first note is now older than a lease
        first = min(e.event_id for e in s.query(RemoteEvent).filter_by(remote_id=rid)
                    if "not on host" in e.note)
        at = s.get(RemoteEvent, first).at  # type: ignore[union-attr]
        s.execute(update(RemoteEvent).where(RemoteEvent.event_id == first)
                  .values(at=at - timedelta(minutes=31)))
    (out,) = exec_runs(engine, cfg)
    assert out.result == "error"
    run = get(engine, rid)
    assert (run.state, run.fault) == ("error", 25)
    assert "on no host" in run.note and f"revert --to new {rid}" in run.note


# --- item 7: the start marker --------------------------------------------------------------


def lose_answer_and_job(engine: Engine, tmp_path: Path) -> tuple[int, str, Path]:
    """The scheduler accepted, the answer was lost, then the scheduler forgot the job.

    Returns (remote id, the job's id, the job folder on the site).
    """
    (rid,) = make_runs(engine, tmp_path)
    LosingLink.lose_find = 1
    (out,) = exec_runs(engine, local_config(tmp_path), link_factory=losing_links)
    assert out.result == "retry" and get(engine, rid).state == "pending"
    (job_id,) = registry(tmp_path)
    assert wait_done(tmp_path, job_id) is JobState.COMPLETED
    shutil.rmtree(tmp_path / "remote side" / ".rb_local_jobs" / job_id)  # forgotten
    folder = open_folder(tmp_path / "jobs" / f"remote_{rid}")
    return rid, job_id, Path(folder.job_dir)


def test_forgotten_job_is_adopted_by_its_start_marker(engine: Engine, tmp_path: Path) -> None:
    rid, job_id, job_dir = lose_answer_and_job(engine, tmp_path)
    token = get(engine, rid).submit_token
    marker = (job_dir / jf.STARTED).read_text()
    assert marker == f"token={token}\njob_id={job_id}\n"
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "run" and out.adopted and (out.job_id, out.token) == (job_id, token)
    run = get(engine, rid)
    assert (run.state, run.job_id, run.attempt) == ("run", job_id, 1)
    assert registry(tmp_path) == []  # no second submission


def test_output_without_a_marker_is_reported_not_resubmitted(engine: Engine,
                                                              tmp_path: Path) -> None:
    rid, _, job_dir = lose_answer_and_job(engine, tmp_path)
    (job_dir / jf.STARTED).unlink()  # the job died before it could write its marker
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "error" and "cannot be identified" in out.message
    run = get(engine, rid)
    assert (run.state, run.fault) == ("error", 26) and "rb_local." in run.note
    assert registry(tmp_path) == []


def test_a_marker_of_another_token_is_not_adopted() -> None:
    text = "token=rb1a1-00000000\njob_id=123\noutput=rb_local.rb1a2-11111111.out\n"
    assert parse_trace(text, "rb1a2-11111111") == StartTrace(
        None, ("rb_local.rb1a2-11111111.out",), False)
    assert parse_trace("token=rb1a1-00000000\njob_id=1 2;rm\n", "rb1a1-00000000").job_id is None
    assert parse_trace("token=t\njob_id=4711\n", "t") == StartTrace("4711", (), True)


def test_job_scripts_write_the_marker_first() -> None:
    """The marker line comes before any other command of every job script."""
    golden = Path(__file__).resolve().parents[1] / "golden"
    for kind in ("local", "slurm", "moab"):
        lines = [ln for ln in (golden / kind / "job.sh").read_text().splitlines()
                 if ln and not ln.startswith("#")]
        assert lines[:4] == ["set -u", lines[1], lines[2],
                             next(ln for ln in lines if jf.STARTED in ln)], kind
        assert lines[1].startswith("JOBDIR=") and lines[2].startswith("RB_NAME=")
    assert rbhelper.STARTED_FILE == jf.STARTED
