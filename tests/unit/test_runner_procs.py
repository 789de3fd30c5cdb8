"""The dynamic runner as real processes (leader + local workers) against a temp job folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from remotebridge import jobfolder

REMOTE = Path(__file__).resolve().parents[2] / "remotebridge" / "remote"
FAST = ["--poll", "0.02", "--heartbeat", "0.2", "--progress-every", "0.2", "--margin", "1"]


def job(tmp_path: Path, tasks: list[dict[str, Any]], tasks_in_header: int | None = None) -> Path:
    for name in ("rbhelper.py", "rbdispatch.py", "rbrunner.py"):
        shutil.copy(REMOTE / name, tmp_path / name)
    head = {"format": "remotebridge.plan", "version": 1,
            "tasks": len(tasks) if tasks_in_header is None else tasks_in_header}
    text = "\n".join([json.dumps(head)] + [json.dumps(t) for t in tasks]) + "\n"
    (tmp_path / "plan.jsonl").write_text(text, encoding="utf-8")
    # a job folder always has its outputs manifest (the summary records its products)
    (tmp_path / jobfolder.OUTPUTS.name).write_text(jobfolder.OUTPUTS.text([]), encoding="utf-8")
    return tmp_path


def ptask(tid: int, argv: list[str], cost: float = 1.0, phase: str = "cmd",
          stage: int = 1) -> dict[str, Any]:
    return {"task_id": tid, "stage_id": stage, "phase": phase, "threads": 1, "cost": cost,
            "argv": argv, "log": ""}


def runner(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "rbrunner.py", *args], cwd=folder, timeout=timeout,
                          capture_output=True, text=True)


def records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "runner" / "records.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["format"] == "remotebridge.runner_records"
    return [json.loads(x) for x in lines[1:]]


def progress(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "runner" / "progress.json").read_text())


def test_local_run_keeps_status_and_summary_compatible(tmp_path: Path) -> None:
    tasks = [ptask(0, ["true"], phase="pre", stage=0)]
    tasks += [ptask(i, ["sh", "-c", f"echo {i} > out.{i}"]) for i in range(1, 7)]
    tasks.append(ptask(7, ["sh", "-c", "exit 3"]))
    folder = job(tmp_path, tasks)
    proc = runner(folder, "run", "--workers", "2", "--cores", "2", "--max-attempts", "2", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in range(1, 7):
        st = json.loads((folder / "status" / f"{i}.json").read_text())
        assert st["rc"] == 0 and st["host"] and st["attempt"] == 1
    assert json.loads((folder / "status" / "7.json").read_text())["attempt"] == 2
    summ = subprocess.run([sys.executable, "rbhelper.py", "summary"], cwd=folder,
                          capture_output=True, text=True, check=True)
    assert json.loads(summ.stdout) == {"ok": 7, "failed": 1, "missing": 0}
    fails = [r for r in records(folder) if r["task_id"] == 7]
    assert [r["attempt"] for r in fails] == [1, 2] and all(r["rc"] == 3 for r in fails)
    assert progress(folder)["done"] == 7 and progress(folder)["failed"] == 1


def test_progress_file_contents_and_atomic_rewrite(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = job(tmp_path, [ptask(i, ["true"]) for i in range(3)])
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    rbrunner = importlib.import_module("rbrunner")
    args = rbrunner.parser().parse_args(["lead", "--workers", "1", "--walltime", "600"])
    leader = rbrunner.start_leader(args)
    leader.progress(True)
    first = os.stat("runner/progress.json").st_ino
    doc = json.loads(Path("runner/progress.json").read_text())
    assert doc["format"] == "remotebridge.progress" and doc["version"] == 1
    assert datetime.fromisoformat(doc["started"]) <= datetime.fromisoformat(doc["at"])
    assert doc["phases"]["cmd"] == {"tasks": 3, "done": 0, "elapsed": 0.0}
    assert {k: doc[k] for k in ("done", "failed", "running", "left", "not_started")} == \
        {"done": 0, "failed": 0, "running": 0, "left": 3, "not_started": 0}
    leader.disp.add_node("w0", 1)
    leader.disp.assign("w0", time.time())
    leader.progress(True)
    assert os.stat("runner/progress.json").st_ino != first  # replaced by rename, not rewritten
    assert json.loads(Path("runner/progress.json").read_text())["running"] == 1
    assert not [p for p in os.listdir("runner") if p.startswith(".tmp-")]


@pytest.mark.parametrize(("mangle", "why"), [
    (lambda t: t[: t.rindex("\n", 0, len(t) - 1) + 1], "header says"),   # last line lost
    (lambda t: t[:-5], "truncated"),                                     # cut mid-line
    (lambda t: t.replace('"phase": "cmd"', '"phase": "zzz"', 1), "phase"),
    (lambda t: t.replace('{"task_id": 1,', '{"task_id": 1 x', 1), "not JSON"),
    (lambda t: "garbage\n" + t, "header"),
])
def test_corrupt_plan_stops_the_job_before_any_task(tmp_path: Path, mangle: Any,
                                                    why: str) -> None:
    folder = job(tmp_path, [ptask(i, ["touch", f"ran.{i}"]) for i in range(3)])
    plan = folder / "plan.jsonl"
    plan.write_text(mangle(plan.read_text()))
    proc = runner(folder, "run", "--workers", "1", *FAST)
    assert proc.returncode == 2
    lines = [x for x in proc.stdout.splitlines() if "no task started" in x]
    assert len(lines) == 1 and why in lines[0] and "plan.jsonl" in lines[0]
    assert not list(folder.glob("ran.*")) and not (folder / "status").exists()
    work = runner(folder, "work", "--rank", "0", "--start-timeout", "5")
    assert work.returncode == 2 and "stopped the job" in work.stdout


def test_hung_task_killed_at_its_timeout_and_retried(tmp_path: Path) -> None:
    folder = job(tmp_path, [ptask(1, ["sleep", "60"], cost=0.3)])
    t0 = time.time()
    proc = runner(folder, "run", "--workers", "1", "--timeout-factor", "2", "--timeout-min", "0",
                  "--max-attempts", "2", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.time() - t0 < 50
    recs = [r for r in records(folder) if r["task_id"] == 1]
    assert [(r["attempt"], r["outcome"]) for r in recs] == [(1, "timeout"), (2, "timeout")]
    assert json.loads((folder / "status" / "1.json").read_text())["timeout"] is True
    assert progress(folder)["failed"] == 1


def test_walltime_guard_does_not_start_what_cannot_finish(tmp_path: Path) -> None:
    folder = job(tmp_path, [ptask(i, ["sleep", "1"], cost=1.0) for i in range(8)])
    end = time.time() + 4.0
    proc = runner(folder, "run", "--workers", "1", "--cores", "1", "--end", str(end),
                  "--margin", "0.5", "--poll", "0.02", "--heartbeat", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records(folder)
    ran = [r for r in recs if r["outcome"] == "ok"]
    late = [r for r in recs if r["outcome"] == "not_started"]
    assert ran and late and len(ran) + len(late) == 8
    assert all(r["t1"] <= end for r in recs if r.get("t1"))  # nothing ran into the end
    assert all(r["reason"] == "walltime" for r in late)
    assert not any((folder / "status" / f"{r['task_id']}.json").exists() for r in late)
    assert progress(folder)["not_started"] == len(late)


def _wait_for(pred: Any, timeout: float = 60.0) -> None:
    until = time.time() + timeout
    while not pred():
        assert time.time() < until, "timed out"
        time.sleep(0.05)


def test_killed_worker_tasks_are_rerun_by_the_others(tmp_path: Path) -> None:
    tasks = [ptask(i, ["sleep", "1.5"], cost=1.5) for i in range(6)]
    folder = job(tmp_path, tasks)
    common = ["--poll", "0.02", "--heartbeat", "0.2", "--lease", "2", "--margin", "1",
              "--walltime", "300", "--progress-every", "0.2"]
    lead = subprocess.Popen([sys.executable, "rbrunner.py", "lead", "--workers", "2", *common],
                            cwd=folder, stdout=subprocess.PIPE, text=True)
    _wait_for(lambda: (folder / "runner" / "leader.json").exists())
    workers = [subprocess.Popen([sys.executable, "rbrunner.py", "work", "--rank", str(r),
                                 "--cores", "2"], cwd=folder) for r in (0, 1)]
    try:
        _wait_for(lambda: '"op":"run"' in (folder / "runner" / "to.1.jsonl").read_text())
        os.kill(workers[1].pid, signal.SIGKILL)
        out, _ = lead.communicate(timeout=120)
    finally:
        for p in [*workers, lead]:
            if p.poll() is None:
                p.kill()
    assert lead.returncode == 0 and "worker 1" in out and "lost" in out
    recs = records(folder)
    lost = {r["task_id"] for r in recs if r["outcome"] == "lost"}
    assert lost
    ok = {r["task_id"]: r for r in recs if r["outcome"] == "ok"}
    assert set(ok) == set(range(6))
    assert all(ok[t]["rank"] == 0 for t in lost)
    assert progress(folder)["done"] == 6


def test_task_still_running_near_the_end_is_stopped_before_the_walltime(tmp_path: Path) -> None:
    folder = job(tmp_path, [ptask(1, ["sleep", "60"], cost=0.2)])
    end = time.time() + 4.0
    proc = runner(folder, "run", "--workers", "1", "--end", str(end), "--margin", "1",
                  "--timeout-min", "100", "--poll", "0.02", "--heartbeat", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.time() < end + 30  # the 60 s sleep did not run to its end
    recs = records(folder)
    assert [r["outcome"] for r in recs] == ["stopped_walltime", "not_started"]
    assert recs[0]["t1"] <= end and recs[1]["reason"] == "walltime"
    assert not (folder / "status" / "1.json").exists()
    assert progress(folder)["not_started"] == 1


def test_subset_runs_only_the_named_tasks(tmp_path: Path) -> None:
    """A retry's subset file: the runner starts just those tasks; a bad one stops it."""
    tasks = [ptask(0, ["true"], phase="pre", stage=0)]
    tasks += [ptask(i, ["sh", "-c", f"echo {i} > out.{i}"]) for i in range(1, 5)]
    folder = job(tmp_path, tasks)
    (folder / "retry.a2.tasks").write_text("# remotebridge.subset v1\n0\n2\n4\n")
    proc = runner(folder, "run", "--workers", "1", "--cores", "2", "--subset",
                  "retry.a2.tasks", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in folder.glob("out.*")) == ["out.2", "out.4"]
    assert progress(folder)["tasks"] == 3
    (folder / "retry.a3.tasks").write_text("# remotebridge.subset v1\n0\n9\n")
    proc = runner(folder, "run", "--workers", "1", "--cores", "2", "--subset",
                  "retry.a3.tasks", *FAST)
    assert proc.returncode == 2 and "not in the plan" in proc.stdout


def test_resubmitted_job_worker_waits_for_its_own_leader(tmp_path: Path) -> None:
    """The earlier submission's runner/leader.json (its end long past, one error) is still
    there when the new job's worker starts: the worker waits for its own job's leader
    instead of taking that stale one."""
    folder = job(tmp_path, [ptask(i, ["true"], cost=0.1) for i in range(3)])
    stale = {"format": "remotebridge.runner", "version": 1, "workers": 1,
             "end": time.time() - 3600, "poll": 0.02, "heartbeat": 0.2, "lease": 2,
             "margin": 1, "host": "old", "pid": 1, "job": "111",
             "error": "the earlier job's plan"}
    (folder / "runner").mkdir()
    (folder / "runner" / "leader.json").write_text(json.dumps(stale) + "\n")
    env = {**os.environ, "SLURM_JOB_ID": "222"}
    worker = subprocess.Popen([sys.executable, "rbrunner.py", "work", "--rank", "0",
                               "--cores", "2"], cwd=folder, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # the worker has seen the stale file by now
        assert worker.poll() is None, worker.communicate()[0]
        lead = subprocess.run([sys.executable, "rbrunner.py", "lead", "--workers", "1",
                               "--walltime", "300", *FAST], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
        assert lead.returncode == 0, lead.stdout + lead.stderr
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert json.loads((folder / "runner" / "leader.json").read_text())["job"] == "222"
    assert sorted(r["task_id"] for r in records(folder) if r["outcome"] == "ok") == [0, 1, 2]


def test_worker_gives_up_on_a_stale_leader_file_naming_both_jobs(tmp_path: Path) -> None:
    folder = job(tmp_path, [ptask(1, ["true"])])
    (folder / "runner").mkdir()
    (folder / "runner" / "leader.json").write_text(json.dumps({"job": "111"}) + "\n")
    proc = subprocess.run([sys.executable, "rbrunner.py", "work", "--start-timeout", "0.5"],
                          cwd=folder, env={**os.environ, "SLURM_JOB_ID": "222"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "still of job 111" in proc.stderr
    assert "job 222" in proc.stderr
