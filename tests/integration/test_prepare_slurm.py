"""Prepared job scripts and multi-prog chunks run under the test site's real Slurm.

The Slurm commands run in fe1's network namespace as root (``test_site.netns_argv``), so
no dmz token is spent; the jobs run on cn1/cn2 and see the same files as home. Needs root
and the test site (mark ``site``); fails, never skips, when they are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from remotebridge import config as cfgmod
from remotebridge.config import SchedulerKind, SiteConfig
from remotebridge.demo.generate import init_survey
from remotebridge.prepare import prepare_run
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import Phase, Plan, Task
from remotebridge.prepare.writer import write_folder
from tests.support.prepare_runs import new_run, stage_remote

CPUS = 4
"""CPUs of each compute node of the test site (ops/testsite/rbsite/texts.py)."""

pytestmark = pytest.mark.site


@dataclass
class SiteSlurm:
    """The test site's Slurm, used from a front end's namespace (as root, so no dmz token)."""

    prefix: list[str]
    env: dict[str, str]

    def run(self, argv: list[str], cwd: Path, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command on the front end, with the venv's python3 first on PATH."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        r = subprocess.run([*self.prefix, *argv], cwd=cwd, env={**os.environ, **self.env,
                           "PATH": path}, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"{argv} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r


@pytest.fixture(scope="module")
def slurm(test_site: Any) -> SiteSlurm:
    """The site's Slurm (started again if a switch left it stopped), seen from fe1."""
    if not test_site.status().get("slurm_up", True):
        test_site.start_slurm()
    return SiteSlurm(test_site.netns_argv("fe1"), {"SLURM_CONF": test_site.slurm_conf})


def _wait_job(job_id: str, slurm: SiteSlurm, cwd: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = slurm.run(["squeue", "-h", "-j", job_id], cwd, check=False)
        if r.returncode == 0 and not r.stdout.strip():
            return
        time.sleep(1)
    pytest.fail(f"job {job_id} did not finish in {timeout} s")


def _sbatch(job_dir: Path, slurm: SiteSlurm) -> str:
    r = slurm.run(["sbatch", "--parsable", "job.sh"], job_dir)
    return r.stdout.strip().split(";")[0]


@pytest.mark.parametrize("runner", ["multiprog", "dynamic"])
def test_prepared_chip_run_runs_under_slurm(engine: Engine, tmp_path: Path,
                                            slurm: SiteSlurm, test_site: Any,
                                            runner: str) -> None:
    init_survey(engine, tmp_path / "survey", exposures=2, chips=4, size=64)
    rid = new_run(engine, tmp_path)
    cfg = cfgmod.build({"site": {"hpc": {
        "kind": "ssh", "scheduler": "slurm", "frontends": ["fe1"],
        "remote_root": str(tmp_path / "scratch"),
        "cores_per_node": CPUS, "max_nodes": 1, "partition": test_site.slurm_partition,
        "multiprog_max_bytes": 200, "runner": runner}}, "stage": {"chip": {"threads": 1}}})
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE \"remoteRun\" SET site='hpc' WHERE remote_id={rid}")
    res = prepare_run(engine, cfg, rid)
    assert len([c for c in res.info["chunks"] if c["phase"] == "cmd"]) >= 3  # 200-byte files
    job_dir = stage_remote(Path(res.folder))
    job_id = _sbatch(job_dir, slurm)
    _wait_job(job_id, slurm, job_dir)
    out = (job_dir / f"job.{job_id}.out").read_text()
    lines = (job_dir / "job_summary.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    assert head["ok"] == head["tasks"] == 1 + 8 + 2, out
    assert all(json.loads(ln)["rc"] == 0 for ln in lines[1:1 + head["tasks"]])
    assert len(list((job_dir / "dbinfo").iterdir())) == 2
    if runner == "dynamic":  # the runner ran every task, its progress says so
        final = json.loads((job_dir / "runner" / "progress.json").read_text())
        assert final["final"] and final["done"] == head["tasks"] and final["left"] == 0, out


def _sleep_plan(job_dir: Path, n: int) -> Plan:
    plan = Plan(stage="chip", remote_id=9, job_dir=str(job_dir))
    plan.tasks.append(Task(0, 0, Phase.PRE, ["python3", "rbhelper.py", "mkdirs",
                                             "outdirs.list"]))
    plan.tasks += [Task(i, 1, Phase.CMD, ["true", f"{i}"]) for i in range(1, n + 1)]
    return plan


def test_oversized_multiprog_refused_chunked_runs(tmp_path: Path, slurm: SiteSlurm) -> None:
    n = 1700  # ~40 bytes a line: one file of all tasks is ~68 kB, above srun's 60000 bytes
    site = SiteConfig(scheduler=SchedulerKind.SLURM, remote_root=str(tmp_path),
                      cores_per_node=CPUS, max_nodes=1, multiprog_max_bytes=1200)
    alloc = compute(AllocationInput(n, 1, 0.01, CPUS, 0.8, 1, 600, 3600))
    job_dir = tmp_path / "remote_9"
    job = assemble(_sleep_plan(job_dir, n), alloc, site)
    write_folder(job_dir, job.files)
    confs = sorted((job_dir / "chunks").glob("cmd.*.conf"))
    assert all(c.stat().st_size <= 1200 for c in confs)
    body = [ln for c in confs for ln in c.read_text().splitlines() if not ln.startswith("#")]
    big = job_dir / "big.conf"
    big.write_text("".join(f"{i} {ln.split(' ', 1)[1]}\n" for i, ln in enumerate(body)))
    assert big.stat().st_size > 60000
    r = slurm.run(["srun", "-N1", "-n", str(len(body)), "--multi-prog", str(big)], job_dir,
                  timeout=120, check=False)
    assert r.returncode != 0 and "too large" in r.stderr, r.stderr
    ran = 0
    for conf in confs[:2]:
        count = len([ln for ln in conf.read_text().splitlines() if not ln.startswith("#")])
        assert count <= alloc.slots
        r = slurm.run(["srun", "-N1", "-n", str(count), "--multi-prog", str(conf)], job_dir,
                      timeout=300, check=False)
        assert r.returncode == 0, r.stderr
        ran += count
    status = list((job_dir / "status").glob("*.json"))
    assert len(status) == ran and all(json.loads(p.read_text())["rc"] == 0 for p in status)
