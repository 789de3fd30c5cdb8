"""Rendering is shell-safe: hostile names stay data, unknown variables are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from remotebridge.config import RunnerKind, SchedulerKind, SiteConfig
from remotebridge.errors import PrepareError
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import Phase, Plan, Task
from remotebridge.prepare.render import render_string
from remotebridge.prepare.writer import write_folder

HOSTILE = "-x we'ird \"dir\"; touch PWNED_$(touch PWNED2) `touch PWNED3` $HOME"


def hostile_plan(job_dir: Path) -> Plan:
    plan = Plan(stage="chip", remote_id=7, job_dir=str(job_dir))
    plan.tasks.append(Task(0, 0, Phase.PRE, ["python3", "rbhelper.py", "mkdirs",
                                             "outdirs.list"]))
    out = job_dir / "out" / (HOSTILE + ".txt")
    code = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    for i in (1, 2, 3):
        plan.tasks.append(Task(i, 10, Phase.CMD, [sys.executable, "-c", code, f"{out}.{i}",
                                                  HOSTILE], 1, 1.0, str(out) + f".{i}.log"))
    plan.out_dirs.add(str(out.parent))
    return plan


@pytest.mark.parametrize("kind", list(SchedulerKind))
def test_hostile_paths_pass_bash_n(tmp_path: Path, kind: SchedulerKind) -> None:
    job_dir = tmp_path / HOSTILE
    alloc = compute(AllocationInput(3, 1, 1.0, 2, 0.8, 1, 600, 43200))
    job = assemble(hostile_plan(job_dir), alloc, SiteConfig(scheduler=kind,
                                                            partition=HOSTILE, account=HOSTILE))
    script = tmp_path / "job.sh"
    script.write_text(job.files["job.sh"])
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert f"JOBDIR={job_dir}" not in job.files["job.sh"]  # quoted, never raw


def test_hostile_paths_run_as_data(tmp_path: Path) -> None:
    job_dir = tmp_path / HOSTILE
    alloc = compute(AllocationInput(3, 1, 1.0, 2, 0.8, 1, 600, 43200))
    job = assemble(hostile_plan(job_dir), alloc, SiteConfig(scheduler=SchedulerKind.LOCAL))
    write_folder(job_dir, job.files)
    # job.sh cds into its own (hostile) folder
    r = subprocess.run(["bash", str(job_dir / "job.sh")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = (job_dir / "job_summary.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    assert head["format"] == "remotebridge.job_summary" and head["failed"] == 0
    assert head["missing"] == 0 and head["ok"] == 4
    for i in (1, 2, 3):
        assert (job_dir / "out" / f"{HOSTILE}.txt.{i}").read_text() == HOSTILE
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_unknown_template_variable_is_refused() -> None:
    with pytest.raises(PrepareError, match="unknown variable"):
        render_string("echo {{ nope|shquote }}", {})


def test_interpolation_without_shquote_is_refused() -> None:
    with pytest.raises(PrepareError, match="without \\|shquote"):
        render_string("echo {{ name }}", {"name": "$(reboot)"})
    assert render_string("echo {{ name|shquote }}", {"name": "$(reboot)"}) == "echo '$(reboot)'"


CUSTOM_PY = "/opt/py/bin/python3"


@pytest.mark.parametrize("runner", list(RunnerKind))
@pytest.mark.parametrize("kind", list(SchedulerKind))
def test_remote_python_in_job_sh_and_chunk_lines(tmp_path: Path, kind: SchedulerKind,
                                                 runner: RunnerKind) -> None:
    alloc = compute(AllocationInput(3, 1, 1.0, 2, 0.8, 1, 600, 43200))
    job = assemble(hostile_plan(tmp_path / "j"), alloc,
                   SiteConfig(scheduler=kind, remote_python=CUSTOM_PY, runner=runner))
    script = job.files["job.sh"]
    if runner is RunnerKind.MULTIPROG:
        assert f"{CUSTOM_PY} rbhelper.py task pre.0000 0" in script
    else:
        assert f"{CUSTOM_PY} rbrunner.py " in script
    assert f"{CUSTOM_PY} rbhelper.py summary" in script
    assert "\npython3 " not in script
    confs = [t for n, t in job.files.items() if n.endswith(".conf")]
    lines = [ln for t in confs for ln in t.splitlines() if not ln.startswith("#")]
    assert lines and all(ln.split()[1:3] == [CUSTOM_PY, "rbhelper.py"] for ln in lines)
    assert f'"python": "{CUSTOM_PY}"' in job.files["job.json"]


def test_remote_python_is_quoted_and_used_by_the_local_job(tmp_path: Path) -> None:
    """A python path with a space runs the pre, cmd, post and summary steps."""
    pydir = tmp_path / "my py"
    pydir.mkdir()
    (pydir / "python3").symlink_to(sys.executable)
    job_dir = tmp_path / "job"
    alloc = compute(AllocationInput(3, 1, 1.0, 2, 0.8, 1, 600, 43200))
    job = assemble(hostile_plan(job_dir), alloc,
                   SiteConfig(scheduler=SchedulerKind.LOCAL, remote_python=str(pydir / "python3")))
    assert f"'{pydir}/python3' rbhelper.py summary" in job.files["job.sh"]
    write_folder(job_dir, job.files)
    r = subprocess.run(["bash", str(job_dir / "job.sh")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    head = json.loads((job_dir / "job_summary.jsonl").read_text().splitlines()[0])
    assert head["ok"] == 4 and head["missing"] == 0


def test_plan_builder_pre_and_post_use_remote_python(tmp_path: Path) -> None:
    from typing import Any, cast

    from remotebridge.prepare.base import PlanBuilder, StageContext
    from remotebridge.prepare.chunking import Limits
    from remotebridge.prepare.paths import PathTranslator
    from remotebridge.prepare.plan import HomeRecord

    site = SiteConfig(remote_python=CUSTOM_PY, remote_root="/scratch")
    ctx = StageContext(cast(Any, None), 1, site, cast(Any, None), "/scratch/remote_1",
                       str(tmp_path), PathTranslator(site, "/scratch"), Limits(), lambda n: n)
    b = PlanBuilder(ctx, "chip")
    b.command(5, [b.python, "/p/prog.py"], threads=1, cost=1.0)
    b.home(5, HomeRecord("chipProcessedImfile", {"chip_id": 5}, {}, "", []))
    plan = b.finish()
    assert [t.argv[0] for t in plan.tasks] == [CUSTOM_PY] * 3
    assert [t.phase for t in plan.tasks] == [Phase.PRE, Phase.CMD, Phase.POST]
