"""Output that means the same everywhere: tab-separated lines in pipes, rich tables
at a terminal, --quiet silent when all is well, config show without a file, and the
list table at 80 columns."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from sqlalchemy import Engine, update

from remotebridge import jobfolder as jf
from remotebridge.cli import remotetool
from remotebridge.cli.context import AppContext
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.poll.progress import parse_progress
from remotebridge.runs import RunRecord, progress_of
from tests.support.db import add_chipruns


def rt(*args: str) -> Result:
    return CliRunner().invoke(remotetool.main, list(args), catch_exceptions=False)


def _local_cfg(tmp: Path) -> Path:
    (tmp / "rs").mkdir(exist_ok=True)
    cfg = tmp / "rb.toml"
    cfg.write_text(f'[site.demo]\nkind = "local"\nscheduler = "local"\n'
                   f'local_root = "{tmp / "rs"}"\n')
    return cfg


def test_piped_site_check_prints_tab_separated_rows(tmp_path: Path, isolated_env: str) -> None:
    res = rt("--config", str(_local_cfg(tmp_path)), "site", "check")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines and all(len(line.split("\t")) == 4 for line in lines), res.output
    assert "┃" not in res.output and "│" not in res.output
    assert {line.split("\t")[2] for line in lines} == {"ok"}


def test_quiet_site_check_prints_nothing_when_all_is_well(tmp_path: Path,
                                                          isolated_env: str) -> None:
    res = rt("--quiet", "--config", str(_local_cfg(tmp_path)), "site", "check")
    assert res.exit_code == 0 and res.output == ""


def test_config_show_without_a_file_shows_the_url_in_use(tmp_path: Path,
                                                        isolated_env: str) -> None:
    res = CliRunner().invoke(remotetool.main, ["config", "show"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["database"]["url"].startswith("sqlite:///")
    assert data["database"]["url"].endswith("remotebridge.db")
    assert data["file_read"] is False
    assert "no configuration file was read" in res.stderr


def test_config_show_masks_the_password_in_use(tmp_path: Path, isolated_env: str) -> None:
    res = CliRunner().invoke(remotetool.main, ["--db", "postgresql://u:sekrit@h/db",
                                               "--json", "config", "show"])
    data = json.loads(res.stdout)
    assert "sekrit" not in res.stdout and data["database"]["url"].startswith("postgresql://u:")
    assert data["database"]["url_source"] == "--db"


def _record(job: str, label: str = "survey.2026.night-label") -> RunRecord:
    return RunRecord(12345, "chip", label, "cluster-north", "run", job, "/x", 0, 1, 1200,
                     None, datetime(2026, 3, 4, 5, 6), progress="17/1200")


@pytest.mark.parametrize("job", ["12345678", "12345678.sdb", "4123456789012"])
def test_list_table_keeps_job_ids_whole_at_80_columns(job: str) -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(remotetool.runs_table([_record(job)], 80))
    text = console.export_text()
    assert job in text, text
    assert "03-04 05:06" in text and "17/1200" in text and "12345" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_progress_reads_what_poll_stores() -> None:
    """``list``'s done/total from the stored runner progress: total is the plan's task
    count, tasks not started at the walltime included."""
    stored = parse_progress(json.dumps(
        {"format": jf.PROGRESS.format, "version": jf.PROGRESS.version, "done": 5,
         "failed": 1, "running": 0, "left": 0, "not_started": 4, "tasks": 10}).encode())
    assert progress_of(SimpleNamespace(progress=stored)) == "5/10"
    assert progress_of(SimpleNamespace(progress=json.dumps(
        {"done": 5, "failed": 1, "running": 0, "left": 0, "not_started": 4}))) == "5/10"


def test_progress_is_read_defensively() -> None:
    assert progress_of(SimpleNamespace()) is None
    assert progress_of(SimpleNamespace(progress={"done": 3, "total": 10})) == "3/10"
    assert progress_of(SimpleNamespace(progress=json.dumps(
        {"done": 3, "failed": 1, "running": 2, "left": 4}))) == "3/10"
    assert progress_of(SimpleNamespace(progress="not json")) is None
    assert progress_of(SimpleNamespace(tasks_done=2, tasks_total=5)) == "2/5"
    assert progress_of(SimpleNamespace(tasks_done=2, tasks_total=0)) is None


def test_labels_piped_tabs_and_a_table_at_a_terminal(engine: Engine, db_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    add_chipruns(engine, "lbl", 3)
    piped = rt("--db", db_url, "labels")
    assert piped.output.splitlines() == ["chip\tlbl\tready=3\tin_remote=0\ttotal=3"]
    monkeypatch.setattr(AppContext, "interactive", property(lambda self: True))
    shown = rt("--db", db_url, "labels")
    assert "\t" not in shown.output and "in remote" in shown.output and "lbl" in shown.output


def test_list_piped_ends_with_progress(engine: Engine, db_url: str) -> None:
    add_chipruns(engine, "lbl", 2)
    assert rt("--db", db_url, "definebyquery", "-l", "lbl", "-s", "chip").exit_code == 0
    line = rt("--db", db_url, "list").output.splitlines()[0].split("\t")
    assert len(line) == 9 and line[4] == "new" and line[-1] == "-"


def test_show_gives_phases_and_the_estimated_end_of_a_running_run(engine: Engine, db_url: str
                                                                   ) -> None:
    """Started 04:00, 3 done by 05:00 (20 min a task), 4 left and 2 running: 07:00."""
    add_chipruns(engine, "lbl", 2)
    assert rt("--db", db_url, "definebyquery", "-l", "lbl", "-s", "chip").exit_code == 0
    stored = parse_progress(json.dumps(
        {"format": jf.PROGRESS.format, "version": jf.PROGRESS.version, "done": 3,
         "failed": 0, "running": 2, "left": 4, "not_started": 0, "tasks": 9,
         "at": "2026-12-01T05:00:00+00:00", "started": "2026-12-01T04:00:00+00:00",
         "end": "2026-12-01T08:00:00+00:00",
         "phases": {"cmd": {"tasks": 7, "done": 3, "elapsed": 2700.0}}}).encode())
    with write_session(engine) as s:
        s.execute(update(RemoteRun).values(state="run", job_id="7", progress=stored))
    text = rt("--db", db_url, "show", "1").output
    assert "estimated end 2026-12-01T07:00:00+00:00" in text and "walltime" not in text
    assert "phases cmd 3/7 (2700.0 s)" in text
    shown = json.loads(rt("--db", db_url, "--json", "show", "1").stdout)
    assert shown["progress"]["estimated_end"] == "2026-12-01T07:00:00+00:00"
    assert shown["progress"]["done"] == 3


def test_stages_piped_tab_separated(db_url: str, isolated_env: str) -> None:
    lines = rt("--db", db_url, "stages").output.splitlines()
    assert lines and all(len(line.split("\t")) == 3 for line in lines)


@pytest.mark.parametrize("note", ["[bold]x[/bold] y", "retry [1/3] of [red]", "[/]", "a\\[b]"])
def test_show_prints_a_remote_note_as_it_is(engine: Engine, db_url: str, note: str) -> None:
    """A note is the site's words: text like ``[bold]`` or ``[/]`` is data, printed
    verbatim (rich would drop it as a style tag, or fail on a closing tag)."""
    add_chipruns(engine, "lbl", 1)
    assert rt("--db", db_url, "definebyquery", "-l", "lbl", "-s", "chip").exit_code == 0
    with write_session(engine) as s:
        s.execute(update(RemoteRun).values(note=note))
    assert note in rt("--db", db_url, "show", "1").output


@pytest.mark.parametrize("label", ["[bold]night[/bold]", "n[/]", "[x]"])
def test_list_table_prints_markup_looking_labels_as_they_are(label: str) -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(remotetool.runs_table([_record("7", label)], 120))
    assert label in console.export_text()
