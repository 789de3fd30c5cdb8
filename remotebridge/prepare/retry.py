"""A follow-up submission: re-cut a prepared job folder to run only some tasks again.

``retry_subset(local_job_dir, task_ids, attempt, site=...)`` reads the folder's
``plan.jsonl`` (left in place, untouched), cuts new multi-prog chunks for just the
given task ids (named ``<phase>.a<attempt>.NNNN`` so the first attempt's chunks stay
readable beside them) with the same limits and chunking code as prepare, writes
their ``.conf`` and ``.tasks.jsonl`` files, the subset list
``retry.a<attempt>.tasks`` (its header line, then one task id per line),
re-renders ``job.sh`` from the same template with an allocation sized for the
subset (the original allocation's inputs with the subset's number of commands;
``allocation.json`` is rewritten with it), and records the attempt in ``job.json``.
Every file is written atomically (temporary file + rename), ``job.sh`` last, so the
folder is at any moment either the old job or the new one. The pre task (0, mkdirs)
is always included: it is cheap and idempotent.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remotebridge import jobfolder as jf
from remotebridge.config import SiteConfig
from remotebridge.errors import JobFolderError, PrepareError
from remotebridge.prepare.allocation import Allocation, AllocationInput, compute
from remotebridge.prepare.chunking import Limits, make_chunks
from remotebridge.prepare.job import Job, _context, chunk_files, runner_files
from remotebridge.prepare.plan import Phase, Plan
from remotebridge.prepare.render import render


@dataclass
class RetrySubset:
    """What :func:`retry_subset` wrote."""

    attempt: int
    task_ids: list[int]
    chunks: list[str]
    files: list[str]


PHASES = frozenset(p.value for p in Phase)


def _read_plan(folder: Path) -> tuple[dict[str, Any], dict[int, tuple[Phase, str]]]:
    """Plan header and ``{task_id: (phase, raw JSON line)}``."""
    plan = jf.read_jsonl(folder, jf.PLAN)
    tasks = {}
    for number, (rec, line) in enumerate(zip(plan.records, plan.lines, strict=True), start=2):
        if rec["phase"] not in PHASES:
            raise JobFolderError(f"unknown phase {rec['phase'][:20]!r}",
                                 path=str(folder / jf.PLAN.name), line=number)
        tasks[rec["task_id"]] = (Phase(rec["phase"]), line)
    return plan.header, tasks


def _read_folder(folder: Path) -> tuple[dict[str, Any], dict[int, tuple[Phase, str]],
                                        dict[str, Any], Allocation]:
    """Plan header, tasks, job.json and the allocation; PrepareError naming the file
    and line when one of them is not what prepare wrote."""
    try:
        head, tasks = _read_plan(folder)
        info = jf.read_doc(folder, jf.JOB)
        return head, tasks, info, _allocation(jf.read_doc(folder, jf.ALLOCATION))
    except JobFolderError as exc:
        raise PrepareError(exc.message) from exc  # it names the file and line
    except (KeyError, TypeError) as exc:
        raise PrepareError(f"allocation.json lacks {exc}", path=str(folder)) from exc


def _allocation(doc: dict[str, Any]) -> Allocation:
    fields = {k: doc[k] for k in ("nodes", "walltime_seconds", "cores_per_node", "threads",
                                  "tasks_per_node", "slots", "steps")}
    return Allocation(inputs=AllocationInput(**doc["inputs"]), **fields)


def subset_allocation(original: Allocation, n_commands: int) -> Allocation:
    """The allocation for ``n_commands`` of the original's commands (same cost, threads
    and site limits), so a small retry does not wait in the queue for the full one."""
    return compute(replace(original.inputs, n_commands=max(1, n_commands)))


def retry_subset(local_job_dir: str | Path, task_ids: Collection[int], attempt: int, *,
                 site: SiteConfig) -> RetrySubset:
    """Rewrite the chunks and job.sh of ``local_job_dir`` to run only ``task_ids``."""
    folder = Path(local_job_dir)
    head, tasks, info, allocation = _read_folder(folder)
    unknown = sorted(set(task_ids) - set(tasks))
    if unknown:
        raise PrepareError(f"task ids not in plan.jsonl: {unknown[:10]}", path=str(folder))
    wanted = sorted({*task_ids, *(t for t, (ph, _) in tasks.items() if ph is Phase.PRE)})
    allocation = subset_allocation(allocation, sum(tasks[t][0] is Phase.CMD for t in wanted))
    lim = info["limits"]
    lim["slots"] = allocation.slots
    limits = Limits(lim["max_bytes"], lim["max_line"], lim["max_args"], lim["slots"])
    plan = Plan(stage=head["stage"], remote_id=head["remote_id"], job_dir=info["job_dir"])
    job = Job(plan, allocation, [], scheduler=info["scheduler"], limits=limits,
              python=info.get("python", "python3"), runner=site.runner,
              subset=jf.SUBSET.path(attempt=attempt))
    files: dict[str, str] = runner_files()  # the dynamic runner reads the subset file
    for phase in Phase:
        ids = [t for t in wanted if tasks[t][0] is phase]
        one = Limits(limits.max_bytes, limits.max_line, limits.max_args,
                     1 if phase is Phase.PRE else limits.slots)
        for chunk in make_chunks(f"{phase.value}.a{attempt}", ids, one, python=job.python):
            job.chunks.append((phase, chunk))
            files.update(chunk_files(chunk, (tasks[t][1] for t in chunk.task_ids)))
    subset = jf.SUBSET.path(attempt=attempt)
    files[subset] = jf.lines_text(jf.SUBSET, (str(t) for t in wanted))
    info["retry"] = {"attempt": attempt, "tasks": len(wanted), "subset": subset,
                     "chunks": [c.name for _, c in job.chunks]}
    files[jf.ALLOCATION.name] = jf.json_doc(jf.ALLOCATION, allocation.to_dict())
    files[jf.JOB.name] = jf.json_doc(jf.JOB, {k: v for k, v in info.items()
                                              if k not in ("format", "version")})
    files[jf.SCRIPT.name] = render(info["scheduler"], _context(job, site))
    jf.write_files(folder, files)  # dict order: chunks, subset, job.json, job.sh last
    return RetrySubset(attempt, wanted, [c.name for _, c in job.chunks], list(files))
