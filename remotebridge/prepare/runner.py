"""``prepare_run``: one remote run from state ``new`` to a written job folder and ``pending``.

Steps: claim the run (a short lease, guarded UPDATE), build the stage's plan in a
read-only session, compute the allocation, assemble and write the job folder, then
move the run ``new -> pending`` with one guarded UPDATE (statemachine.transition).

Failure policy: a :class:`PrepareError` (missing input, no detrend, allocation that
does not fit, command too long, bad file name, template error) is a problem with the
*data* that retrying will not fix, so the run goes to ``error`` with the error's
fault code and message as the note (``remotetool revert`` sends it back to ``new``
once fixed). Anything else (database down, disk full) releases the lease and leaves
the run in ``new`` for the next cron round. ``pretend`` writes nothing anywhere.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from remotebridge import jobfolder
from remotebridge.config import Config, SchedulerKind, SiteConfig, SiteKind
from remotebridge.db import statemachine
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.errors import ConcurrentUpdate, IllegalTransition, NotFoundError, PrepareError
from remotebridge.prepare import allocation as alloc_mod
from remotebridge.prepare.base import StageBase, StageContext
from remotebridge.prepare.chunking import Limits
from remotebridge.prepare.job import Job, assemble, job_info
from remotebridge.prepare.paths import PathTranslator
from remotebridge.prepare.registry import get_stage
from remotebridge.states import RunState

FAULT_OTHER = 19


@dataclass
class PrepareResult:
    """What prepare did (or, with pretend, would do)."""

    remote_id: int
    stage: str
    folder: str
    pretend: bool
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    job: Job | None = None


def default_program(name: str) -> str:
    """The local path of a demo science program."""
    try:
        from remotebridge.demo.programs import program_path  # type: ignore[import-not-found,attr-defined,unused-ignore]
    except ImportError:
        return str(Path(__file__).resolve().parent.parent / "demo" / "programs" / name)
    return str(program_path(name))


def remote_root(site: SiteConfig) -> str:
    """The site's scratch root (a local folder for kind=local sites)."""
    root = site.remote_root or (site.local_root if site.kind is SiteKind.LOCAL else "")
    if not root:
        raise PrepareError(f"site '{site.name}' has no remote_root configured")
    if not root.startswith("/"):
        raise PrepareError(f"site '{site.name}': remote_root must be an absolute path",
                           path=root)
    return root


def prepare_run(engine: Engine, config: Config, remote_id: int, pretend: bool = False,
                program: Any = None) -> PrepareResult:
    """Prepare one run (see the module docstring for the policy)."""
    t0 = time.perf_counter()
    if not pretend:
        _claim(engine, remote_id)
    gc_was = gc.isenabled()
    gc.disable()  # tens of thousands of small objects: the cyclic GC only costs time here
    try:
        job, folder = build_job(engine, config, remote_id, program or default_program)
        if not pretend:
            jobfolder.write_folder(Path(folder), job.files)
            _finish(engine, remote_id, job)
    except PrepareError as exc:
        if not pretend:
            _fail(engine, remote_id, exc)
        raise
    except BaseException:
        if not pretend:
            with write_session(engine) as s:
                statemachine.release(s, remote_id)
        raise
    finally:
        if gc_was:
            gc.enable()
    return PrepareResult(remote_id, job.plan.stage, folder, pretend, job_info(job),
                         time.perf_counter() - t0, job)


def _claim(engine: Engine, remote_id: int) -> None:
    with write_session(engine) as s:
        if statemachine.claim(s, RunState.NEW, remote_ids=[remote_id]):
            return
        state = s.execute(select(RemoteRun.state).where(RemoteRun.remote_id == remote_id)
                          ).scalar_one_or_none()
    if state is None:
        raise NotFoundError(f"no remote run with remote_id {remote_id}")
    if state != RunState.NEW.value:
        raise IllegalTransition(remote_id, state, RunState.PENDING.value,
                                hint="only runs in state 'new' are prepared")
    raise ConcurrentUpdate(remote_id, RunState.NEW.value)


def _finish(engine: Engine, remote_id: int, job: Job) -> None:
    counts = job.plan.counts()
    note = (f"prepared: {counts['cmd']} commands, {len(job.chunks)} chunks, "
            f"{job.allocation.nodes} nodes x {job.allocation.walltime}")
    with write_session(engine) as s:
        statemachine.transition(s, remote_id, RunState.NEW, RunState.PENDING, note=note)


def _fail(engine: Engine, remote_id: int, exc: PrepareError) -> None:
    with write_session(engine) as s:
        statemachine.transition(s, remote_id, RunState.NEW, RunState.ERROR,
                                note=f"prepare: {exc.message}", fault=exc.fault or FAULT_OTHER)


def build_job(engine: Engine, config: Config, remote_id: int, program: Any) -> tuple[Job, str]:
    """Build the plan and assemble the job in memory; returns it and the local folder."""
    with read_session(engine) as session:
        run = session.get(RemoteRun, remote_id)
        if run is None:
            raise NotFoundError(f"no remote run with remote_id {remote_id}")
        site = config.site(run.site or None) if run.site else config.site()
        stage = get_stage(run.stage)
        folder = str(jobfolder.local_folder(run.path_base, remote_id))
        ctx = _context(session, config, site, remote_id, run.stage, folder, program)
        cost, source = _cost(stage, ctx)
        ctx.options["cost"] = cost
        plan = stage.build_plan(ctx)
    allocation = alloc_mod.compute(alloc_mod.AllocationInput(
        n_commands=plan.counts()["cmd"], threads=ctx.stage_config.threads,
        cost_seconds=cost, cores_per_node=site.cores_per_node,
        fill_factor=site.fill_factor, max_nodes=_max_nodes(site),
        walltime_min=site.walltime_min, walltime_max=site.walltime_max, cost_source=source))
    return assemble(plan, allocation, site), folder


def _max_nodes(site: SiteConfig) -> int:
    return 1 if site.scheduler is SchedulerKind.LOCAL else site.max_nodes


def _context(session: Any, config: Config, site: SiteConfig, remote_id: int, stage: str,
             folder: str, program: Any) -> StageContext:
    root = remote_root(site)
    return StageContext(
        session=session, remote_id=remote_id, site=site, stage_config=config.stage(stage),
        job_dir=jobfolder.remote_folder(root, remote_id), local_job_dir=folder,
        paths=PathTranslator(site, root),
        limits=Limits(site.multiprog_max_bytes, site.multiprog_max_line,
                      site.multiprog_max_args, 1),
        program=program)


def _cost(stage: StageBase, ctx: StageContext) -> tuple[float, str]:
    cfg = ctx.stage_config
    measured = stage.measured_cost(ctx.session, cfg.history_runs)
    if measured is not None:
        return measured, (f"median measured seconds per command (all phases) of the last "
                          f"{cfg.history_runs} components")
    hist = stage.history_cost(ctx.session, cfg.history_runs)
    if hist is not None and hist > 0:
        return hist, f"median dtime_script of the last {cfg.history_runs} results"
    return float(cfg.cost_seconds), "stage config cost_seconds"
