"""Finishing one run whose job has ended: summary, products, dbinfo replay, retries.

Order (each step can stop the run without anything half-done in the database):

1. ONE remote call fetches ``job_summary.jsonl`` (made from ``status/`` by the helper
   if the job died before writing it, e.g. at its walltime) and the dbinfo file of
   every unfinished component; both are parsed as untrusted data.
2. A component succeeded when every task the local ``plan.jsonl`` gives it (cmd and
   post) has ``rc == 0`` in the summary; a task missing from it counts as failed.
3. The dbinfo records of the succeeded components are checked (all or nothing).
4. Their permanent products are pulled home (safe tar bundles, over every front end).
The lease is renewed before each long step (fetch, pull, retry and replay); when it
is no longer ours the run is left alone (ConcurrentUpdate). The final transition is
guarded by the lease owner and the polled job id, so a poll that lost its lease, or
whose run was resubmitted meanwhile, changes nothing.

5. Failed components: ``attempts + 1``; below ``max_attempts`` they are retried (the
   remote summary and their tasks' status files are removed, the local folder gets a
   retry subset, the run goes back to ``pending`` for exec), else ``abandoned``.
6. ONE transaction: results replayed, stage runs and components ``full``, failures
   recorded, and the run moved (``full`` / ``pending``) with a guarded update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import DataError, IntegrityError

from remotebridge import jobfolder
from remotebridge.config import SiteConfig
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.db.pipeline import STAGE_FULL, STAGE_RUN_TABLES
from remotebridge.poll.expect import check_planned, read_expected
from remotebridge.poll.faults import (
    FAULT_ABANDONED,
    FAULT_DBINFO_REFUSED,
    FAULT_JOB_UNREADABLE,
    FAULT_MALFORMED,
    FAULT_PRODUCT_MISSING,
    PollFault,
    local_folder_fault,
)
from remotebridge.poll.products import pull_products, read_outputs
from remotebridge.poll.purged import raise_if_purged
from remotebridge.poll.remote_files import (
    SUMMARY,
    JobFolderPurged,
    TaskResult,
    fetch_files,
    parse_dbinfo,
    parse_summary_products,
)
from remotebridge.poll.replay import Rows, apply_rows, check_records
from remotebridge.poll.retrytasks import retry_task_ids
from remotebridge.poll.runner_records import parse_records, per_command, spared
from remotebridge.prepare.registry import get_stage
from remotebridge.prepare.retry import retry_subset
from remotebridge.ssh.base import Link
from remotebridge.states import ComponentState, RunState

# $1 job folder; task ids on stdin, one per line: forget the last attempt's outcome
CLEAN_SCRIPT = r"""
cd -- "$1" || exit 3
rm -f job_summary.jsonl
while IFS= read -r t; do rm -f "status/$t.json"; done
exit 0
"""


@dataclass
class RunInfo:
    """What poll needs to know of one run (read once, before any remote call)."""

    remote_id: int
    stage: str
    site: str
    job_id: str | None
    folder: Path
    """The local job folder."""
    job_dir: str = ""
    """The remote job folder (from job.json)."""
    submissions: int = 0
    """``remoteRun.attempt``: how many times exec has submitted the run."""
    since: datetime | None = None
    """When the run last entered ``run`` (its latest history event into ``run``;
    ``remoteRun.updated`` moves with every lease, so it cannot say)."""


@dataclass(kw_only=True)
class Tally:
    """What finishing a run counted (shared by :class:`Finished` and the poll outcome):
    the components gone full, to retry and abandoned, the dbinfo records replayed, and
    the files and bytes brought home."""

    full: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    records: int = 0
    files: int = 0
    bytes: int = 0

    def tally(self) -> dict[str, Any]:
        """The tally's fields alone, as keyword arguments for another :class:`Tally`."""
        return {f.name: getattr(self, f.name) for f in fields(Tally)}


TALLY_FIELDS = tuple(f.name for f in fields(Tally))


@dataclass
class Finished(Tally):
    """What finishing one run did."""

    state: RunState
    attempt: int = 0
    note: str = ""


def read_plan_tasks(folder: Path) -> dict[int, tuple[int, str]]:
    """``{task_id: (stage_id, phase)}`` from the local (trusted) plan.jsonl."""
    with local_folder_fault():
        plan = jobfolder.read_jsonl(folder, jobfolder.PLAN)
    return {rec["task_id"]: (rec["stage_id"], rec["phase"]) for rec in plan.records}


def _pending_components(engine: Engine, remote_id: int) -> dict[int, int]:
    """``{stage_id: attempts}`` of the components that are not finished yet."""
    done = [ComponentState.FULL.value, ComponentState.ABANDONED.value]
    with read_session(engine) as s:
        rows = s.execute(select(RemoteComponent.stage_id, RemoteComponent.attempts)
                         .where(RemoteComponent.remote_id == remote_id,
                                RemoteComponent.state.not_in(done))).all()
    return {sid: att for sid, att in rows}


def _succeeded(plan: dict[int, tuple[int, str]], summary: dict[int, TaskResult],
               pending: dict[int, int]) -> tuple[set[int], dict[int, list[int]]]:
    """Components whose tasks all returned 0, and ``{stage_id: task ids}`` of all pending."""
    for tid, task in summary.items():
        if plan.get(tid, (None, None)) != (task.stage_id, task.phase):
            raise PollFault(f"{SUMMARY}: task {tid} (stage_id {task.stage_id}, phase "
                            f"{task.phase}) is not in this run's plan", fault=FAULT_MALFORMED)
    tasks: dict[int, list[int]] = {sid: [] for sid in pending}
    for tid, (sid, phase) in plan.items():
        if sid in tasks and phase != "pre":
            tasks[sid].append(tid)
    ok = {sid for sid, tids in tasks.items()
          if tids and all(tid in summary and summary[tid].rc == 0 for tid in tids)}
    return ok, tasks


def _dbinfo_name(stage_id: int) -> str:
    return jobfolder.DBINFO.path(stage_id=stage_id)


def _records(files: dict[str, bytes | None], ok: set[int],
             missing: dict[int, list[str]]) -> list[tuple[int, str, int, dict[str, Any]]]:
    items = []
    for sid in sorted(ok):
        data = files.get(_dbinfo_name(sid))
        if data is None:
            missing.setdefault(sid, []).append(_dbinfo_name(sid))
            continue
        recs = parse_dbinfo(data, _dbinfo_name(sid))
        items += [(sid, _dbinfo_name(sid), n, r) for n, r in enumerate(recs, start=2)]
    return items


def finish_run(engine: Engine, site: SiteConfig, links: Sequence[Link], run: RunInfo
               ) -> Finished:
    """Finish one ended job (see the module docstring); raises PollFault on bad data."""
    plan = read_plan_tasks(run.folder)
    pending = _pending_components(engine, run.remote_id)
    names = [SUMMARY, jobfolder.RECORDS.name, jobfolder.SCRIPT.name] + \
        [_dbinfo_name(sid) for sid in sorted(pending)]
    statemachine.renew(engine, run.remote_id, RunState.RUN)
    files = fetch_files(links[0], run.job_dir, names, make_summary=True,
                        python=site.remote_python or "python3")
    if files.get(SUMMARY) is None and files.get(jobfolder.SCRIPT.name) is None:
        raise JobFolderPurged(run.job_dir, links[0].host)  # its files purged, folder kept
    if files.get(SUMMARY) is None:
        raise PollFault(f"the job ended but {run.job_dir}/{SUMMARY} is missing and cannot be "
                        "made (helper or plan gone?)", fault=FAULT_JOB_UNREADABLE)
    raise_if_purged(files[SUMMARY])  # ended before its first task: inputs gone
    summary, recorded = parse_summary_products(files[SUMMARY] or b"")
    ok, tasks = _succeeded(plan, summary, pending)
    missing: dict[int, list[str]] = {}
    items = _records(files, ok, missing)
    stage = get_stage(run.stage)
    check_records(run.stage, stage.dbinfo_schema, items)  # refuse before installing anything
    check_planned(read_expected(run.folder), ok - set(missing), items)
    ok -= set(missing)
    statemachine.renew(engine, run.remote_id, RunState.RUN)
    pulled = pull_products(site, links, read_outputs(run.folder), ok, job_dir=run.job_dir,
                           recorded=recorded)
    for sid, paths in pulled.missing.items():
        missing.setdefault(sid, []).extend(paths)
    ok -= set(missing)
    tables = check_records(run.stage, stage.dbinfo_schema,
                           [it for it in items if it[0] in ok])
    recs = parse_records(files.get(jobfolder.RECORDS.name))
    failed = {sid: pending[sid] + (0 if spared(tasks[sid], summary, recs) else 1)
              for sid in pending if sid not in ok}
    statemachine.renew(engine, run.remote_id, RunState.RUN)
    retry = sorted(sid for sid, att in failed.items() if att < site.max_attempts)
    out = Finished(RunState.FULL, full=sorted(ok), retry=retry,
                   abandoned=sorted(set(failed) - set(retry)), files=pulled.files,
                   bytes=pulled.bytes)
    if retry:
        # the next submission's number names the subset (unique per submission)
        out.attempt = max(run.submissions, *(failed[sid] for sid in retry)) + 1
        retry_ids = retry_task_ids(stage.independent_tasks, plan, summary,
                                   {sid: tasks[sid] for sid in retry})
        _clean_remote(links[0], run.job_dir, retry_ids)
        retry_subset(run.folder, retry_ids, out.attempt, site=site)
        out.state = RunState.PENDING
    out.note = _note(out, missing)
    if pulled.swept:
        out.note += f", {pulled.swept} stale staging folders swept"
    out.records = _commit(engine, run, tables, out, failed, missing)
    store_elapsed(engine, run.remote_id, per_command(plan, out.full, recs))
    return out


def store_elapsed(engine: Engine, remote_id: int, elapsed: dict[int, float]) -> None:
    """Each full component's measured seconds per command (the cost model's history)."""
    if not elapsed:
        return
    with write_session(engine) as s:
        for sid, seconds in elapsed.items():
            s.execute(update(RemoteComponent).where(RemoteComponent.remote_id == remote_id,
                                                    RemoteComponent.stage_id == sid)
                      .values(elapsed=seconds).execution_options(synchronize_session=False))


def guard(run: RunInfo) -> list[Any]:
    """Extra conditions of every poll transition: this process still holds the lease,
    and the run still has the job that was polled (not a resubmission)."""
    return [statemachine.held_by_me(), RemoteRun.job_id == run.job_id]


def _clean_remote(link: Link, job_dir: str, task_ids: list[int]) -> None:
    stdin = "".join(f"{t}\n" for t in task_ids).encode()
    link.run(["sh", "-c", CLEAN_SCRIPT, "rb-poll-clean", job_dir], stdin=stdin, timeout=300)


def _note(out: Finished, missing: dict[int, list[str]]) -> str:
    parts = [f"poll: {len(out.full)} components full"]
    if out.retry:
        parts.append(f"{len(out.retry)} to retry (attempt {out.attempt})")
    if out.abandoned:
        parts.append(f"{len(out.abandoned)} abandoned ({_ids(out.abandoned)})")
    if missing:
        first = next(iter(missing.values()))[0]
        parts.append(f"{len(missing)} missing products (first {first})")
    return ", ".join(parts)


def _ids(ids: list[int]) -> str:
    return ",".join(map(str, ids[:20])) + ("..." if len(ids) > 20 else "")


def _commit(engine: Engine, run: RunInfo, tables: dict[str, Rows], out: Finished,
            failed: dict[int, int], missing: dict[int, list[str]]) -> int:
    """The one transaction; a row the database refuses despite the checks (a
    constraint they do not know) rolls it all back and becomes fault 31."""
    try:
        return _write(engine, run, tables, out, failed, missing)
    except (IntegrityError, DataError) as exc:
        raise PollFault(f"the database refused the dbinfo replay: {exc.orig}"[:1500],
                        fault=FAULT_DBINFO_REFUSED) from exc


def _write(engine: Engine, run: RunInfo, tables: dict[str, Rows], out: Finished,
           failed: dict[int, int], missing: dict[int, list[str]]) -> int:
    """Results, stage runs, components, and the run's state, in one transaction."""
    run_table, key = STAGE_RUN_TABLES[run.stage]
    pk = getattr(run_table, key)
    comp = RemoteComponent
    with write_session(engine) as s:
        written = apply_rows(s, tables)
        if out.full:
            s.execute(update(run_table).where(pk.in_(out.full))
                      .values(state=STAGE_FULL, fault=0).execution_options(
                          synchronize_session=False))
            s.execute(update(comp).where(comp.remote_id == run.remote_id,
                                         comp.stage_id.in_(out.full))
                      .values(state=ComponentState.FULL.value, fault=0)
                      .execution_options(synchronize_session=False))
        for sid, attempts in failed.items():
            abandoned = sid in out.abandoned
            fault = FAULT_ABANDONED if abandoned else (
                FAULT_PRODUCT_MISSING if sid in missing else 0)
            state = ComponentState.ABANDONED if abandoned else ComponentState.FAILED
            s.execute(update(comp).where(comp.remote_id == run.remote_id, comp.stage_id == sid)
                      .values(state=state.value, attempts=attempts, fault=fault)
                      .execution_options(synchronize_session=False))
            if abandoned:
                s.execute(update(run_table).where(pk == sid).values(fault=FAULT_ABANDONED)
                          .execution_options(synchronize_session=False))
        extra: dict[str, Any] = {"last_poll": utcnow()}
        statemachine.transition(s, run.remote_id, RunState.RUN, out.state, note=out.note,
                                where=guard(run), **extra)
    return written
