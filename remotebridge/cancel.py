"""Cancel a run in any non-terminal state (``remotetool cancel``).

A run that was never submitted (``new``, ``pending``) is withdrawn in the database
only. A run whose job may exist on the site (``run``, or ``auth``/``error`` entered
from ``run``) is first leased (so poll leaves it alone), then its scheduler job is
cancelled by id (or found by its submit token when the id is unknown), the scheduler
is asked until it confirms the job ended, and only then the run moves to
``cancelled`` with a history line. Products already home stay home. When no front
end answers nothing is sent and :class:`~remotebridge.errors.LinkDown` is raised
(the run is left as it was).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from remotebridge.config import Config
from remotebridge.db import statemachine
from remotebridge.db.engine import read_session, write_session
from remotebridge.errors import ConcurrentUpdate, LinkDown, NotFoundError, SchedulerError
from remotebridge.schedulers import JobState, Scheduler, make_scheduler
from remotebridge.ssh import links_for, live_frontends
from remotebridge.ssh.base import Link
from remotebridge.states import CANCELLABLE, ComponentState, RunState

LinksFor = Callable[..., Sequence[Link]]

CONFIRM_SECONDS = 120.0
"""How long to wait for the scheduler to say the cancelled job ended."""


@dataclass(frozen=True)
class _Target:
    """What the database says about the run to cancel."""

    remote_id: int
    state: RunState
    site: str
    job_id: str | None
    token: str | None
    has_job: bool


@dataclass
class CancelOutcome:
    """What ``cancel`` did to one run."""

    remote_id: int
    before: RunState
    jobs: list[str] = field(default_factory=list)
    """The scheduler jobs cancelled (empty for a run never submitted)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"remote_id": self.remote_id, "before": self.before.value,
                "state": RunState.CANCELLED.value, "jobs": self.jobs}


def _target(engine: Engine, remote_id: int) -> _Target:
    with read_session(engine) as s:
        run = statemachine.get_run(s, remote_id)
        state = RunState(run.state)
        has_job = state is RunState.RUN or (
            state in (RunState.AUTH, RunState.ERROR) and run.prev_state == RunState.RUN.value)
        return _Target(remote_id, state, run.site, run.job_id, run.submit_token, has_job)


def label_runs(engine: Engine, label: str) -> list[int]:
    """The non-terminal runs of ``label``, oldest first (NotFoundError when none)."""
    with read_session(engine) as s:
        found = [c.remote_id for c in statemachine.candidates(s, None, label=label)]
        states = {rid: RunState(statemachine.get_run(s, rid).state) for rid in found}
    ids = [rid for rid in found if not states[rid].terminal]
    if not ids:
        raise NotFoundError(f"label {label!r} has no run to cancel",
                            hint="see 'remotetool list --label'")
    return ids


def cancel_run(engine: Engine, config: Config, remote_id: int, *,
               links: LinksFor = links_for, confirm: float = CONFIRM_SECONDS) -> CancelOutcome:
    """Cancel one run in any non-terminal state (see the module docstring).

    Raises IllegalTransition for a terminal run, ConcurrentUpdate when another
    process holds it, LinkDown when its site cannot be reached (nothing sent) and
    SchedulerError when the scheduler refuses or does not confirm the cancel.
    """
    target = _target(engine, remote_id)
    if target.state in CANCELLABLE or not target.has_job:
        with write_session(engine) as s:
            return CancelOutcome(remote_id, statemachine.cancel(s, remote_id))
    _lease(engine, target)
    try:
        jobs = _cancel_jobs(config, target, links, confirm)
        with write_session(engine) as s:
            _finish(s, target, jobs)
    finally:
        with write_session(engine) as s:
            statemachine.release(s, remote_id)
    return CancelOutcome(remote_id, target.state, jobs)


def _lease(engine: Engine, target: _Target) -> None:
    """Take the run's lease so that poll does not finish it while we cancel."""
    with write_session(engine) as s:
        got = statemachine.claim(s, target.state, remote_ids=[target.remote_id])
    if not got:
        raise ConcurrentUpdate(target.remote_id, target.state.value)


def _cancel_jobs(config: Config, target: _Target, links_of: LinksFor,
                 confirm: float) -> list[str]:
    """Cancel the run's job(s) and wait for the scheduler to confirm; the ids."""
    site = config.site(target.site or None)
    live, why = live_frontends(site, links_of)
    if not live:
        raise LinkDown(f"{why}: nothing was sent; run {target.remote_id} is unchanged")
    scheduler = make_scheduler(live[0], site)
    jobs = [target.job_id] if target.job_id else (
        scheduler.find(target.token) if target.token else [])
    for job in jobs:
        scheduler.cancel(job)
    if jobs:
        _confirm(scheduler, jobs, confirm)
    return jobs


def _confirm(scheduler: Scheduler, jobs: list[str], seconds: float) -> None:
    """Ask until every job is terminal or forgotten (SchedulerError after ``seconds``)."""
    deadline = time.monotonic() + seconds
    pause = 0.2
    while True:
        states = scheduler.status(jobs)
        alive = {j: s for j, s in states.items()
                 if not s.terminal and s is not JobState.UNKNOWN}
        if not alive:
            return
        if time.monotonic() > deadline:
            shown = ", ".join(f"{j} {s.value}" for j, s in alive.items())
            raise SchedulerError(f"{scheduler.kind} has not confirmed the cancel: {shown}")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def _finish(session: Session, target: _Target, jobs: list[str]) -> None:
    """Move the run to cancelled; free the components that did not come home."""
    shown = ", ".join(jobs) or "none found"
    statemachine.transition(session, target.remote_id, target.state, RunState.CANCELLED,
                            note=f"cancel: scheduler job {shown} cancelled",
                            where=[statemachine.held_by_me()])
    run = statemachine.get_run(session, target.remote_id)
    kept = [c for c in run.components if c.state == ComponentState.FULL.value]
    freed = [c.stage_id for c in run.components if c.state != ComponentState.FULL.value]
    statemachine.record(session, target.remote_id, RunState.CANCELLED.value,
                        RunState.CANCELLED.value,
                        note=f"released {len(freed)} components: "
                             f"{statemachine.id_ranges(freed)}; kept {len(kept)} done")
    run.components[:] = kept
