"""Golden files for the rendered Slurm, Moab and local job scripts and their chunk files.

Regenerate after an intended change with::

    REMOTEBRIDGE_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/test_prepare_golden.py

then review the diff of tests/golden/ like any other code change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from remotebridge.config import RunnerKind, SchedulerKind, SiteConfig
from remotebridge.jobfolder import (
    HOME,
    INPUTS,
    OUTPUTS,
    PLAN,
    Streamed,
    jsonl_text,
    text_of,
    write_folder,
)
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import HomeRecord, Phase, Plan, Task

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REGEN = os.environ.get("REMOTEBRIDGE_REGEN_GOLDEN") == "1"


def sample_plan() -> Plan:
    """A small fixed plan: 1 mkdirs task, 5 commands, 2 post tasks."""
    plan = Plan(stage="chip", remote_id=42, job_dir="/scratch/rb/remote_42")
    plan.tasks.append(Task(0, 0, Phase.PRE, ["python3", "rbhelper.py", "mkdirs",
                                             "outdirs.list"], 1, 1.0))
    for i in range(1, 6):
        sid = 100 + (i - 1) // 3
        plan.tasks.append(Task(i, sid, Phase.CMD, ["python3", "/p/rb_chip.py", "--raw",
                                                   f"/r/raw.{i}.fits", "--out", f"/o/{i}.fits"],
                               2, 150.0, f"/o/{i}.log"))
    for j, sid in enumerate((100, 101)):
        plan.tasks.append(Task(6 + j, sid, Phase.POST, ["python3", "rbhelper.py", "dbinfo",
                                                        "--home", f"home/{sid}.home.jsonl",
                                                        "--out", f"dbinfo/{sid}.dbinfo.jsonl"]))
        plan.home[sid] = [HomeRecord("chipProcessedImfile", {"chip_id": sid, "class_id": "xy00"},
                                     {"uri": "/o/x.fits", "fault": 0}, "/o/x.stats.json", ["bg"])]
    plan.out_dirs.add("/o")
    return plan


def site(kind: SchedulerKind, runner: RunnerKind = RunnerKind.DYNAMIC) -> SiteConfig:
    return SiteConfig(name="g", scheduler=kind, remote_root="/scratch/rb", partition="batch",
                      account="ps1", cores_per_node=4, multiprog_max_bytes=200, runner=runner)


def files_for(kind: SchedulerKind, runner: RunnerKind = RunnerKind.MULTIPROG) -> dict[str, str]:
    """The golden files; tests/golden/<kind>/ holds the multi-prog job (chunks and all),
    tests/golden/<kind>-dynamic/ the dynamic runner's job.sh and job.json."""
    alloc = compute(AllocationInput(5, 2, 150.0, 4, 0.8, 10, 600, 43200))
    job = assemble(sample_plan(), alloc, site(kind, runner))
    keep = ["job.sh", "job.json"]
    if runner is RunnerKind.MULTIPROG:
        keep += ["plan.jsonl", "allocation.json"]
        keep += [n for n in job.files if n.startswith("chunks/")]
    return {n: text_of(job.files[n]) for n in sorted(keep)}


def golden_dir(kind: SchedulerKind, runner: RunnerKind) -> Path:
    return GOLDEN / (kind.value if runner is RunnerKind.MULTIPROG else f"{kind.value}-dynamic")


@pytest.mark.parametrize("runner", list(RunnerKind))
@pytest.mark.parametrize("kind", list(SchedulerKind))
def test_golden(kind: SchedulerKind, runner: RunnerKind) -> None:
    for name, text in files_for(kind, runner).items():
        path = golden_dir(kind, runner) / name
        if REGEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            continue
        assert path.exists(), f"missing golden {path}; regenerate (see module docstring)"
        assert text == path.read_text(encoding="utf-8"), f"{path} differs from the rendering"


def test_chunks_in_golden_respect_the_small_limit() -> None:
    files = files_for(SchedulerKind.SLURM)
    confs = [t for n, t in files.items() if n.endswith(".conf")]
    assert len([n for n in files if n.startswith("chunks/cmd.")]) >= 4  # split by 200 bytes
    assert all(len(t) <= 200 for t in confs)


@pytest.mark.parametrize("runner", list(RunnerKind))
@pytest.mark.parametrize("kind", [SchedulerKind.SLURM, SchedulerKind.MOAB])
def test_every_srun_waits_for_all_tasks(kind: SchedulerKind, runner: RunnerKind) -> None:
    """Without --wait=0 srun kills a chunk's other tasks WaitTime s after the first ends."""
    sruns = [ln for ln in files_for(kind, runner)["job.sh"].splitlines()
             if ln.startswith("srun ")]
    assert sruns and all(" --wait=0 " in ln for ln in sruns)


def test_site_runner_defaults_to_dynamic() -> None:
    assert SiteConfig().runner is RunnerKind.DYNAMIC


@pytest.mark.parametrize("kind", [SchedulerKind.SLURM, SchedulerKind.MOAB])
def test_dynamic_script_starts_leader_then_one_worker_per_node(kind: SchedulerKind) -> None:
    """The leader runs in the background on the batch node, the workers in one srun
    step with one task per node owning the node's cores; no multi-prog chunk is run."""
    lines = files_for(kind, RunnerKind.DYNAMIC)["job.sh"].splitlines()
    lead = [ln for ln in lines if " rbrunner.py lead " in ln]
    work = [ln for ln in lines if ln.startswith("srun ")]
    assert len(lead) == 1 and lead[0].endswith(" &")
    assert len(work) == 1 and " --ntasks-per-node=1 " in work[0]
    assert " rbrunner.py work " in work[0] + " "
    assert "--multi-prog" not in "\n".join(lines)
    assert lines.index(lead[0]) < lines.index(work[0]) < lines.index('wait "$RB_LEADER" '
                                                                     '|| rb_note runner rc=$?')


def test_local_dynamic_runs_workers_as_local_processes() -> None:
    text = files_for(SchedulerKind.LOCAL, RunnerKind.DYNAMIC)["job.sh"]
    assert " rbrunner.py run --workers " in text
    lines = text.splitlines()
    assert not any(ln.startswith(("srun ", "rb_chunk ")) for ln in lines)


def test_job_json_says_which_runner_and_why() -> None:
    from remotebridge.prepare.review import runner_line

    for runner in RunnerKind:
        info = json.loads(files_for(SchedulerKind.SLURM, runner)["job.json"])
        assert info["runner"]["kind"] == runner.value
        assert runner_line(info).startswith(f"runner: {runner.value} (site runner = ")


def test_moab_log_path_is_absolute_and_jobs_not_rerun() -> None:
    """msub resolves a relative -o against the login home: every job would share it."""
    lines = files_for(SchedulerKind.MOAB)["job.sh"].splitlines()
    assert "#MSUB -o /scratch/rb/remote_42/job.moab.out" in lines
    assert "#MSUB -r n" in lines


def test_slurm_jobs_are_not_requeued() -> None:
    """A requeued job reruns the script from the top: we submit with --no-requeue."""
    assert "#SBATCH --no-requeue" in files_for(SchedulerKind.SLURM)["job.sh"].splitlines()


@pytest.mark.parametrize("kind", list(SchedulerKind))
def test_written_folder_is_byte_identical_to_golden(kind: SchedulerKind, tmp_path: Path) -> None:
    """The streamed files (plan, task files, manifests) reach the disk as the golden bytes."""
    alloc = compute(AllocationInput(5, 2, 150.0, 4, 0.8, 10, 600, 43200))
    plan = sample_plan()
    job = assemble(plan, alloc, site(kind, RunnerKind.MULTIPROG))
    assert isinstance(job.files[PLAN.name], Streamed)  # never held whole
    folder = write_folder(tmp_path / "job", job.files)
    for name in files_for(kind):
        assert (folder / name).read_bytes() == (GOLDEN / kind.value / name).read_bytes(), name
    assert (folder / INPUTS.name).read_text() == INPUTS.text(plan.inputs.values())
    assert (folder / OUTPUTS.name).read_text() == OUTPUTS.text(plan.outputs)
    for sid, recs in plan.home.items():
        want = jsonl_text(HOME, (json.dumps(r.record()) for r in recs), stage=plan.stage)
        assert (folder / HOME.path(stage_id=sid)).read_text() == want
