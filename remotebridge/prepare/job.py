"""Assemble a plan into the job folder's files: manifests, chunks, script (the big ones
streamed while written).

Nothing here touches the database or the disk; :func:`remotebridge.jobfolder.write_folder`
writes the result atomically, and ``--pretend`` only summarises it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from remotebridge import jobfolder as jf
from remotebridge.config import RunnerKind, SiteConfig
from remotebridge.prepare import allocation as alloc_mod
from remotebridge.prepare.chunking import Chunk, Limits, make_chunks
from remotebridge.prepare.plan import Phase, Plan, TaskList
from remotebridge.prepare.render import render
from remotebridge.remote import helper_path, runner_paths


@dataclass
class Job:
    """Everything the job folder will hold, plus the numbers review shows."""

    plan: Plan
    allocation: alloc_mod.Allocation
    chunks: list[tuple[Phase, Chunk]]
    files: dict[str, jf.FileText] = field(default_factory=dict)
    scheduler: str = "slurm"
    limits: Limits = field(default_factory=Limits)
    python: str = "python3"
    """The site's ``remote_python`` the chunk lines and the script run the helper with."""
    runner: RunnerKind = RunnerKind.DYNAMIC
    """How the script runs the tasks (the site's ``runner``)."""
    subset: str = ""
    """A retry's subset file: the dynamic runner runs only its task ids."""


def assemble(plan: Plan, allocation: alloc_mod.Allocation, site: SiteConfig) -> Job:
    """Cut chunks, render the script and lay out every file of the job folder.

    The files with a line per task or per file (plan, chunk task files, manifests) are
    :class:`~remotebridge.jobfolder.Streamed`: their text is made while the folder is
    written, so a run of hundreds of thousands of commands is never held as text too.
    """
    limits = Limits(site.multiprog_max_bytes, site.multiprog_max_line,
                    site.multiprog_max_args, allocation.slots)
    job = Job(plan, allocation, [], scheduler=site.scheduler.value, limits=limits,
              python=remote_python(site), runner=site.runner)
    files = job.files
    files[jf.PLAN.name] = jf.Streamed(functools.partial(
        _plan_pieces, plan, remote_id=plan.remote_id, stage=plan.stage,
        tasks=len(plan.tasks)))
    for phase in Phase:
        _phase_chunks(job, phase)
    files.update(_manifests(plan))
    files.update(_homes(plan))
    files.update(plan.job_files)
    files[jf.ALLOCATION.name] = jf.json_doc(jf.ALLOCATION, allocation.to_dict())
    files[jf.SCRIPT.name] = render(site.scheduler.value, _context(job, site))
    files[jf.HELPER] = helper_path().read_text(encoding="utf-8")
    files.update(runner_files())
    files[jf.JOB.name] = jf.json_doc(jf.JOB, job_info(job))
    return job


def _phase_chunks(job: Job, phase: Phase) -> None:
    """The chunks of one phase: multi-prog text, and task files streamed from the plan's
    spool (each chunk takes the next tasks of the phase, in order)."""
    lim = job.limits
    one = Limits(lim.max_bytes, lim.max_line, lim.max_args,
                 1 if phase is Phase.PRE else lim.slots)
    start = 0
    for chunk in make_chunks(phase.value, job.plan.tasks.ids(phase), one, python=job.python):
        job.chunks.append((phase, chunk))
        job.files[jf.MULTIPROG.path(chunk=chunk.name)] = chunk.text()
        job.files[jf.TASKS.path(chunk=chunk.name)] = jf.Streamed(functools.partial(
            _chunk_pieces, job.plan.tasks, phase, start, len(chunk.task_ids), chunk.name))
        start += len(chunk.task_ids)


def _plan_pieces(plan: Plan, /, **extra: Any) -> Iterator[str]:
    return jf.jsonl_text_pieces(jf.PLAN, plan.tasks.text(), **extra)


def _chunk_pieces(tasks: TaskList, phase: Phase, start: int, count: int,
                  name: str) -> Iterator[str]:
    return jf.jsonl_text_pieces(jf.TASKS, tasks.text(phase, start, count), chunk=name)


def chunk_files(chunk: Chunk, task_lines: Iterable[str]) -> dict[str, str]:
    """The multi-prog file of one chunk and its task file (``task_lines``: JSON texts)."""
    return {jf.MULTIPROG.path(chunk=chunk.name): chunk.text(),
            jf.TASKS.path(chunk=chunk.name): jf.jsonl_text(jf.TASKS, task_lines,
                                                           chunk=chunk.name)}


def runner_files() -> dict[str, str]:
    """rbrunner.py and rbdispatch.py, shipped with every job (small, and a folder
    prepared for one runner still runs if the site switches to the other)."""
    return {name: path.read_text(encoding="utf-8") for name, path in runner_paths().items()}


RUNNER_WHY = {
    RunnerKind.DYNAMIC: "site runner = dynamic: rbrunner.py, one worker per node takes tasks "
                        "as cores free up, walltime guard, retries inside the job",
    RunnerKind.MULTIPROG: "site runner = multiprog: srun --multi-prog chunks one after another "
                          "(each waits for its slowest task)",
}


def remote_python(site: SiteConfig) -> str:
    """The python that runs rbhelper.py on the site (``remote_python``)."""
    return site.remote_python or "python3"


def _manifests(plan: Plan) -> dict[str, jf.FileText]:
    return {jf.INPUTS.name: jf.Streamed(lambda: jf.INPUTS.text_pieces(plan.inputs.text())),
            jf.OUTPUTS.name: jf.Streamed(lambda: jf.OUTPUTS.text_pieces(plan.outputs.text())),
            jf.OUTDIRS.name: jf.lines_text(jf.OUTDIRS, sorted(plan.out_dirs))}


def _homes(plan: Plan) -> dict[str, jf.FileText]:
    files: dict[str, jf.FileText] = {
        jf.HOME.path(stage_id=sid): jf.Streamed(functools.partial(_home_pieces, plan, sid))
        for sid in plan.home}
    files[jf.EXPECTED.name] = jf.Streamed(functools.partial(_expected_pieces, plan))
    return files


def _expected_pieces(plan: Plan) -> Iterator[str]:
    """expected.jsonl: every record the job must send back, per component (poll's check)."""
    return jf.jsonl_text_pieces(jf.EXPECTED, plan.home.expected_text(), stage=plan.stage)


def _home_pieces(plan: Plan, stage_id: int) -> Iterator[str]:
    return jf.jsonl_text_pieces(jf.HOME, plan.home.text(stage_id), stage=plan.stage)


def _chunk_ctx(job: Job, phase: Phase) -> list[dict[str, Any]]:
    return [{"name": c.name, "conf": jf.MULTIPROG.path(chunk=c.name), "tasks": c.task_ids,
             "count": len(c.task_ids)} for p, c in job.chunks if p is phase]


def _context(job: Job, site: SiteConfig) -> dict[str, Any]:
    a, plan = job.allocation, job.plan
    return {
        "script_format": jf.SCRIPT.format, "script_version": jf.SCRIPT.version,
        "remote_id": plan.remote_id, "stage": plan.stage, "job_dir": plan.job_dir,
        "job_name": f"rb{plan.remote_id}-{plan.stage}", "nodes": a.nodes,
        "tasks_per_node": a.tasks_per_node, "threads": a.threads, "slots": a.slots,
        "walltime": a.walltime, "partition": site.partition, "account": site.account,
        "python": job.python, "started": jf.STARTED, "runner": site.runner.value,
        "subset": job.subset,
        "walltime_seconds": a.walltime_seconds, "node_cpus": a.tasks_per_node * a.threads,
        "moab_resources": f"nodes={a.nodes}:ppn={a.cores_per_node},walltime={a.walltime}",
        "pre_chunks": _chunk_ctx(job, Phase.PRE), "cmd_chunks": _chunk_ctx(job, Phase.CMD),
        "post_chunks": _chunk_ctx(job, Phase.POST),
    }


def job_info(job: Job) -> dict[str, Any]:
    """The summary written to job.json and shown by review."""
    plan, a = job.plan, job.allocation

    return {
        "remote_id": plan.remote_id, "stage": plan.stage, "scheduler": job.scheduler,
        "job_dir": plan.job_dir, "python": job.python, "tasks": plan.counts(),
        "runner": {"kind": job.runner.value, "why": RUNNER_WHY[job.runner]},
        "allocation": {"nodes": a.nodes, "walltime": a.walltime, "slots": a.slots,
                       "tasks_per_node": a.tasks_per_node, "threads": a.threads},
        "limits": {"max_bytes": job.limits.max_bytes, "max_line": job.limits.max_line,
                   "max_args": job.limits.max_args, "slots": job.limits.slots},
        "chunks": [{"name": c.name, "phase": p.value, "tasks": len(c.task_ids),
                    "bytes": len(c.text())} for p, c in job.chunks],
        "inputs": {"count": len(plan.inputs), "bytes": plan.input_bytes(),
                   "shared": plan.inputs.shared},
        "outputs": {"count": len(plan.outputs), "permanent": plan.outputs.permanent},
    }
