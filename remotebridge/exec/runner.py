"""``exec_runs``: every claimed ``pending`` run pushed, checked, submitted and moved to ``run``.

For each run (one at a time, each under its own lease):

a. the site's front ends that can run a command right now (checked once per site and
   call); none -> the run goes ``pending -> auth`` ("link down: ...") with nothing
   half-done; the next exec or poll brings it back once the key-card holder has
   logged in again (:mod:`remotebridge.linkback`), or ``remotetool revertauth``;
b. the job folder is pushed to its ``job_dir`` (one small tar bundle);
c. ONE remote call, ``rbhelper.py check-inputs``, lists the inputs that are missing
   or of the wrong size on the site;
d. only those are pushed, as ~``bundle_bytes`` tar bundles fanned out over every
   live front end, and checked again (one more call);
e. the job is submitted exactly once (see :mod:`remotebridge.exec.submit`);
f. the run moves ``pending -> run`` with the job id, one attempt more and
   ``last_poll`` = now; the transfer figures go into the note and the history.

The lease is renewed before each long step (b, c/d, e); once it is no longer ours
exec stops and leaves the run alone. Every transition is guarded by
``held_by_me()``. If the final ``pending -> run`` fails because another process
moved the run meanwhile (an operator cancelled it after our lease expired), the job
just submitted or adopted is cancelled so that no job runs untracked (result
``cancelled``; ``orphan`` if even the cancel failed: cancel the job by hand).

A first submission and a resubmission (poll moved the run back to ``pending`` after
writing a retry subset into the folder) take the same path. Outcomes other than
``run``: ``auth`` (link down), ``retry`` (a transient fault or a lost lease; the run
stays ``pending`` for the next round), ``failed`` (the scheduler refused, a transfer
failed; stays ``pending``, note says why) and ``error`` (the job folder is unusable
or an input is gone or changed size at home: fault 23 / 21, ``remotetool revert --to new
ID`` once fixed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Engine, select

from remotebridge.config import Config, SiteConfig
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.errors import (
    BridgeError,
    ConcurrentUpdate,
    LinkDown,
    LinkError,
    NotFoundError,
    SchedulerError,
    TransferError,
    TransientLinkError,
)
from remotebridge.exec.folder import JobFolder, JobFolderError, folder_files, open_folder
from remotebridge.exec.inputs import InputPush, MissingInputs, push_inputs
from remotebridge.exec.robust import (
    FAULT_FOLDER_NOWHERE,
    FAULT_REFUSED,
    folder_elsewhere,
    refusal,
)
from remotebridge.exec.submit import Submitted, submit_once
from remotebridge.exec.trace import EarlierAttemptFound, earlier_job
from remotebridge.jobfolder import local_folder
from remotebridge.linkback import resume_auth
from remotebridge.purgeage import first_push
from remotebridge.schedulers import Scheduler, make_scheduler
from remotebridge.ssh import Link, links_for, live_frontends
from remotebridge.states import ExecResult, RunState
from remotebridge.transfer import Progress, TransferReport, push

FAULT_INPUT_MISSING = 21
"""An input listed in inputs.manifest can no longer be read at home, or changed size."""

FAULT_JOB_FOLDER = 23
"""The local job folder is missing or unreadable."""

FAULT_EARLIER_ATTEMPT = 26
"""An earlier submission left output on the site but no usable start marker."""

LinkFactory = Callable[[SiteConfig], Sequence[Link]]


@dataclass
class ExecOutcome:
    """What exec did with one run."""

    remote_id: int
    result: ExecResult
    job_id: str | None = None
    token: str | None = None
    adopted: bool = False
    message: str = ""
    folder_files: int = 0
    inputs: int = 0
    missing: int = 0
    pushed_files: int = 0
    pushed_bytes: int = 0
    seconds: float = 0.0
    rate_mb_s: float = 0.0
    hosts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {**asdict(self), "result": self.result.value}


class _Verdict(NamedTuple):
    """How the work on one run ended: its result and the message (the run's note)."""

    result: ExecResult
    message: str


class _Links:
    """The live front ends of each site, checked once per exec call."""

    def __init__(self, factory: LinkFactory) -> None:
        self.factory = factory
        self.cache: dict[str, tuple[list[Link], str]] = {}

    def live(self, site: SiteConfig) -> tuple[list[Link], str]:
        """(front ends that run a command now, why none do)."""
        if site.name not in self.cache:
            self.cache[site.name] = live_frontends(site, self.factory)
        return self.cache[site.name]

    def forget(self, site: SiteConfig | None) -> None:
        """Check the site again for the next run (a link failed meanwhile)."""
        if site is not None:
            self.cache.pop(site.name, None)


@dataclass(frozen=True)
class _Run:
    remote_id: int
    site: str
    folder: str
    attempt: int
    token: str | None


def exec_runs(engine: Engine, config: Config, *, remote_id: int | None = None,
              label: str | None = None, limit: int | None = None,
              progress: Progress | None = None,
              link_factory: LinkFactory = links_for) -> list[ExecOutcome]:
    """Push, check and submit the pending runs (see the module docstring).

    Runs held by another process, and runs in any other state, are left alone, so
    calling this again, or from two hosts at once, submits nothing twice.
    ``link_factory`` gives the links of a site (default :func:`links_for`).
    """
    links = _Links(link_factory)
    back = resume_auth(engine, config, links.live)  # auth runs whose link works again
    outcomes: list[ExecOutcome] = []
    with read_session(engine) as s:
        due = statemachine.candidates(s, RunState.PENDING, remote_id=remote_id, label=label)
    for rid in (c.remote_id for c in due):
        if limit is not None and len(outcomes) >= limit:
            break
        with write_session(engine) as s:
            if not statemachine.claim(s, RunState.PENDING, remote_ids=[rid]):
                continue
        outcomes.append(_exec_claimed(engine, config, rid, links, progress))
    return outcomes + [ExecOutcome(h.remote_id, ExecResult.AUTH, message=h.note)
                       for h in back.held]


def _load(engine: Engine, rid: int) -> _Run:
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        if run is None:
            raise NotFoundError(f"no remote run with remote_id {rid}")
        folder = str(local_folder(run.path_base, rid))
        return _Run(rid, run.site, folder, run.attempt or 0, run.submit_token)


def _exec_claimed(engine: Engine, config: Config, rid: int, links: _Links,
                  progress: Progress | None) -> ExecOutcome:
    """Work on one run we hold the lease of; every path ends the lease."""
    t0 = time.monotonic()
    out = ExecOutcome(rid, ExecResult.RETRY)
    try:
        out.result, out.message = _attempt(engine, config, out, links, progress)
    finally:
        out.seconds = round(time.monotonic() - t0, 3)
    return out


def _attempt(engine: Engine, config: Config, out: ExecOutcome, links: _Links,
             progress: Progress | None) -> _Verdict:
    """Steps a to f; the figures go into ``out``, the verdict is returned."""
    rid = out.remote_id
    site: SiteConfig | None = None
    try:
        run = _load(engine, rid)
        site = config.site(run.site or None)
        if not os.path.isdir(run.folder):  # path_base not shared: another host may have it
            return _elsewhere(engine, rid, run.folder)
        folder = open_folder(run.folder)
        live, why = links.live(site)
        if not live:
            return _leave(engine, rid, RunState.AUTH, f"link down: {why}")
        return _push_and_submit(engine, site, run, folder, live, out, progress)
    except JobFolderError as exc:
        return _leave(engine, rid, RunState.ERROR, f"exec: {exc.message}",
                      fault=FAULT_JOB_FOLDER)
    except EarlierAttemptFound as exc:
        return _leave(engine, rid, RunState.ERROR, f"exec: {exc.message}; hint: {exc.hint}",
                      fault=FAULT_EARLIER_ATTEMPT)
    except MissingInputs as exc:
        return _leave(engine, rid, RunState.ERROR, f"exec: {exc.message}; hint: remotetool "
                      f"revert --to new {rid}", fault=FAULT_INPUT_MISSING)
    except LinkDown as exc:
        links.forget(site)
        return _leave(engine, rid, RunState.AUTH, f"link down: {exc.message}")
    except ConcurrentUpdate as exc:  # not ours to touch
        return _Verdict(ExecResult.RETRY, f"another process took the run: {exc.message}")
    except TransientLinkError as exc:
        links.forget(site)
        return _stay(engine, rid, ExecResult.RETRY, exc.message)
    except SchedulerError as exc:
        return _refused(engine, rid, site, exc.message)
    except (TransferError, LinkError) as exc:
        return _stay(engine, rid, ExecResult.FAILED, exc.message)
    except BaseException:
        _release(engine, rid)
        raise


def _push_and_submit(engine: Engine, site: SiteConfig, run: _Run, folder: JobFolder,
                     live: list[Link], out: ExecOutcome, progress: Progress | None
                     ) -> _Verdict:
    """Steps b to f for one run on its live front ends."""
    out.hosts = [link.host for link in live]
    specs = folder_files(folder)
    statemachine.renew(engine, run.remote_id, RunState.PENDING)
    report = push(live, specs, bundle_bytes=site.bundle_bytes,
                  jobs_per_link=site.jobs_per_frontend, python=site.remote_python or "python3")
    _check_report(report, "job folder")
    out.folder_files = report.files
    statemachine.renew(engine, run.remote_id, RunState.PENDING)
    pushed = push_inputs(live, site, folder, progress=progress)
    _record_inputs(out, pushed)
    statemachine.renew(engine, run.remote_id, RunState.PENDING)
    scheduler = make_scheduler(live[0], site)
    sub = submit_once(engine, scheduler, remote_id=run.remote_id, attempt=run.attempt,
                      stored_token=run.token, script=folder.script,
                      look=lambda tok: earlier_job(live[0], folder.job_dir, tok))
    out.job_id, out.token, out.adopted = sub.job_id, sub.token, sub.adopted
    try:
        return _to_run(engine, run, sub, summary(out))
    except ConcurrentUpdate as exc:
        return _cancel_untracked(engine, scheduler, run.remote_id, sub, exc.message)


def _check_report(report: TransferReport, what: str) -> None:
    if not report.ok:
        first = report.errors[0] if report.errors else "files failed"
        raise TransferError(f"{what}: {len(report.failed)} files not pushed: {first}")


def _record_inputs(out: ExecOutcome, pushed: InputPush) -> None:
    out.inputs, out.missing = pushed.total, pushed.missing
    out.pushed_files, out.pushed_bytes = pushed.report.files, pushed.report.bytes
    out.rate_mb_s = round(pushed.report.rate_mb_s, 3)


def _cancel_untracked(engine: Engine, scheduler: Scheduler, rid: int, sub: Submitted,
                      why: str) -> _Verdict:
    """The job exists but the run could not record it: cancel the job, say so."""
    lost = f"job {sub.job_id} (token {sub.token}) could not be recorded ({why})"
    try:
        scheduler.cancel(sub.job_id)
    except (BridgeError, LinkError) as exc:
        verdict = _Verdict(ExecResult.ORPHAN,
                           f"exec: {lost} and could NOT be cancelled: {exc}; cancel it by "
                           f"hand on site (its name ends in .{sub.token})")
    else:
        verdict = _Verdict(ExecResult.CANCELLED, f"exec: {lost}; the job was cancelled")
    _note_history(engine, rid, verdict.message)
    return verdict


def _note_history(engine: Engine, rid: int, note: str) -> None:
    """A history line on a run that is no longer ours (its state unchanged)."""
    try:
        with write_session(engine) as s:
            state = s.execute(select(RemoteRun.state)
                              .where(RemoteRun.remote_id == rid)).scalar_one_or_none()
            if state is not None:
                statemachine.record(s, rid, state, state, note=note)
    except BridgeError:
        pass  # the outcome still reports it


def summary(out: ExecOutcome) -> str:
    """The transfer figures of one outcome, one line (note, history, human output)."""
    text = (f"job folder {out.folder_files} files; inputs {out.missing} missing of "
            f"{out.inputs}, pushed {out.pushed_files} files {out.pushed_bytes} bytes")
    if out.pushed_bytes:
        text += f" ({out.rate_mb_s:.2f} MB/s)"
    if out.hosts:
        text += " over " + ",".join(out.hosts)
    return text


def _to_run(engine: Engine, run: _Run, sub: Submitted, figures: str) -> _Verdict:
    """pending -> run with the job id, one attempt more and the figures in the note; the
    previous job's progress is cleared in the same UPDATE (``show`` must not report it)."""
    how = "adopted by token" if sub.adopted else "submitted"
    note = f"exec: {how} job {sub.job_id} (token {sub.token}); {figures}"
    with write_session(engine) as s:
        statemachine.transition(s, run.remote_id, RunState.PENDING, RunState.RUN, note=note,
                                where=[statemachine.held_by_me()], job_id=sub.job_id,
                                attempt=run.attempt + 1, last_poll=utcnow(), fault=0,
                                inputs_pushed=first_push(), progress=None)
    return _Verdict(ExecResult.RUN, note)


_LEFT_FOR = {RunState.AUTH: ExecResult.AUTH, RunState.ERROR: ExecResult.ERROR}


def _leave(engine: Engine, rid: int, state: RunState, note: str, **values: Any) -> _Verdict:
    """pending -> auth|error while we hold the lease; a lost lease leaves the run alone."""
    try:
        with write_session(engine) as s:
            statemachine.transition(s, rid, RunState.PENDING, state, note=note,
                                    where=[statemachine.held_by_me()], **values)
    except ConcurrentUpdate as exc:
        return _Verdict(ExecResult.RETRY, f"another process took the run: {exc.message}")
    return _Verdict(_LEFT_FOR[state], note)


def _stay(engine: Engine, rid: int, result: ExecResult, why: str) -> _Verdict:
    """The run stays ``pending``: lease given back, the note on the run and in its history."""
    note = f"exec ({result}): {why}"
    with write_session(engine) as s:
        statemachine.release(s, rid, note=note, state=RunState.PENDING)
    return _Verdict(result, note)


def _refused(engine: Engine, rid: int, site: SiteConfig | None, why: str) -> _Verdict:
    """A refused submission: stays ``pending``, or ``error`` after ``max_attempts``."""
    give_up, note = refusal(engine, rid, site.max_attempts if site else 1, why)
    if give_up:
        return _leave(engine, rid, RunState.ERROR, note, fault=FAULT_REFUSED)
    return _stay(engine, rid, ExecResult.FAILED, note)


def _elsewhere(engine: Engine, rid: int, folder: str) -> _Verdict:
    """No job folder here: left for another host, ``error`` once nobody served it."""
    give_up, note = folder_elsewhere(engine, rid, folder)
    if give_up:
        return _leave(engine, rid, RunState.ERROR, note, fault=FAULT_FOLDER_NOWHERE)
    return _stay(engine, rid, ExecResult.RETRY, note)


def _release(engine: Engine, rid: int) -> None:
    try:
        with write_session(engine) as s:
            statemachine.release(s, rid)
    except BridgeError:
        pass  # the lease expires by itself
