"""Part 1 of ``bench/bench_fill.py``: the fill of one job on the test site's real Slurm.

    .venv/bin/python bench/bench_fill.py --site [--json] [--seed 1] [--median 4]
                                         [--per-slot 20]

The same plan of sleep tasks (lognormal run times, coefficient of variation 0.3 and
1.0, 1% stragglers at 5x, ``--per-slot`` tasks per slot) is prepared twice by the
product's own ``assemble`` (the job script, chunks and runner files a real prepare
writes), once with ``runner = "multiprog"`` and once with ``runner = "dynamic"``, on
the same allocation (the test site's 2 nodes x 4 CPUs), pushed to the site through
the transfer engine and submitted with ``sbatch`` through a front end's master.

Fill = the sleep seconds of the tasks that ran x threads / (slots x (job end - job
start)), job start and end being Slurm's own StartTime and EndTime of the job
(``scontrol show job``, whole seconds: about 1% on a 90 s job). Everything between
the two, from srun starting the workers to the summary, counts as waste.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from remotebridge.config import RunnerKind, SchedulerKind, SiteConfig, SiteKind
from remotebridge.exec.folder import folder_files, open_folder
from remotebridge.jobfolder import write_folder
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import Phase, Plan, Task
from remotebridge.schedulers import TERMINAL_JOB_STATES, make_scheduler
from remotebridge.ssh import OpenSSHLink
from remotebridge.transfer import push

SITE = Path(__file__).resolve().parents[1] / "ops" / "testsite" / "site"
NODES, CORES = 2, 4


def site_status() -> dict[str, Any]:
    """``ops/testsite/site status --json`` of a running site (SystemExit otherwise)."""
    proc = subprocess.run([str(SITE), "status", "--json"], capture_output=True, text=True,
                          timeout=120, check=False)
    status = json.loads(proc.stdout or "{}") if proc.returncode == 0 else {}
    if status.get("state") != "up" or not status.get("slurm_up"):
        raise SystemExit("bench_fill --site: the test site is not up "
                         "(ops/testsite/site up, as root)")
    return status


def site_config(status: dict[str, Any], control: Path, runner: RunnerKind) -> SiteConfig:
    """The test site with one front end, its Slurm partition and ``runner``."""
    return SiteConfig(name="benchfill", kind=SiteKind.SSH, scheduler=SchedulerKind.SLURM,
                      frontends=[status["front_ends"][0]], ssh_config=status["ssh_config"],
                      known_hosts=status["known_hosts"], control_dir=str(control),
                      remote_root=status["user_scratch"], partition=status["slurm_partition"],
                      cores_per_node=CORES, max_nodes=NODES, walltime_min=600, runner=runner)


def sleep_plan(remote_id: int, job_dir: str, durs: list[float]) -> Plan:
    """One command task per duration: ``sleep SECONDS``, one thread, its cost known."""
    plan = Plan(stage="chip", remote_id=remote_id, job_dir=job_dir)
    plan.tasks.extend(Task(i + 1, 1 + i // 40, Phase.CMD, ["sleep", f"{d:.3f}"], 1,
                           round(d, 3)) for i, d in enumerate(durs))
    return plan


def prepare(root: Path, site: SiteConfig, remote_id: int, durs: list[float]) -> Path:
    """Write the job folder locally, exactly as prepare would lay it out."""
    job_dir = f"{site.remote_root}/benchfill/remote_{remote_id}"
    alloc = compute(AllocationInput(n_commands=len(durs), threads=1,
                                    cost_seconds=max(durs), cores_per_node=CORES,
                                    fill_factor=1.0, max_nodes=NODES, walltime_min=600,
                                    walltime_max=3600))
    # the whole site, for both runners: the figure compares how each fills it
    alloc = dataclasses.replace(alloc, nodes=NODES, slots=NODES * alloc.tasks_per_node,
                                steps=[*alloc.steps, f"bench: {NODES} nodes, the whole site"])
    job = assemble(sleep_plan(remote_id, job_dir, durs), alloc, site)
    return write_folder(root / f"remote_{remote_id}", job.files)


def run_job(link: OpenSSHLink, site: SiteConfig, local: Path) -> tuple[float, int]:
    """Push, submit, wait; (Slurm's end - start in seconds, tasks reported ok)."""
    folder = open_folder(local)
    link.run(["rm", "-rf", "--", folder.job_dir], timeout=120)
    report = push([link], folder_files(folder), python=site.remote_python or "python3")
    if report.errors:
        raise SystemExit(f"push failed: {report.errors[:2]}")
    sched = make_scheduler(link, site)
    job_id = sched.submit(f"{folder.job_dir}/job.sh", f"fill{local.name[7:]}",
                          f"b{int(time.time() * 1000)}")
    deadline = time.monotonic() + 1800
    while sched.status([job_id])[job_id] not in TERMINAL_JOB_STATES:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} has not ended in 30 minutes")
        time.sleep(2)
    return _elapsed(link, job_id), _tasks_ok(link, folder.job_dir)


def _elapsed(link: OpenSSHLink, job_id: str) -> float:
    """EndTime - StartTime of the job as slurmctld keeps it (MinJobAge: minutes)."""
    out = link.run(["scontrol", "-o", "show", "job", job_id], timeout=60).out
    fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
    start, end = (datetime.fromisoformat(fields[k]) for k in ("StartTime", "EndTime"))
    return (end - start).total_seconds()


def _tasks_ok(link: OpenSSHLink, job_dir: str) -> int:
    """The ``ok`` count of the job's own summary."""
    out = link.run(["sh", "-c", f"head -n 1 {shlex.quote(job_dir + '/job_summary.jsonl')}"],
                   timeout=60).out
    return int(json.loads(out or "{}").get("ok", -1))


def measure(status: dict[str, Any], durs: list[float], cv: float) -> dict[str, float]:
    """Fill of the multi-prog job and of the dynamic runner's job, same plan."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rbfill-") as tmp:
        control = Path(tmp) / "c"
        control.mkdir()
        for n, runner in enumerate((RunnerKind.MULTIPROG, RunnerKind.DYNAMIC)):
            site = site_config(status, control, runner)
            link = OpenSSHLink(site, site.frontends[0])
            link.start_master(askpass=status["askpass"])  # reuses a live master
            local = prepare(Path(tmp), site, int(cv * 10) * 10 + n, durs)
            seconds, ok = run_job(link, site, local)
            if ok != len(durs):
                raise SystemExit(f"{runner.value} job: {ok} of {len(durs)} tasks ok")
            out[runner.value] = sum(durs) / (NODES * CORES * seconds)
            out[f"{runner.value}_seconds"] = seconds
        link.stop_master()
    return out


def site_figures(seed: int, median: float, per_slot: int,
                 durations: Any, figure: Any) -> list[dict[str, Any]]:
    """The part-1 figures (``durations`` and ``figure`` are bench_fill's)."""
    status = site_status()
    n = per_slot * NODES * CORES
    figs = []
    for cv, target in ((0.3, 0.95), (1.0, 0.90)):
        durs = [d * median / 150.0 for d in durations(n, cv, seed)]
        got = measure(status, durs, cv)
        extra = {"tasks": n, "slots": NODES * CORES, "median_s": median,
                 "dynamic_job_s": got["dynamic_seconds"],
                 "multiprog_job_s": got["multiprog_seconds"]}
        figs.append(figure(f"site fill, CV {cv}: dynamic vs multi-prog", got["dynamic"],
                           got["multiprog"], target, "higher", extra))
    return figs
