"""exec against a scheduler that keeps refusing, a job folder on another host, and a
submit answer lost after the scheduler forgot the job (issue 10 items 7, 8, 9)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update

from remotebridge.config import SiteConfig
from remotebridge.db.bridge import RemoteEvent
from remotebridge.db.engine import write_session
from remotebridge.exec import exec_runs
from remotebridge.ssh import Link, LocalLink, Result
from tests.support.demo_runs import run_row as get
from tests.unit.test_exec_run import _env, local_config, make_runs, registry

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
