"""Assemble a plan into the job folder's files (in memory): manifests, chunks, script.

Nothing here touches the database or the disk; :mod:`remotebridge.prepare.writer`
writes the result atomically, and ``--pretend`` only summarises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from remotebridge.config import SiteConfig
from remotebridge.prepare import allocation as alloc_mod
from remotebridge.prepare.chunking import Chunk, Limits, make_chunks
from remotebridge.prepare.plan import FORMAT_VERSION, PLAN_FORMAT, Phase, Plan
from remotebridge.prepare.render import render
from remotebridge.remote import helper_path


@dataclass
class Job:
    """Everything the job folder will hold, plus the numbers review shows."""

    plan: Plan
    allocation: alloc_mod.Allocation
    chunks: list[tuple[Phase, Chunk]]
    files: dict[str, str] = field(default_factory=dict)
    scheduler: str = "slurm"
    limits: Limits = field(default_factory=Limits)
    python: str = "python3"
    """The site's ``remote_python`` the chunk lines and the script run the helper with."""


def header(fmt: str, **extra: Any) -> str:
    """A JSON Lines header line."""
    return json.dumps({"format": fmt, "version": FORMAT_VERSION, **extra})


def json_doc(fmt: str, body: dict[str, Any]) -> str:
    """Pretty JSON whose first line carries the format and version."""
    rest = json.dumps(body, indent=2, default=str)[1:].lstrip("\n")
    head = json.dumps({"format": fmt, "version": FORMAT_VERSION})[:-1]
    return head + ("," if body else "") + "\n" + (rest if body else "}") + "\n"


def assemble(plan: Plan, allocation: alloc_mod.Allocation, site: SiteConfig) -> Job:
    """Cut chunks, render the script and lay out every file of the job folder."""
    limits = Limits(site.multiprog_max_bytes, site.multiprog_max_line,
                    site.multiprog_max_args, allocation.slots)
    job = Job(plan, allocation, [], scheduler=site.scheduler.value, limits=limits,
              python=remote_python(site))
    serial = {t.task_id: json.dumps(t.record()) for t in plan.tasks}
    files = job.files
    files["plan.jsonl"] = _jsonl(header(PLAN_FORMAT, remote_id=plan.remote_id,
                                        stage=plan.stage, tasks=len(plan.tasks)),
                                 serial.values())
    for phase in Phase:
        ids = [t.task_id for t in plan.tasks if t.phase is phase]
        one = Limits(limits.max_bytes, limits.max_line, limits.max_args,
                     1 if phase is Phase.PRE else limits.slots)
        for chunk in make_chunks(phase.value, ids, one, python=job.python):
            job.chunks.append((phase, chunk))
            files[f"chunks/{chunk.name}.conf"] = chunk.text()
            files[f"chunks/{chunk.name}.tasks.jsonl"] = _jsonl(
                header("remotebridge.tasks", chunk=chunk.name), (serial[i] for i in chunk.task_ids))
    files.update(_manifests(plan))
    files.update(_homes(plan))
    files.update(plan.job_files)
    files["allocation.json"] = json_doc("remotebridge.allocation", allocation.to_dict())
    files["job.sh"] = render(site.scheduler.value, _context(job, site))
    files["rbhelper.py"] = helper_path().read_text(encoding="utf-8")
    files["job.json"] = json_doc("remotebridge.job", job_info(job))
    return job


def remote_python(site: SiteConfig) -> str:
    """The python that runs rbhelper.py on the site (``remote_python``)."""
    return site.remote_python or "python3"


def _jsonl(head: str, lines: Any) -> str:
    return head + "\n" + "".join(line + "\n" for line in lines)


def _manifests(plan: Plan) -> dict[str, str]:
    ins = ["# remotebridge.inputs v1\n", "# local\tremote\tsize\tarea\tshared\n"]
    ins += [f"{f.local}\t{f.remote}\t{f.size}\t{f.area.value}\t{int(f.shared)}\n"
            for f in plan.inputs.values()]
    outs = ["# remotebridge.outputs v1\n", "# remote\tlocal\tpermanent\tstage_id\n"]
    outs += [f"{f.remote}\t{f.local}\t{int(f.permanent)}\t{f.stage_id}\n" for f in plan.outputs]
    dirs = ["# remotebridge.dirs v1\n"] + [d + "\n" for d in sorted(plan.out_dirs)]
    return {"inputs.manifest": "".join(ins), "outputs.manifest": "".join(outs),
            "outdirs.list": "".join(dirs)}


def _homes(plan: Plan) -> dict[str, str]:
    head = header("remotebridge.home", stage=plan.stage)
    return {f"home/{sid}.home.jsonl": _jsonl(head, (json.dumps(r.record()) for r in recs))
            for sid, recs in plan.home.items()}


def _chunk_ctx(job: Job, phase: Phase) -> list[dict[str, Any]]:
    return [{"name": c.name, "conf": f"chunks/{c.name}.conf", "tasks": c.task_ids,
             "count": len(c.task_ids)} for p, c in job.chunks if p is phase]


def _context(job: Job, site: SiteConfig) -> dict[str, Any]:
    a, plan = job.allocation, job.plan
    return {
        "remote_id": plan.remote_id, "stage": plan.stage, "job_dir": plan.job_dir,
        "job_name": f"rb{plan.remote_id}-{plan.stage}", "nodes": a.nodes,
        "tasks_per_node": a.tasks_per_node, "threads": a.threads, "slots": a.slots,
        "walltime": a.walltime, "partition": site.partition, "account": site.account,
        "python": job.python,
        "moab_resources": f"nodes={a.nodes}:ppn={a.cores_per_node},walltime={a.walltime}",
        "pre_chunks": _chunk_ctx(job, Phase.PRE), "cmd_chunks": _chunk_ctx(job, Phase.CMD),
        "post_chunks": _chunk_ctx(job, Phase.POST),
    }


def job_info(job: Job) -> dict[str, Any]:
    """The summary written to job.json and shown by review."""
    plan, a = job.plan, job.allocation
    permanent = [o for o in plan.outputs if o.permanent]
    return {
        "remote_id": plan.remote_id, "stage": plan.stage, "scheduler": job.scheduler,
        "job_dir": plan.job_dir, "python": job.python, "tasks": plan.counts(),
        "allocation": {"nodes": a.nodes, "walltime": a.walltime, "slots": a.slots,
                       "tasks_per_node": a.tasks_per_node, "threads": a.threads},
        "limits": {"max_bytes": job.limits.max_bytes, "max_line": job.limits.max_line,
                   "max_args": job.limits.max_args, "slots": job.limits.slots},
        "chunks": [{"name": c.name, "phase": p.value, "tasks": len(c.task_ids),
                    "bytes": len(c.text())} for p, c in job.chunks],
        "inputs": {"count": len(plan.inputs), "bytes": plan.input_bytes(),
                   "shared": sum(1 for f in plan.inputs.values() if f.shared)},
        "outputs": {"count": len(plan.outputs), "permanent": len(permanent)},
    }
