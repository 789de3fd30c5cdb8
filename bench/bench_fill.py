#!/usr/bin/env python3
"""Benchmark the dynamic task runner against ``srun --multi-prog`` waves.

    python bench/bench_fill.py [--simulated] [--json] [--seed 1] [--overhead-tasks 5000]
                               [--sizes 1,2,4,8]

Figures (docs/runner.md):

* **Simulated fill at the field log's scale** (``--simulated`` runs only this, no
  processes, well under a minute): 37,200 chip tasks x 2 threads, median 150 s,
  lognormal with coefficient of variation 0.3 (and 1.0), 1% stragglers at 5x, on the
  allocation ``remotebridge.prepare.allocation`` computes (162 nodes x 24 cores,
  1 hour). The runner's own policy (``rbdispatch.Dispatcher``) is driven in virtual
  time; the baseline runs the chunks ``remotebridge.prepare.chunking`` cuts as
  waves, one after another, each waiting for its slowest task. Fill = sum of the run
  times of completed tasks x threads / (slots x (job end - job start)); the job ends
  when its work does, or at the walltime, which kills whatever still runs.
  ``--sizes 1,2,4,8`` repeats it with 2, 4, 8 x the tasks on at most 162 nodes: the
  allocation code then gives a 2, 4, 8 hour job (fill factor 0.8 sizes every one).
* **Overhead** (real processes on this machine): N no-op tasks on 8 slots (2 local
  workers x 4 cores): (makespan x slots - sum of task times) / tasks. Baseline:
  today's local path, ``xargs -P 8`` running ``rbhelper.py task`` per task (fewer
  tasks, the figure is per task).
* **Walltime guard** (real processes): a plan that cannot fit; no task may run past
  the end, the rest are "not started: walltime", and a second run of just those
  tasks, with time for them, finishes them.

``--json`` prints one object per figure: figure, ours, baseline, ratio, target, met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.chunking import Limits, make_chunks
from remotebridge.remote import rbdispatch

REMOTE = Path(__file__).resolve().parents[1] / "remotebridge" / "remote"
N_TASKS, THREADS, MEDIAN, CORES = 37_200, 2, 150.0, 24
FIELD_NODES = 162  # what the allocation code gives the field log's stage


# --- simulated ------------------------------------------------------------------------


def durations(n: int, cv: float, seed: int) -> list[float]:
    """Lognormal run times (median ``MEDIAN``, coefficient of variation ``cv``), 1% at 5x."""
    rnd = random.Random(seed)
    sigma = rbdispatch.lognormal_sigma(cv)
    out = [rnd.lognormvariate(math.log(MEDIAN), sigma) for _ in range(n)]
    for i in rnd.sample(range(n), n // 100):
        out[i] *= 5.0
    return out


def allocation(n_tasks: int = N_TASKS, max_nodes: int = 1000) -> tuple[int, int]:
    """Nodes and walltime the allocation code computes for the field log's chip stage."""
    a = compute(AllocationInput(n_commands=n_tasks, threads=THREADS, cost_seconds=MEDIAN,
                                cores_per_node=CORES, fill_factor=0.8, max_nodes=max_nodes,
                                walltime_min=3600, walltime_max=48 * 3600))
    return a.nodes, a.walltime_seconds


def fill(work: list[tuple[float, float, bool]], slots: int, wall: float) -> dict[str, float]:
    """Fill, makespan and tasks completed from (start, run time, ok) of every attempt.

    Only attempts that completed before the walltime count as work; one still
    running at the walltime is killed there.
    """
    done = [d for s, d, ok in work if ok and s + d <= wall]
    end = min(wall, max((s + d for s, d, _ok in work), default=0.0))
    killed = sum(1 for s, d, _ok in work if s < wall < s + d)
    return {"fill": sum(done) * THREADS / (slots * end) if end else 0.0, "makespan": end,
            "done": len(done), "killed": killed}


def sim_dynamic(durs: list[float], nodes: int, wall: float) -> dict[str, float]:
    """The runner's policy in virtual time."""
    tasks = [rbdispatch.Task(i, 1000 + i // 60, "cmd", THREADS, MEDIAN) for i in range(len(durs))]
    disp = rbdispatch.Dispatcher(tasks, end=wall, margin=120.0)
    work: list[tuple[float, float, bool]] = []
    hard = disp.hard_stop()
    stopped = []

    def run(a: Any, now: float) -> tuple[int, float]:
        d = durs[a.task_id]
        work.append((now, min(d, a.timeout, hard - now), d <= a.timeout and now + d <= hard))
        if d <= a.timeout and now + d > hard:
            stopped.append(a.task_id)
        return 0, d

    rbdispatch.simulate(disp, {f"n{i}": CORES for i in range(nodes)}, run)
    out = fill(work, nodes * CORES, wall)
    out["not_started"] = disp.counts()["not_started"]
    out["timeouts"] = sum(1 for _s, _d, ok in work if not ok) - len(stopped)
    out["stopped"] = len(stopped)
    return out


def sim_multiprog(durs: list[float], nodes: int, wall: float) -> dict[str, float]:
    """Waves of multi-prog chunks, one after another, each as long as its slowest task."""
    slots = nodes * (CORES // THREADS)
    chunks = make_chunks("cmd", list(range(len(durs))), Limits(slots=slots))
    work, t = [], 0.0
    for c in chunks:
        if t >= wall:
            break
        wave = [durs[i] for i in c.task_ids]
        work += [(t, d, True) for d in wave]
        t += max(wave)
    out = fill(work, nodes * CORES, wall)
    out["chunks"] = len(chunks)
    out["per_chunk"] = len(chunks[0].task_ids)
    return out


def simulated(seed: int, size: int = 1) -> list[dict[str, Any]]:
    """Figures of part 2, at CV 0.3 and 1.0; ``size`` x the field log's tasks on at most
    its 162 nodes (so the allocation code gives a longer walltime) when above 1."""
    n_tasks = N_TASKS * size
    nodes, wall = allocation() if size == 1 else allocation(n_tasks, max_nodes=FIELD_NODES)
    figures = []
    for cv, target in ((0.3, 0.95), (1.0, 0.90)):
        durs = durations(n_tasks, cv, seed)
        dyn, mp = sim_dynamic(durs, nodes, wall), sim_multiprog(durs, nodes, wall)
        tag = f"sim cv={cv} {nodes}x{CORES} {wall / 3600:.0f}h"
        tag += f" {n_tasks} tasks" if size != 1 else ""
        bound = sum(durs) * THREADS / (nodes * CORES * wall)
        figures.append(figure(f"fill, {tag}", dyn["fill"], mp["fill"], target, "higher",
                              extra={"work_over_capacity": round(bound, 4),
                                     "multiprog_chunks": mp["chunks"],
                                     "tasks_per_chunk": mp["per_chunk"],
                                     "ratio_target": 1.3 if cv == 1.0 else None}))
        figures.append(figure(f"makespan s, {tag}", dyn["makespan"], mp["makespan"], wall,
                              "lower"))
        figures.append(figure(f"tasks left at walltime, {tag}", n_tasks - dyn["done"],
                              n_tasks - mp["done"], 0, "lower",
                              extra={"killed_at_walltime": [dyn["killed"], mp["killed"]],
                                     "stopped_by_runner_at_end_minus_margin/2": dyn["stopped"],
                                     "not_started_walltime": dyn["not_started"],
                                     "killed_at_timeout": dyn["timeouts"]}))
    return figures


def figure(name: str, ours: float, base: float | None, target: float | None, better: str,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One figure: ours, baseline, ratio (ours/baseline), target, met."""
    ratio = ours / base if base else None
    met = None if target is None else (ours >= target if better == "higher" else ours <= target)
    out = {"figure": name, "ours": round(ours, 4), "baseline": None if base is None else
           round(base, 4), "ratio": None if ratio is None else round(ratio, 3),
           "target": target, "met": met}
    out.update(extra or {})
    return out


# --- real processes -------------------------------------------------------------------


def job_folder(root: Path, tasks: list[dict[str, Any]]) -> Path:
    """A job folder holding the runner files and a plan of ``tasks``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("rbhelper.py", "rbdispatch.py", "rbrunner.py"):
        shutil.copy(REMOTE / name, root / name)
    head = {"format": "remotebridge.plan", "version": 1, "tasks": len(tasks)}
    lines = [json.dumps(head)] + [json.dumps(t) for t in tasks]
    (root / "plan.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def plan_task(tid: int, argv: list[str], cost: float) -> dict[str, Any]:
    return {"task_id": tid, "stage_id": 1, "phase": "cmd", "threads": 1, "cost": cost,
            "argv": argv, "log": ""}


def run_runner(folder: Path, *opts: str) -> None:
    subprocess.run([sys.executable, "rbrunner.py", "run", *opts], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)


def records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "runner" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines[1:]]


def overhead(root: Path, n: int) -> dict[str, Any]:
    """Per-task overhead of the runner (2 workers x 4 cores) vs xargs -P 8 + rbhelper."""
    true = shutil.which("true") or "/bin/true"
    folder = job_folder(root / "dyn", [plan_task(i, [true], 0.001) for i in range(n)])
    run_runner(folder, "--workers", "2", "--cores", "4", "--poll", "0.005", "--walltime",
               "3600", "--margin", "1")
    ends = [r for r in records(folder) if r.get("outcome") == "ok"]
    span = max(r["t1"] for r in ends) - min(r["t0"] for r in ends)
    ours = (span * 8 - sum(r["elapsed"] for r in ends)) / len(ends)
    return figure("overhead ms/task, 8 slots, no-op tasks", ours * 1000,
                  baseline_overhead(root / "xargs", min(n, 800), true) * 1000, 5.0, "lower",
                  extra={"tasks": len(ends)})


def baseline_overhead(root: Path, n: int, true: str) -> float:
    """Today's local path: one ``python rbhelper.py task`` per task under xargs -P 8."""
    folder = job_folder(root, [plan_task(i, [true], 0.001) for i in range(n)])
    (folder / "chunks").mkdir()
    head = {"format": "remotebridge.tasks", "version": 1, "chunk": "cmd.0000"}
    tasks = [plan_task(i, [true], 0.001) for i in range(n)]
    (folder / "chunks" / "cmd.0000.tasks.jsonl").write_text(
        "\n".join([json.dumps(head)] + [json.dumps(t) for t in tasks]) + "\n")
    lines = "".join(f"{sys.executable} rbhelper.py task cmd.0000 {i}\n" for i in range(n))
    t0 = time.time()
    subprocess.run(["xargs", "-P", "8", "-L", "1", "env"], input=lines.encode(), cwd=folder,
                   check=True)  # as templates/local/job.sh.j2 runs a chunk
    span = time.time() - t0
    el = [json.loads(p.read_text())["elapsed"] for p in (folder / "status").glob("*.json")]
    if len(el) != n:
        sys.exit(f"baseline: {len(el)} of {n} tasks recorded a status")
    return (span * 8 - sum(el)) / n


def guard(root: Path) -> list[dict[str, Any]]:
    """A plan that cannot fit: none killed, the rest not started, a second run finishes them."""
    tasks = [plan_task(i, ["sleep", "1"], 1.0) for i in range(24)]
    folder = job_folder(root / "guard", tasks)
    t_start = time.time()
    run_runner(folder, "--workers", "1", "--cores", "4", "--poll", "0.01", "--walltime",
               "5", "--margin", "0.5", "--end", str(t_start + 6))
    recs = records(folder)
    killed = sum(1 for r in recs if r.get("outcome") in ("ok", "failed", "timeout")
                 and r["t1"] > t_start + 6)
    left = [r["task_id"] for r in recs if r.get("outcome") == "not_started"]
    done = sum(1 for r in recs if r.get("outcome") == "ok")
    again = job_folder(root / "guard", [t for t in tasks if t["task_id"] in left])
    run_runner(again, "--workers", "1", "--cores", "4", "--poll", "0.01", "--walltime", "60",
               "--margin", "1")
    redone = sum(1 for r in records(again) if r.get("outcome") == "ok")
    return [figure("walltime guard: tasks killed by the walltime", killed, None, 0, "lower",
                   extra={"done": done, "not_started": len(left), "tasks": len(tasks)}),
            figure("walltime guard: not-started tasks finished by a resubmission",
                   redone, len(left), len(left), "higher")]


def site_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 1 on the test site's real Slurm (bench/fill_site.py)."""
    from fill_site import site_figures

    return site_figures(args.seed, args.median, args.per_slot, durations, figure)


def sizes(text: str) -> list[int]:
    """--sizes: positive multiples, comma separated."""
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        sys.exit(f"bench_fill: --sizes {text!r}: positive integers, comma separated")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--simulated", action="store_true", help="part 2 only (no processes)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sizes", default="1",
                   help="part 2 at these multiples of the field log's tasks, comma separated, "
                   "on at most 162 nodes: a longer job (e.g. 1,2,4,8)")
    p.add_argument("--overhead-tasks", type=int, default=5000)
    p.add_argument("--site", action="store_true",
                   help="part 1 alone, on the test site's real Slurm (needs it up)")
    p.add_argument("--median", type=float, default=4.0, help="--site: median task seconds")
    p.add_argument("--per-slot", type=int, default=20, help="--site: tasks per slot")
    args = p.parse_args(argv)
    if args.site:
        figures = site_part(args)
    else:
        figures = [f for size in sizes(args.sizes) for f in simulated(args.seed, size)]
    if not args.simulated and not args.site:
        root = Path(tempfile.mkdtemp(prefix="bench-fill-"))
        try:
            figures.append(overhead(root, args.overhead_tasks))
            figures += guard(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for f in figures:
        if args.json:
            print(json.dumps(f))
        else:
            base = "-" if f["baseline"] is None else f"{f['baseline']:.4g}"
            print(f"{f['figure']:<52} ours {f['ours']:>10.4g}  multiprog/baseline {base:>10}"
                  f"  target {f['target']}  met {f['met']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
