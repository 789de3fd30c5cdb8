"""remotetool logs on the local site: the real local scheduler and demo programs; one
remote call per request, bounded, with control characters escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from remotebridge.cli.remotetool import main
from remotebridge.errors import LinkDown, Refused
from remotebridge.tasklogs import LogRequest, keep_home, parse_answer, run_logs
from tests.support.demo_runs import control_fixture, demo_env, down_config
from tests.support.poll_runs import config, prepared_run, submit, wait_job

_env = demo_env
control = control_fixture("rbl")


def _plan(tmp: Path, rid: int) -> list[dict[str, object]]:
    text = (tmp / "jobs" / f"remote_{rid}" / "plan.jsonl").read_text().splitlines()[1:]
    return [json.loads(line) for line in text]


def _failed_run(engine: Engine, tmp: Path) -> tuple[int, list[int]]:
    """An ended chip run one of whose tasks failed (a corrupt raw image); the ids of
    the tasks of that chip."""
    rid = prepared_run(engine, tmp, corrupt=1)
    job_id = submit(engine, tmp, rid)
    wait_job(tmp, job_id)
    bad = [int(str(t["task_id"])) for t in _plan(tmp, rid) if t["stage_id"] == 1 and t["log"]]
    return rid, bad


def _cli(db_url: str, tmp: Path, *args: str) -> tuple[int, str]:
    cfg = tmp / "rb.toml"
    cfg.write_text(f'[site.demo]\nkind = "local"\nscheduler = "local"\n'
                   f'local_root = "{tmp / "remote side"}"\ncores_per_node = 4\n'
                   f'bundle_bytes = 100000\nmax_attempts = 2\n')
    res = CliRunner().invoke(main, ["--db", db_url, "--config", str(cfg), *args])
    return res.exit_code, res.output


def test_logs_of_an_ended_run_show_the_failed_tasks_and_the_job_output(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    rid, bad = _failed_run(engine, tmp_path)
    answer = run_logs(engine, config(tmp_path), rid, LogRequest())
    labels = [f.label for f in answer.files]
    assert "job" in labels, labels
    tasks = sorted(f.task_id for f in answer.files if f.task_id is not None)
    assert tasks and set(tasks) <= set(bad), (tasks, bad)  # only failed ones
    # one task, tail bound
    one = run_logs(engine, config(tmp_path), rid,
                   LogRequest(task=tasks[0], failed=False, job=False, tail=1))
    assert [f.task_id for f in one.files] == [tasks[0]]
    assert one.files[0].text.count("\n") <= 1
    # the total cap: nothing beyond it is sent
    capped = run_logs(engine, config(tmp_path), rid, LogRequest(failed=False, total=10))
    assert sum(len(f.text.encode()) for f in capped.files) <= 10
    assert any(f.cut for f in capped.files)
    code, out = _cli(db_url, tmp_path, "logs", str(rid))
    assert code == 0 and "==> job " in out and f"==> task:{tasks[0]} " in out, out


def test_log_text_is_escaped_before_the_terminal(engine: Engine, db_url: str,
                                                 tmp_path: Path) -> None:
    rid, bad = _failed_run(engine, tmp_path)
    log = next(str(t["log"]) for t in _plan(tmp_path, rid) if t["task_id"] == bad[0])
    path = Path(log) if Path(log).is_absolute() else \
        tmp_path / "remote side" / f"remote_{rid}" / log
    path.write_bytes(b"evil \x1b[2J\x1b]0;title\x07 \r end\n")
    code, out = _cli(db_url, tmp_path, "logs", str(rid), "--task", str(bad[0]))
    assert code == 0, out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "evil \\x1b[2J\\x1b]0;title\\x07 \\x0d end" in out


def test_logs_refused_before_submission_and_link_down_says_so(
        engine: Engine, db_url: str, tmp_path: Path, control: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    with pytest.raises(Refused, match="not been submitted"):
        run_logs(engine, config(tmp_path), rid, LogRequest())
    assert _cli(db_url, tmp_path, "logs", str(rid))[0] == 3
    job_id = submit(engine, tmp_path, rid)
    wait_job(tmp_path, job_id)
    with pytest.raises(LinkDown):
        run_logs(engine, down_config(tmp_path, control), rid, LogRequest())


def test_parse_answer_keeps_frames_and_stops_at_garbage(tmp_path: Path) -> None:
    data = (b"file 3 10 task:4 /o/4.log\nabc" b"gone - - task:5 /o/5.log\n"
            b"cut 0 99 job job.1.out\n" b"nodir\n" b"file 999 999 job x\nshort")
    ans = parse_answer(data)
    assert ans.folder_missing
    assert [(f.label, f.text, f.missing, f.cut) for f in ans.files] == [
        ("task:4", "abc", False, False), ("task:5", "", True, False),
        ("job", "", False, True), ("job", "short", False, True)]
    assert parse_answer(b"junk line\nfile 3 3 job y\nabc").files == []
    folder = tmp_path / "remote_1"
    folder.mkdir()
    assert keep_home(folder, ans) == ["logs/task-4.log", "logs/x"]
    assert (folder / "logs" / "task-4.log").read_text() == "abc"


def test_poll_brings_the_failed_logs_home_and_show_names_them(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    from remotebridge.poll import poll_until

    rid = prepared_run(engine, tmp_path, corrupt=1)
    submit(engine, tmp_path, rid)
    out = poll_until(engine, config(tmp_path), wait=120, remote_id=rid, pause=0.5)
    assert out[-1].action == "retry", out
    logs = tmp_path / "jobs" / f"remote_{rid}" / "logs"
    names = sorted(p.name for p in logs.iterdir())
    assert any(n.startswith("task-") for n in names), names
    assert any(n.startswith("rb_local.") for n in names), names
    bad = {int(str(t["task_id"])) for t in _plan(tmp_path, rid) if t["stage_id"] == 1}
    assert {int(n[5:-4]) for n in names if n.startswith("task-")} <= bad
    assert all((logs / n).stat().st_size <= 64 << 10 for n in names)
    code, shown = _cli(db_url, tmp_path, "show", str(rid))
    assert code == 0 and "logs at home" in shown and "logs/task-" in shown, shown
