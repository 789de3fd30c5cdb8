"""A follow-up submission: re-cut a prepared job folder to run only some tasks again.

``retry_subset(local_job_dir, task_ids, attempt, site=...)`` reads the folder's
``plan.jsonl`` (left in place, untouched), cuts new multi-prog chunks for just the
given task ids (named ``<phase>.a<attempt>.NNNN`` so the first attempt's chunks stay
readable beside them) with the same limits and chunking code as prepare, writes
their ``.conf`` and ``.tasks.jsonl`` files, the subset list
``retry.a<attempt>.tasks`` (``# remotebridge.subset v1`` then one task id per line),
re-renders ``job.sh`` from the same template with the same allocation, and records
the attempt in ``job.json``. Every file is written atomically (temporary file +
rename), ``job.sh`` last, so the folder is at any moment either the old job or the
new one. The pre task (0, mkdirs) is always included: it is cheap and idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotebridge.config import SiteConfig
from remotebridge.errors import PrepareError
from remotebridge.prepare.allocation import Allocation, AllocationInput
from remotebridge.prepare.chunking import Limits, make_chunks
from remotebridge.prepare.job import Job, _context, header, json_doc
from remotebridge.prepare.plan import PLAN_FORMAT, Phase, Plan
from remotebridge.prepare.render import render
from remotebridge.prepare.writer import EXECUTABLE, atomic_write

SUBSET_HEADER = "# remotebridge.subset v1"


@dataclass
class RetrySubset:
    """What :func:`retry_subset` wrote."""

    attempt: int
    task_ids: list[int]
    chunks: list[str]
    files: list[str]


def _read_json_doc(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != 1:
        raise PrepareError(f"{path}: not a version 1 document", path=str(path))
    return data


def _read_plan(folder: Path) -> tuple[dict[str, Any], dict[int, tuple[Phase, str]]]:
    """Plan header and ``{task_id: (phase, raw JSON line)}``."""
    with open(folder / "plan.jsonl", encoding="utf-8") as fh:
        head = json.loads(fh.readline())
        if head.get("format") != PLAN_FORMAT or head.get("version") != 1:
            raise PrepareError("plan.jsonl is not a remotebridge.plan v1 file",
                               path=str(folder / "plan.jsonl"))
        tasks = {}
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                tasks[rec["task_id"]] = (Phase(rec["phase"]), line.rstrip("\n"))
    return head, tasks


def _allocation(doc: dict[str, Any]) -> Allocation:
    fields = {k: doc[k] for k in ("nodes", "walltime_seconds", "cores_per_node", "threads",
                                  "tasks_per_node", "slots", "steps")}
    return Allocation(inputs=AllocationInput(**doc["inputs"]), **fields)


def retry_subset(local_job_dir: str | Path, task_ids: Collection[int], attempt: int, *,
                 site: SiteConfig) -> RetrySubset:
    """Rewrite the chunks and job.sh of ``local_job_dir`` to run only ``task_ids``."""
    folder = Path(local_job_dir)
    head, tasks = _read_plan(folder)
    unknown = sorted(set(task_ids) - set(tasks))
    if unknown:
        raise PrepareError(f"task ids not in plan.jsonl: {unknown[:10]}", path=str(folder))
    wanted = sorted({*task_ids, *(t for t, (ph, _) in tasks.items() if ph is Phase.PRE)})
    info = _read_json_doc(folder / "job.json")
    allocation = _allocation(_read_json_doc(folder / "allocation.json"))
    lim = info["limits"]
    limits = Limits(lim["max_bytes"], lim["max_line"], lim["max_args"], lim["slots"])
    plan = Plan(stage=head["stage"], remote_id=head["remote_id"], job_dir=info["job_dir"])
    job = Job(plan, allocation, [], scheduler=info["scheduler"], limits=limits,
              python=info.get("python", "python3"))
    files: dict[str, str] = {}
    for phase in Phase:
        ids = [t for t in wanted if tasks[t][0] is phase]
        one = Limits(limits.max_bytes, limits.max_line, limits.max_args,
                     1 if phase is Phase.PRE else limits.slots)
        for chunk in make_chunks(f"{phase.value}.a{attempt}", ids, one, python=job.python):
            job.chunks.append((phase, chunk))
            files[f"chunks/{chunk.name}.conf"] = chunk.text()
            files[f"chunks/{chunk.name}.tasks.jsonl"] = (
                header("remotebridge.tasks", chunk=chunk.name) + "\n"
                + "".join(tasks[t][1] + "\n" for t in chunk.task_ids))
    files[f"retry.a{attempt}.tasks"] = SUBSET_HEADER + "\n" + "".join(f"{t}\n" for t in wanted)
    info["retry"] = {"attempt": attempt, "tasks": len(wanted), "subset": f"retry.a{attempt}.tasks",
                     "chunks": [c.name for _, c in job.chunks]}
    files["job.json"] = json_doc("remotebridge.job", {k: v for k, v in info.items()
                                                      if k not in ("format", "version")})
    files["job.sh"] = render(info["scheduler"], _context(job, site))
    for name, text in files.items():  # dict order: chunks, subset, job.json, job.sh last
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, 0o755 if name in EXECUTABLE else 0o644)
    return RetrySubset(attempt, wanted, [c.name for _, c in job.chunks], list(files))
