"""``poll_runs``: look at every submitted run whose poll is due, and finish the ended ones.

Selection: runs in ``run`` (optionally one id or one label) whose ``last_poll`` is
older than their site's ``poll_interval`` (all of them with ``force``), each claimed
with a lease so that two cron processes never poll the same run. Per site, ONE
``scheduler.status`` call answers for all its runs.

* link down (:class:`~remotebridge.errors.LinkDown`) -> the run goes to ``auth``
  (nothing half-done: the database is only changed in the final transaction);
* job not terminal -> ``last_poll`` is set and the lease released. ``UNKNOWN`` is
  never taken as done, **except** when the job folder holds ``job_summary.jsonl``:
  the job wrote it as its very last step, and schedulers forget finished jobs (Slurm
  after ``MinJobAge``, Moab after its purge time). Stale summaries cannot fool this:
  poll deletes the summary before a run goes back for a retry. Nor when the job's
  walltime (local allocation.json) plus :data:`UNKNOWN_MARGIN` has passed since the
  run entered ``run`` (its last ``remoteEvent`` into ``run``): the summary is then made from
  ``status/`` and unfinished tasks count as failed;
* job terminal -> :func:`remotebridge.poll.finish.finish_run`;
* bad remote data (:class:`~remotebridge.poll.faults.PollFault`) -> ``error`` with
  the fault code, nothing applied;
* a passing problem (network fault, scheduler hiccup, a product that failed to
  transfer) -> lease released, polled again next time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from remotebridge.config import Config, SiteConfig
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteEvent, RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.errors import (
    ConcurrentUpdate,
    LinkDown,
    LinkError,
    PrepareError,
    SchedulerError,
    TransferError,
)
from remotebridge.jobfolder import local_folder, remote_job_dir, walltime_seconds
from remotebridge.linkback import resume_auth
from remotebridge.poll.faults import FAULT_OTHER, PollFault, local_folder_fault
from remotebridge.poll.finish import TALLY_FIELDS, RunInfo, Tally, finish_run, guard
from remotebridge.poll.products import Deferred
from remotebridge.poll.progress import fetch_progress
from remotebridge.poll.purged import InputsPurged, clear_summary
from remotebridge.poll.remote_files import JobFolderPurged, summaries_present
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for, live_frontends
from remotebridge.ssh.base import Link
from remotebridge.states import PollAction, RunState
from remotebridge.tasklogs import bring_home

LinksFor = Callable[[SiteConfig], list[Link]]


@dataclass
class PollOutcome(Tally):
    """What one poll did to one run (``action``). The :class:`Tally` fields count what
    finishing the run did."""

    remote_id: int
    site: str
    job_id: str | None
    job_state: str
    action: PollAction
    state: str
    fault: int = 0
    note: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """True when the run moved (anything but 'still waiting' or 'try later')."""
        return self.action.changed

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json, in the documented order (docs/poll.md): the run's
        fields, then the tally, then ``seconds``."""
        data = {**asdict(self), "action": self.action.value}
        head = {k: v for k, v in data.items() if k not in TALLY_FIELDS and k != "seconds"}
        return {**head, **{k: data[k] for k in TALLY_FIELDS}, "seconds": data["seconds"]}


def _due(last_poll: datetime | None, interval: int, now: datetime) -> bool:
    return last_poll is None or last_poll <= now - timedelta(seconds=interval)


def select_due(engine: Engine, config: Config, *, remote_id: int | None = None,
               label: str | None = None, force: bool = False) -> list[int]:
    """Ids of the runs in ``run`` whose poll is due (all of the selection with ``force``);
    NotFoundError when ``remote_id`` names no run."""
    now = utcnow()
    with read_session(engine) as s:
        runs = statemachine.candidates(s, RunState.RUN, remote_id=remote_id, label=label)
    return [c.remote_id for c in runs
            if force or _due(c.last_poll, config.site(c.site or None).poll_interval, now)]


def _claim(engine: Engine, ids: list[int]) -> list[RunInfo]:
    if not ids:
        return []
    with write_session(engine) as s:
        got = statemachine.claim(s, RunState.RUN, limit=len(ids), remote_ids=ids)
        runs = s.execute(select(RemoteRun).where(RemoteRun.remote_id.in_(got))
                         .order_by(RemoteRun.remote_id)).scalars().all()
        since: dict[int, datetime] = dict(s.execute(
            select(RemoteEvent.remote_id, func.max(RemoteEvent.at))
            .where(RemoteEvent.remote_id.in_(got), RemoteEvent.to_state == RunState.RUN.value)
            .group_by(RemoteEvent.remote_id)).all())
        return [RunInfo(r.remote_id, r.stage, r.site, r.job_id,
                        local_folder(r.path_base, r.remote_id),
                        submissions=r.attempt or 0, since=since.get(r.remote_id))
                for r in runs]


def poll_runs(engine: Engine, config: Config, *, remote_id: int | None = None,
              label: str | None = None, force: bool = False,
              links: LinksFor = links_for) -> list[PollOutcome]:
    """Poll the due runs of the selection; one outcome per run looked at."""
    back = resume_auth(engine, config, lambda site: live_frontends(site, links))
    runs = _claim(engine, select_due(engine, config, remote_id=remote_id, label=label,
                                     force=force))
    by_site: dict[str, list[RunInfo]] = {}
    for run in runs:
        by_site.setdefault(run.site, []).append(run)
    outcomes: list[PollOutcome] = []
    try:
        for name, site_runs in by_site.items():
            outcomes += _poll_site(engine, config.site(name or None), site_runs, links)
    finally:
        _release_all(engine, runs)
    return outcomes + [PollOutcome(h.remote_id, h.site, h.job_id, "", PollAction.AUTH,
                                   RunState.AUTH.value, note=h.note) for h in back.held]


def _release_all(engine: Engine, runs: list[RunInfo]) -> None:
    """Give back every lease of the round still ours (a no-op for the runs that moved),
    so that one unexpected error does not leave the others leased."""
    if runs:
        with write_session(engine) as s:
            for run in runs:
                statemachine.release(s, run.remote_id)


def _poll_site(engine: Engine, site: SiteConfig, runs: list[RunInfo],
               links_of: LinksFor) -> list[PollOutcome]:
    ready, outcomes = [], []
    for run in runs:
        try:
            run.job_dir = _job_dir(run.folder)
            ready.append(run)
        except PollFault as exc:
            outcomes.append(_error(engine, run, "", exc.fault, exc.message))
    if not ready:
        return outcomes
    try:
        links = _live(site, links_of)
        states = make_scheduler(links[0], site).status([r.job_id or "" for r in ready])
        present = summaries_present(links[0], [r.job_dir for r in ready
                                               if states[r.job_id or ""] in _ASK_SUMMARY])
        progress = fetch_progress(links[0], [r.job_dir for r in ready
                                             if states[r.job_id or ""] is JobState.RUNNING])
    except LinkDown as exc:
        return outcomes + [_auth(engine, r, "", exc) for r in ready]
    except (LinkError, SchedulerError) as exc:
        return outcomes + [_defer(engine, r, "", str(exc)) for r in ready]
    for run in ready:
        state = states[run.job_id or ""]
        if _ended(run, state, present):
            outcomes.append(_finish(engine, site, links, run, state))
        else:
            outcomes.append(_waiting(engine, run, state, progress.get(run.job_dir)))
    return outcomes


UNKNOWN_MARGIN = timedelta(minutes=10)
"""How long past its walltime a job the scheduler forgot is taken as ended."""

_ASK_SUMMARY = frozenset({JobState.UNKNOWN, JobState.LISTED})
"""States whose job may have ended without the scheduler saying so: a summary tells."""


def _ended(run: RunInfo, state: JobState, present: set[str]) -> bool:
    """Terminal; or UNKNOWN/LISTED with a job summary; or UNKNOWN (not listed at all)
    past walltime + margin since the run entered ``run``. A LISTED job (the scheduler
    shows it under a state we do not map, e.g. still queued) is never timed out."""
    if state.terminal:
        return True
    if state in _ASK_SUMMARY and run.job_dir in present:
        return True
    if state is not JobState.UNKNOWN:
        return False
    wall = walltime_seconds(run.folder)
    return wall is not None and run.since is not None and \
        utcnow() - run.since > timedelta(seconds=wall) + UNKNOWN_MARGIN


def _live(site: SiteConfig, links_of: LinksFor) -> list[Link]:
    """The front ends that run a command right now (a cut front end is left out);
    LinkDown when none does."""
    live, why = live_frontends(site, links_of)
    if not live:
        raise LinkDown(why)
    return live


def _job_dir(folder: Path) -> str:
    with local_folder_fault():
        return remote_job_dir(folder)


def _finish(engine: Engine, site: SiteConfig, links: Sequence[Link], run: RunInfo,
            state: JobState) -> PollOutcome:
    t0 = time.perf_counter()
    try:
        bring_home(links[0], run.job_dir, run.folder)  # logs/ first: the job has ended
        done = finish_run(engine, site, links, run)
    except LinkDown as exc:
        return _auth(engine, run, state.value, exc)
    except PollFault as exc:
        return _error(engine, run, state.value, exc.fault, exc.message)
    except PrepareError as exc:  # the retry subset could not be written
        return _error(engine, run, state.value, FAULT_OTHER, f"retry subset: {exc.message}")
    except ConcurrentUpdate as exc:
        return _outcome(run, state.value, PollAction.DEFERRED, RunState.RUN, note=str(exc))
    except (InputsPurged, JobFolderPurged) as exc:
        return _repush(engine, links, run, state.value, exc)
    except (Deferred, LinkError, SchedulerError, TransferError) as exc:
        return _defer(engine, run, state.value, str(exc))
    action = PollAction.RETRY if done.state is RunState.PENDING else PollAction.FULL
    return _outcome(run, state.value, action, done.state, note=done.note, **done.tally(),
                    seconds=time.perf_counter() - t0)


def _repush(engine: Engine, links: Sequence[Link], run: RunInfo, job_state: str,
            exc: InputsPurged | JobFolderPurged) -> PollOutcome:
    """The job ended before its first task (inputs purged), or its whole folder was
    purged: back to ``pending`` for exec to push again; no component's attempts change."""
    note = statemachine.clip(f"poll: {exc}: back to pending, re-push (no attempt spent)")
    try:
        if isinstance(exc, InputsPurged):  # a purged folder has no summary left to clear
            clear_summary(links[0], run.job_dir)
        _move(engine, run, RunState.PENDING, note, fault=0)
    except ConcurrentUpdate as lost:
        return _outcome(run, job_state, PollAction.DEFERRED, RunState.RUN, note=str(lost))
    except LinkError as exc2:
        return _defer(engine, run, job_state, str(exc2))
    return _outcome(run, job_state, PollAction.RETRY, RunState.PENDING, note=note)


def _outcome(run: RunInfo, job_state: str, action: PollAction, state: RunState,
             **kw: Any) -> PollOutcome:
    return PollOutcome(run.remote_id, run.site, run.job_id, job_state, action, state.value,
                       **kw)


def _touch(engine: Engine, run: RunInfo, **values: Any) -> None:
    """Record the poll and give the lease back (the run stays in ``run``)."""
    with write_session(engine) as s:
        statemachine.release(s, run.remote_id, where=guard(run), last_poll=utcnow(), **values)


def _waiting(engine: Engine, run: RunInfo, state: JobState,
             progress: str | None = None) -> PollOutcome:
    _touch(engine, run, **({"progress": progress} if progress else {}))
    return _outcome(run, state.value, PollAction.WAITING, RunState.RUN)


def _defer(engine: Engine, run: RunInfo, job_state: str, why: str) -> PollOutcome:
    _touch(engine, run)
    return _outcome(run, job_state, PollAction.DEFERRED, RunState.RUN,
                    note=statemachine.clip(why))


def _move(engine: Engine, run: RunInfo, wanted: RunState, note: str, **values: Any) -> None:
    """run -> ``wanted`` guarded by the lease and the polled job id (ConcurrentUpdate
    when either is gone), with the note on the run."""
    with write_session(engine) as s:
        statemachine.transition(s, run.remote_id, RunState.RUN, wanted, note=note,
                                where=guard(run), last_poll=utcnow(), **values)


def _auth(engine: Engine, run: RunInfo, job_state: str, exc: LinkDown) -> PollOutcome:
    note = statemachine.clip(f"poll: link down: {exc}")
    try:
        _move(engine, run, RunState.AUTH, note)
    except ConcurrentUpdate as lost:
        return _outcome(run, job_state, PollAction.DEFERRED, RunState.RUN, note=str(lost))
    return _outcome(run, job_state, PollAction.AUTH, RunState.AUTH, note=note)


def _error(engine: Engine, run: RunInfo, job_state: str, fault: int, message: str
           ) -> PollOutcome:
    note = statemachine.clip(f"poll: {message}")
    try:
        _move(engine, run, RunState.ERROR, note, fault=fault or FAULT_OTHER)
    except ConcurrentUpdate as lost:
        return _outcome(run, job_state, PollAction.DEFERRED, RunState.RUN, note=str(lost))
    return _outcome(run, job_state, PollAction.ERROR, RunState.ERROR, fault=fault or FAULT_OTHER,
                    note=note)


def runs_in_run(engine: Engine, *, remote_id: int | None = None,
                label: str | None = None) -> int:
    """How many runs of the selection are still in ``run``."""
    with read_session(engine) as s:
        return len(statemachine.candidates(s, RunState.RUN, remote_id=remote_id, label=label))


def poll_until(engine: Engine, config: Config, *, wait: float, remote_id: int | None = None,
               label: str | None = None, force: bool = False, pause: float = 3.0,
               links: LinksFor = links_for,
               on_round: Callable[[list[PollOutcome]], None] | None = None,
               ) -> list[PollOutcome]:
    """Poll (forced after the first round, ``pause`` s apart) until no run of the
    selection is in ``run`` or ``wait`` seconds have passed; returns every outcome."""
    deadline = time.monotonic() + wait
    seen: list[PollOutcome] = []
    first = True
    while True:
        got = poll_runs(engine, config, remote_id=remote_id, label=label,
                        force=force or not first, links=links)
        first = False
        seen += got
        if on_round is not None:
            on_round(got)
        left = runs_in_run(engine, remote_id=remote_id, label=label)
        if not left or time.monotonic() + pause > deadline:
            return seen
        time.sleep(pause)


__all__ = ["PollOutcome", "poll_runs", "poll_until", "runs_in_run", "select_due"]
