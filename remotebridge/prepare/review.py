"""What ``remotetool review`` (and ``prepare --pretend``) shows an engineer, offline.

The same dictionary is built from a job in memory (pretend) or from a written job
folder: allocation and its arithmetic, the job script, every chunk's size against
the limit, tasks per phase, input/output totals and the first lines of each list.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from remotebridge import jobfolder as jf
from remotebridge.errors import NotFoundError
from remotebridge.prepare.job import Job, job_info

HEAD_LINES = 5
LISTS = [jf.PLAN.name, jf.INPUTS.name, jf.OUTPUTS.name, jf.OUTDIRS.name]


def _head(text: str, n: int = HEAD_LINES) -> list[str]:
    return list(itertools.islice(text.splitlines(), n))


def _head_of(value: jf.FileText, n: int = HEAD_LINES) -> list[str]:
    """The first lines of a file value; a streamed one is read no further (its pieces
    are whole lines)."""
    if isinstance(value, str):
        return _head(value, n)
    return _head("".join(itertools.islice(value.pieces(), n)), n)


def _build(info: dict[str, Any], allocation: dict[str, Any], script: str,
           reader: Callable[[str], list[str]]) -> dict[str, Any]:
    limit = info["limits"]["max_bytes"]
    for chunk in info["chunks"]:
        chunk["limit"] = limit
        chunk["fill"] = round(chunk["bytes"] / limit, 3)
    first = [c["name"] for c in info["chunks"] if c["phase"] == "cmd"][:1]
    names = LISTS + [jf.MULTIPROG.path(chunk=n) for n in first]
    return {**info, "allocation_detail": allocation, "job_script": script,
            "heads": {name: reader(name) for name in names}}


def review_job(job: Job) -> dict[str, Any]:
    """Review data for a job assembled in memory (``prepare --pretend``)."""
    alloc = json.loads(jf.text_of(job.files[jf.ALLOCATION.name]))
    return _build(job_info(job), alloc, jf.text_of(job.files[jf.SCRIPT.name]),
                  lambda name: _head_of(job.files.get(name, "")))


def review_run(path_base: str, remote_id: int) -> dict[str, Any]:
    """Review data of a run's job folder (found under its ``path_base``)."""
    return review_folder(jf.local_folder(path_base, remote_id))


def review_folder(folder: str | Path) -> dict[str, Any]:
    """Review data read from a written job folder (JobFolderError when job.json or
    allocation.json is not what prepare wrote)."""
    root = Path(folder)
    if not (root / jf.JOB.name).is_file():
        raise NotFoundError(f"no job folder at {root} ({jf.JOB.name} missing)",
                            hint="run 'remotetool prepare' first")

    def reader(name: str) -> list[str]:
        path = root / name
        if not path.is_file():
            return []
        with path.open(encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in itertools.islice(fh, HEAD_LINES)]

    info = jf.read_doc(root, jf.JOB)
    alloc = jf.read_doc(root, jf.ALLOCATION)
    script = (root / jf.SCRIPT.name).read_text(encoding="utf-8")
    return {"folder": str(root), **_build(info, alloc, script, reader)}


def runner_line(data: dict[str, Any]) -> str:
    """Which runner the job script uses, and why (job.json of older folders has none)."""
    runner = data.get("runner")
    if not isinstance(runner, dict):
        return "runner: multiprog (prepared before the runner option)"
    return f"runner: {escape(str(runner.get('kind')))} ({escape(str(runner.get('why')))})"


def human(data: dict[str, Any]) -> str:
    """A text rendering with rich markup (data lines escaped), for a terminal."""
    a, i, o = data["allocation"], data["inputs"], data["outputs"]
    lines = [f"[bold]remote run {data['remote_id']}[/bold]  stage {data['stage']}  "
             f"scheduler {data['scheduler']}  remote job folder {escape(data['job_dir'])}",
             "tasks: " + ", ".join(f"{k} {v}" for k, v in data["tasks"].items()),
             f"allocation: {a['nodes']} nodes x {a['tasks_per_node']} tasks x "
             f"{a['threads']} threads = {a['slots']} slots, walltime {a['walltime']}"]
    lines += [f"  {escape(s)}" for s in data["allocation_detail"].get("steps", [])]
    lines.append(runner_line(data))
    lines.append(f"inputs: {i['count']} files ({i['shared']} shared), {i['bytes']} bytes;  "
                 f"outputs: {o['count']} files ({o['permanent']} permanent)")
    lines.append(f"chunks (limit {data['limits']['max_bytes']} bytes):")
    lines += [f"  {c['name']:<12} {c['tasks']:>6} tasks {c['bytes']:>7} bytes "
              f"({c['fill']:.0%})" for c in data["chunks"]]
    for name, head in data["heads"].items():
        lines.append(f"[bold]{name}[/bold]")
        lines += [f"  {escape(line)}" for line in head]
    lines += ["[bold]job.sh[/bold]", escape(data["job_script"])]
    return "\n".join(lines)
