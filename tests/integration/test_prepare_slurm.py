"""Prepared job scripts and multi-prog chunks run under a real Slurm.

Starts a private one-node Slurm (munged + slurmctld + slurmd, state under a temp
dir, free ports, ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
SelectType=select/cons_tres, AuthType=auth/munge) unless ``RB_TEST_SLURM_CONF``
points at a running cluster. Needs root and the slurm-wlm and munge packages
(installed by ``ops/testsite/site up``); fails, never skips, when they are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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

CPUS = 32
"""CPUs the node declares (SlurmdParameters=config_overrides: more than the machine has)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, **kw)


def _conf(root: Path, host: str, sock: Path) -> str:
    return f"""ClusterName=rbprep
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root}/ctld
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory=1000 State=UNKNOWN
PartitionName=batch Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment (SLURM_CONF) of a running private Slurm."""
    if os.environ.get("RB_TEST_SLURM_CONF"):
        yield {"SLURM_CONF": os.environ["RB_TEST_SLURM_CONF"]}
        return
    for tool in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.fail(f"{tool} is not installed (run 'ops/testsite/site up' once)")
    if os.geteuid() != 0:
        pytest.fail("a private Slurm needs root")
    root = Path("/tmp") / f"rbslurm-{os.getpid()}"  # short: munge socket path limit
    (root / "ctld").mkdir(parents=True)
    (root / "spool").mkdir()
    munge = root / "munge"
    munge.mkdir()
    shutil.chown(munge, "munge", "munge")
    key, sock = munge / "munge.key", munge / "munge.sock"
    _run(["mungekey", "--create", f"--keyfile={key}"])
    shutil.chown(key, "munge", "munge")
    key.chmod(0o600)
    _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force", f"--socket={sock}",
          f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
          f"--seed-file={munge / 'seed'}", f"--log-file={munge / 'munged.log'}"])
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host, sock))
    env = {"SLURM_CONF": str(conf)}
    full = {**os.environ, **env}
    _run(["slurmctld", "-f", str(conf)], env=full)
    _run(["slurmd", "-f", str(conf), "-N", host], env=full)
    _wait_idle(full)
    try:
        yield env
    finally:
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            _kill(root / pidfile)
        shutil.rmtree(root, ignore_errors=True)


def _wait_idle(env: dict[str, str]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().rstrip("*") in ("idle", "mix"):
            return
        time.sleep(0.5)
    pytest.fail(f"slurm node not idle: {r.stdout} {r.stderr}")


def _kill(pidfile: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().strip()), 15)


def _wait_job(job_id: str, env: dict[str, str], timeout: float = 240) -> None:
    full = {**os.environ, **env}
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["squeue", "-h", "-j", job_id], env=full, capture_output=True,
                           text=True)
        if r.returncode == 0 and not r.stdout.strip():
            return
        time.sleep(1)
    pytest.fail(f"job {job_id} did not finish in {timeout} s")


def _sbatch(job_dir: Path, env: dict[str, str]) -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    full = {**os.environ, **env, "PATH": path}
    r = _run(["sbatch", "--parsable", "job.sh"], cwd=job_dir, env=full)
    return r.stdout.strip().split(";")[0]


def test_prepared_chip_run_runs_under_slurm(engine: Engine, tmp_path: Path,
                                            slurm: dict[str, str]) -> None:
    init_survey(engine, tmp_path / "survey", exposures=2, chips=4, size=64)
    rid = new_run(engine, tmp_path)
    cfg = cfgmod.build({"site": {"hpc": {
        "kind": "ssh", "scheduler": "slurm", "frontends": ["fe1"],
        "remote_root": str(tmp_path / "scratch"),
        "cores_per_node": CPUS, "max_nodes": 1, "partition": "batch",
        "multiprog_max_bytes": 200}}, "stage": {"chip": {"threads": 1}}})
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE \"remoteRun\" SET site='hpc' WHERE remote_id={rid}")
    res = prepare_run(engine, cfg, rid)
    assert len([c for c in res.info["chunks"] if c["phase"] == "cmd"]) >= 3  # 200-byte files
    job_dir = stage_remote(Path(res.folder))
    job_id = _sbatch(job_dir, slurm)
    _wait_job(job_id, slurm)
    out = (job_dir / f"job.{job_id}.out").read_text()
    lines = (job_dir / "job_summary.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    assert head["ok"] == head["tasks"] == 1 + 8 + 2, out
    assert all(json.loads(ln)["rc"] == 0 for ln in lines[1:])
    assert len(list((job_dir / "dbinfo").iterdir())) == 2


def _sleep_plan(job_dir: Path, n: int) -> Plan:
    plan = Plan(stage="chip", remote_id=9, job_dir=str(job_dir))
    plan.tasks.append(Task(0, 0, Phase.PRE, ["python3", "rbhelper.py", "mkdirs",
                                             "outdirs.list"]))
    plan.tasks += [Task(i, 1, Phase.CMD, ["true", f"{i}"]) for i in range(1, n + 1)]
    return plan


def test_oversized_multiprog_refused_chunked_runs(tmp_path: Path,
                                                  slurm: dict[str, str]) -> None:
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
    full = {**os.environ, **slurm}
    r = subprocess.run(["srun", "-N1", "-n", str(len(body)), "--multi-prog", str(big)],
                       cwd=job_dir, env=full, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "too large" in r.stderr, r.stderr
    ran = 0
    for conf in confs[:2]:
        count = len([ln for ln in conf.read_text().splitlines() if not ln.startswith("#")])
        assert count <= alloc.slots
        r = subprocess.run(["srun", "-N1", "-n", str(count), "--multi-prog", str(conf)],
                           cwd=job_dir, env=full, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        ran += count
    status = list((job_dir / "status").glob("*.json"))
    assert len(status) == ran and all(json.loads(p.read_text())["rc"] == 0 for p in status)
