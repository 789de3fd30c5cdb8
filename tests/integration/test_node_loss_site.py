"""A compute node that dies mid-job under the dynamic runner loses no task.

A job of sleep tasks, prepared by the product's own ``assemble`` for both compute nodes
of the test site (2 x 4 CPUs), runs under the site's real Slurm with the dynamic runner.
Mid-job, the node that does not hold the leader dies: its slurmd is killed (``site
kill-slurmd``) and so is every other process in its namespace (the runner's worker and
the tasks it runs), except ``slurmstepd``. The step daemon is left alive on purpose: on
a real cluster ``srun`` learns of a dead node from slurmctld after ``SlurmdTimeout``
(60 s here), and the whole job is then killed as NODE_FAIL; keeping the step daemon
stands in for a node whose death Slurm reports as the worker task's end, so the test
measures what the runner does, not how long Slurm takes to notice.

The leader's lease is shortened (``--heartbeat 1 --lease 8`` on its command line in the
generated ``job.sh``) so the loss is seen in seconds, not in the default 120 s. After
the leader records the loss the node's slurmd is started again (``site start-slurm``),
before ``SlurmdTimeout`` would mark the node down, and the test checks that Slurm runs a
step on it again, so later tests find both nodes. Takes the site alone (``site_alone``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remotebridge.config import RunnerKind, SchedulerKind, SiteConfig
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import Phase, Plan, Task
from remotebridge.prepare.writer import write_folder
from tests.site.fixtures import site_cmd

pytestmark = pytest.mark.site

NODES, CPUS = 2, 4
TASKS, SECONDS = 48, 3.0
"""48 tasks of 3 s: 18 s on 8 slots, 36 s on the 4 left after the loss."""

REPORTED = {"ok", "failed", "timeout", "lost", "not_started"}
"""Final outcomes of a task in runner/records.jsonl (ok, or reported)."""


@dataclasses.dataclass
class Fe1:
    """Slurm commands from fe1's namespace, as root (no dmz token)."""

    prefix: list[str]
    env: dict[str, str]

    def run(self, argv: list[str], cwd: Path, timeout: float = 60) -> str:
        """Run ``argv``; its stdout (fails the test on a non-zero exit)."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        r = subprocess.run([*self.prefix, *argv], cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, **self.env, "PATH": path})
        if r.returncode != 0:
            pytest.fail(f"{argv} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout


def _job_folder(tmp_path: Path, partition: str) -> Path:
    """The job folder of TASKS sleep tasks, for both nodes, with a short lease."""
    job_dir = tmp_path / "remote_13"
    site = SiteConfig(scheduler=SchedulerKind.SLURM, remote_root=str(tmp_path),
                      cores_per_node=CPUS, max_nodes=NODES, partition=partition,
                      runner=RunnerKind.DYNAMIC)
    plan = Plan(stage="chip", remote_id=13, job_dir=str(job_dir))
    plan.tasks += [Task(i, 1 + i // 8, Phase.CMD, ["sleep", str(SECONDS)], 1, SECONDS)
                   for i in range(1, TASKS + 1)]
    alloc = compute(AllocationInput(TASKS, 1, SECONDS, CPUS, 1.0, NODES, 600, 3600))
    alloc = dataclasses.replace(alloc, nodes=NODES, slots=NODES * alloc.tasks_per_node)
    write_folder(job_dir, assemble(plan, alloc, site).files)
    script = job_dir / "job.sh"
    text = script.read_text()
    assert text.count("rbrunner.py lead ") == 1, text
    script.write_text(text.replace("rbrunner.py lead ",
                                   "rbrunner.py lead --heartbeat 1 --lease 8 "))
    return job_dir


def _records(job_dir: Path) -> list[dict[str, Any]]:
    path = job_dir / "runner" / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines()[1:] if ln.strip()]


def _ns_pids(netns: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                       check=True)
    return [int(p) for p in r.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rank_of(pid: int) -> int:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(e for e in env if e.startswith(b"SLURM_PROCID="))[13:])


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def _victim(test_site: Any, job_dir: Path) -> tuple[str, int, list[int]]:
    """(node, rank, worker pids) of the node that runs a worker but not the leader."""
    for node in test_site.status()["compute_nodes"]:
        pids = _ns_pids(test_site.hosts[node]["netns"])
        cmds = {p: _cmdline(p) for p in pids}
        if any("rbrunner.py lead" in c for c in cmds.values()):
            continue
        workers = [p for p, c in cmds.items() if "rbrunner.py work" in c]
        if workers:
            return node, _rank_of(workers[0]), workers
    pytest.fail("no compute node runs a worker without the leader")


def _kill_node(test_site: Any, node: str) -> list[str]:
    """kill -9 the node's slurmd, then everything else in its namespace but slurmstepd."""
    site_cmd("kill-slurmd", node)
    killed = []
    for pid in _ns_pids(test_site.hosts[node]["netns"]):
        cmd = _cmdline(pid)
        if "slurmstepd" in cmd or not cmd:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(cmd)
        except ProcessLookupError:
            pass
    return killed


def test_a_dead_node_loses_no_task(site_alone: Any, tmp_path: Path) -> None:
    site = site_alone
    if not site.status().get("slurm_up", True):
        site.start_slurm()
    fe1 = Fe1(site.netns_argv("fe1"), {"SLURM_CONF": site.slurm_conf})
    job_dir = _job_folder(tmp_path, site.slurm_partition)
    # both nodes are needed: a job left by someone else would keep this one pending
    _wait(lambda: not fe1.run(["squeue", "-h"], job_dir).strip(), 60,
          "no other job on the site (squeue)")
    job_id = fe1.run(["sbatch", "--parsable", "job.sh"], job_dir).strip().split(";")[0]
    node = ""
    try:
        # mid-job: both workers have finished tasks and are running more
        _wait(lambda: {r.get("rank") for r in _records(job_dir)
                       if r.get("outcome") == "ok"} == {0, 1}, 90, "both workers at work")
        node, rank, _ = _victim(site, job_dir)
        killed = _kill_node(site, node)
        assert any("rbrunner.py work" in c for c in killed), killed
        assert any(c.startswith("sleep ") for c in killed), killed  # tasks were running
        lost = _wait(lambda: [r for r in _records(job_dir) if r.get("outcome") == "lost"],
                     30, "the leader records the lost worker's tasks")
        site.start_slurm()  # the node comes back before SlurmdTimeout marks it down
        _wait(lambda: not fe1.run(["squeue", "-h", "-j", job_id], job_dir).strip(), 120,
              f"job {job_id} ends")
    finally:
        if node:
            site.start_slurm()
        subprocess.run([*fe1.prefix, "scancel", job_id], env={**os.environ, **fe1.env},
                       capture_output=True, timeout=60)  # a no-op once the job has ended
    out = (job_dir / f"job.{job_id}.out").read_text()
    assert {r["rank"] for r in lost} == {rank}, out
    _assert_no_task_lost(job_dir, rank, {r["task_id"] for r in lost}, out)
    # the node runs steps again: later tests find the whole site
    ran = fe1.run(["srun", "-N1", "-w", node, "-t", "1", "sh", "-c", "echo $SLURMD_NODENAME"],
                  job_dir, timeout=60)
    assert ran.strip() == node


def _assert_no_task_lost(job_dir: Path, rank: int, lost: set[int], out: str) -> None:
    """Every planned task ended ok or is reported; the lost ones ran again elsewhere."""
    recs = _records(job_dir)
    final: dict[int, str] = {}
    for r in recs:  # the last word on a task wins (lost, then ok on the other node)
        final[r["task_id"]] = r["outcome"]
    assert set(final) == set(range(1, TASKS + 1)), out  # none missing
    assert set(final.values()) <= REPORTED, final
    rerun = {r["task_id"]: r for r in recs if r["task_id"] in lost and r.get("outcome") == "ok"}
    assert set(rerun) == lost and all(r["rank"] != rank for r in rerun.values()), out
    progress = json.loads((job_dir / "runner" / "progress.json").read_text())
    assert progress["final"] and progress["left"] == 0 and progress["running"] == 0, progress
    assert progress["done"] + progress["failed"] + progress["not_started"] == TASKS, progress
    assert progress["done"] == TASKS, progress  # one loss, max_lost 2: all re-run
    lines = (job_dir / "job_summary.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    assert head["tasks"] == TASKS and head["ok"] == TASKS, (head, out)
    status = {int(p.stem) for p in (job_dir / "status").glob("*.json")}
    assert status == set(range(1, TASKS + 1)), out

