"""retry_subset on a prepared (not run) job folder: only the chosen tasks, same limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from remotebridge import config as cfgmod
from remotebridge.define import define_by_query
from remotebridge.demo.generate import init_survey
from remotebridge.errors import PrepareError
from remotebridge.prepare import prepare_run
from remotebridge.prepare.retry import retry_subset


def slurm_config(tmp: Path, runner: str = "multiprog") -> cfgmod.Config:
    return cfgmod.build({"site": {"hpc": {
        "kind": "ssh", "scheduler": "slurm", "frontends": ["fe1"], "partition": "batch",
        "account": "ps1", "remote_root": str(tmp / "scratch"), "cores_per_node": 4,
        "multiprog_max_bytes": 300, "runner": runner}}})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retry_subset_recuts_chunks(engine: Engine, tmp_path: Path) -> None:
    init_survey(engine, tmp_path / "survey", exposures=3, chips=2, size=32)
    cfg = slurm_config(tmp_path)
    res = define_by_query(engine, cfg, label="demo", stage="chip", path_base=str(tmp_path))
    assert res.remote_id is not None
    folder = Path(prepare_run(engine, cfg, res.remote_id).folder)
    plan_before = (folder / "plan.jsonl").read_text()
    plan = [json.loads(ln) for ln in plan_before.splitlines()[1:]]
    wanted = [t["task_id"] for t in plan if t["stage_id"] in (1, 3)]
    out = retry_subset(folder, wanted, 2, site=cfg.site())
    assert (folder / "plan.jsonl").read_text() == plan_before  # the plan stays
    assert out.task_ids == sorted([0, *wanted])
    got: list[int] = []
    for name in out.chunks:
        conf = (folder / "chunks" / f"{name}.conf").read_text()
        assert len(conf.encode()) <= 300 and name.split(".")[1] == "a2"
        lines = (folder / "chunks" / f"{name}.tasks.jsonl").read_text().splitlines()
        assert json.loads(lines[0])["chunk"] == name
        ids = [json.loads(ln)["task_id"] for ln in lines[1:]]
        assert [int(ln.split()[-1]) for ln in conf.splitlines()[1:]] == ids
        got += ids
    assert sorted(got) == out.task_ids
    assert len(out.chunks) > 2  # the small byte limit forced several cmd chunks
    script = (folder / "job.sh").read_text()
    assert "#SBATCH --partition=batch" in script and "#SBATCH --account=ps1" in script
    assert all(f"chunks/{c}.conf" in script for c in out.chunks if not c.startswith("pre"))
    assert "chunks/cmd.0000.conf" not in script
    assert (folder / "chunks" / "cmd.0000.conf").exists()  # the first attempt's stay
    info = json.loads((folder / "job.json").read_text())
    assert info["retry"] == {"attempt": 2, "tasks": len(out.task_ids),
                             "subset": "retry.a2.tasks", "chunks": out.chunks}
    subset = (folder / "retry.a2.tasks").read_text().splitlines()
    assert subset[0] == "# remotebridge.subset v1"
    assert [int(x) for x in subset[1:]] == out.task_ids
    with pytest.raises(PrepareError, match="not in plan.jsonl"):
        retry_subset(folder, [99999], 3, site=cfg.site())


def test_retry_allocation_is_sized_for_the_subset() -> None:
    """A retry of 10 commands out of 1000 asks for what 10 need, not the full request."""
    from remotebridge.prepare.allocation import AllocationInput, compute
    from remotebridge.prepare.retry import subset_allocation

    full = compute(AllocationInput(n_commands=1000, threads=2, cost_seconds=3600.0,
                                   cores_per_node=24, fill_factor=0.8, max_nodes=20,
                                   walltime_min=600, walltime_max=43200))
    small = subset_allocation(full, 10)
    assert small.inputs.n_commands == 10 and small.inputs.cost_seconds == 3600.0
    assert small.nodes == 1 < full.nodes and small.walltime_seconds < full.walltime_seconds
    assert subset_allocation(full, 0).inputs.n_commands == 1  # post tasks only


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retry_subset_with_the_dynamic_runner(engine: Engine, tmp_path: Path) -> None:
    """The dynamic runner's retry script runs only the subset (rbrunner.py --subset)."""
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=32)
    cfg = slurm_config(tmp_path, "dynamic")
    res = define_by_query(engine, cfg, label="demo", stage="chip", path_base=str(tmp_path))
    assert res.remote_id is not None
    folder = Path(prepare_run(engine, cfg, res.remote_id).folder)
    plan = [json.loads(ln) for ln in (folder / "plan.jsonl").read_text().splitlines()[1:]]
    wanted = [t["task_id"] for t in plan if t["stage_id"] == 1]
    retry_subset(folder, wanted, 2, site=cfg.site())
    script = (folder / "job.sh").read_text()
    lead = [ln for ln in script.splitlines() if " rbrunner.py lead " in ln]
    assert len(lead) == 1 and " --subset retry.a2.tasks " in lead[0]
    assert "--multi-prog" not in script and (folder / "rbrunner.py").is_file()


def _exposure() -> tuple[dict[int, tuple[int, str]], dict[int, list[int]]]:
    """Component 7: three chip tasks (1-3) and its post task (4); component 8: 5, 6."""
    plan = {1: (7, "cmd"), 2: (7, "cmd"), 3: (7, "cmd"), 4: (7, "post"),
            5: (8, "cmd"), 6: (8, "post")}
    return plan, {7: [1, 2, 3, 4]}


@pytest.mark.parametrize(("rcs", "independent", "wanted"), [
    ({1: 0, 2: 1, 3: 0, 4: 0}, True, [2, 4]),
    ({1: 0, 2: None, 3: 0, 4: 0}, True, [2, 4]),   # never ended: runs again
    ({1: 0, 3: 0, 4: 0}, True, [2, 4]),            # not in the summary: runs again
    ({1: 0, 2: 0, 3: 0, 4: 1}, True, [4]),         # only the post task failed
    ({1: 0, 2: 1, 3: 0, 4: 0}, False, [1, 2, 3, 4]),
])
def test_retry_runs_the_failed_tasks_of_an_independent_stage(
        rcs: dict[int, int | None], independent: bool, wanted: list[int]) -> None:
    """One bad chip re-runs that chip (and the post task gathering the exposure), not
    its whole exposure; a stage whose tasks depend on each other re-runs the component."""
    from remotebridge.poll.remote_files import TaskResult
    from remotebridge.poll.retrytasks import retry_task_ids

    plan, failed = _exposure()
    summary = {t: TaskResult(t, plan[t][0], plan[t][1], rc) for t, rc in rcs.items()}
    assert retry_task_ids(independent, plan, summary, failed) == wanted


def test_chip_tasks_are_independent() -> None:
    from remotebridge.prepare.chip import ChipStage

    assert ChipStage.independent_tasks is True
