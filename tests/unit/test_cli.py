"""remotetool end to end through click: output shapes, exit codes, help and docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from remotebridge.cli import control, remotetool
from remotebridge.cli.exitcodes import ExitCode
from tests.support.db import add_chipruns

README = Path(__file__).resolve().parents[2] / "README.md"


def rt(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(remotetool.main, ["--db", db_url, *args], catch_exceptions=False)


def test_definebyquery_prints_id_once_then_nothing(engine: Engine, db_url: str,
                                                   isolated_env: str) -> None:
    add_chipruns(engine, "L1", 5)
    first = rt(db_url, "definebyquery", "-l", "L1", "-s", "chip", "--limit", "3")
    assert (first.exit_code, first.stdout.strip()) == (0, "1")
    second = rt(db_url, "definebyquery", "-l", "L1", "-s", "chip")
    assert (second.exit_code, second.stdout.strip()) == (0, "2")
    third = rt(db_url, "definebyquery", "-l", "L1", "-s", "chip")
    assert (third.exit_code, third.stdout) == (0, ""), "quiet when nothing happens"
    listed = json.loads(rt(db_url, "--json", "list").stdout)
    assert [(r["remote_id"], r["components"], r["state"]) for r in listed] == \
        [(1, 3, "new"), (2, 2, "new")]
    assert {"remote_id", "stage", "label", "state", "job_id"} <= set(listed[0])


def test_later_stage_of_a_known_label_is_quiet(engine: Engine, db_url: str,
                                               isolated_env: str) -> None:
    """Cron asks for every stage every round: a stage the pipeline has not reached yet
    for a label it knows is "nothing to do" (exit 0, no output), not an error."""
    add_chipruns(engine, "K", 2)
    for stage in ("cam", "warp", "stack"):
        r = rt(db_url, "definebyquery", "-l", "K", "-s", stage)
        assert (r.exit_code, r.stdout, r.stderr) == (0, "", ""), stage
        r = rt(db_url, "--quiet", "definebyquery", "-l", "K", "-s", stage)
        assert (r.exit_code, r.stdout) == (0, ""), stage
    assert json.loads(rt(db_url, "--json", "list").stdout) == []
    typo = rt(db_url, "definebyquery", "-l", "KK", "-s", "cam")
    assert typo.exit_code == ExitCode.NOT_FOUND and "'KK'" in typo.stderr


def test_pretend_defines_nothing(engine: Engine, db_url: str, isolated_env: str) -> None:
    add_chipruns(engine, "P", 4)
    out = json.loads(rt(db_url, "--json", "definebyquery", "-l", "P", "-s", "chip",
                        "--pretend").stdout)
    assert out["components"] == 4 and out["remote_id"] is None
    assert json.loads(rt(db_url, "--json", "list").stdout) == []


def test_show_json_has_components_and_history(engine: Engine, db_url: str,
                                              isolated_env: str) -> None:
    add_chipruns(engine, "S", 2)
    rt(db_url, "definebyquery", "-l", "S", "-s", "chip")
    shown = json.loads(rt(db_url, "--json", "show", "1").stdout)
    assert [c["stage_id"] for c in shown["component_list"]] == [1, 2]
    assert shown["history"][0]["to"] == "new"


def test_cancel_then_redefine(engine: Engine, db_url: str, isolated_env: str) -> None:
    add_chipruns(engine, "C", 2)
    rt(db_url, "definebyquery", "-l", "C", "-s", "chip")
    assert rt(db_url, "cancel", "1").exit_code == 0
    again = rt(db_url, "definebyquery", "-l", "C", "-s", "chip")
    assert again.stdout.strip() == "2", "cancelled components are free again"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["definebyquery", "-l", "nope", "-s", "chip"], ExitCode.NOT_FOUND,
         "no stage run has label 'nope'"),
        (["definebyquery", "-l", "x", "-s", "moon"], ExitCode.USAGE, "moon"),
        (["show", "42"], ExitCode.NOT_FOUND, "no remote run with remote_id 42"),
        (["revert", "1"], ExitCode.NOT_FOUND, "only runs in state 'error'"),
        (["cancel", "1"], ExitCode.NOT_FOUND, "cannot move it to 'cancelled'"),
    ],
)
def test_bad_input_exit_codes_and_nothing_changes(engine: Engine, db_url: str,
                                                  isolated_env: str, args: list[str],
                                                  code: ExitCode, needle: str) -> None:
    add_chipruns(engine, "B", 1)
    rt(db_url, "definebyquery", "-l", "B", "-s", "chip")
    from remotebridge.db.engine import write_session
    from remotebridge.db.statemachine import transition
    from remotebridge.states import RunState
    with write_session(engine) as s:  # a run in 'full' refuses revert and cancel
        transition(s, 1, RunState.NEW, RunState.PENDING)
        transition(s, 1, RunState.PENDING, RunState.RUN)
        transition(s, 1, RunState.RUN, RunState.FULL)
    before = rt(db_url, "--json", "show", "1").stdout
    res = CliRunner().invoke(remotetool.main, ["--db", db_url, *args])
    assert res.exit_code == code, res.output
    assert needle in res.stderr
    assert rt(db_url, "--json", "show", "1").stdout == before


def test_outdated_schema_and_unreachable_database(tmp_path: Path, isolated_env: str) -> None:
    fresh = f"sqlite:///{tmp_path / 'empty.db'}"
    res = CliRunner().invoke(remotetool.main, ["--db", fresh, "list"])
    assert res.exit_code == ExitCode.CONFIG and "remotetool db upgrade" in res.stderr
    dead = "postgresql://postgres@127.0.0.1:1/none"
    res = CliRunner().invoke(remotetool.main, ["--db", dead, "list"])
    assert res.exit_code == ExitCode.TEMPORARY and "unavailable" in res.stderr
    assert CliRunner().invoke(remotetool.main, ["--db", fresh, "db", "upgrade"]).exit_code == 0
    assert CliRunner().invoke(remotetool.main, ["--db", fresh, "list"]).exit_code == 0


def test_malformed_config_exit_code(tmp_path: Path, isolated_env: str) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[site.a]\nkind = 'telnet'\n")
    res = CliRunner().invoke(remotetool.main, ["--config", str(bad), "config", "show"])
    assert res.exit_code == ExitCode.CONFIG
    assert "site.a.kind" in res.stderr and str(bad) in res.stderr


def _walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        path = f"{prefix} {name}"
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_walk(cmd, path))
    return out


ALL_COMMANDS = _walk(remotetool.main, "remotetool") + _walk(control.main, "control-tool")


@pytest.mark.parametrize(("path", "cmd"), ALL_COMMANDS, ids=[p for p, _ in ALL_COMMANDS])
def test_every_command_has_help_and_is_documented(path: str, cmd: click.Command) -> None:
    assert cmd.help and len(cmd.help.strip()) > 20, f"{path} needs a help text"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path} {param.opts[0]} needs help"
    top = path.split()[0]
    root = remotetool.main if top == "remotetool" else control.main
    res = CliRunner().invoke(root, [*path.split()[1:], "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output
    assert re.search(rf"`{re.escape(path)}\b", README.read_text()), \
        f"README does not document `{path}`"


def test_every_exit_code_is_documented() -> None:
    text = README.read_text()
    for code in ExitCode:
        assert re.search(rf"^\|\s*{int(code)}\s*\|", text, re.M), f"exit code {code} not in README"


@pytest.mark.parametrize(
    ("db", "code", "needle"),
    [
        ("bogus://x", ExitCode.CONFIG, "not a usable database URL"),
        ("mysql://u@h/x", ExitCode.CONFIG, "not a usable database URL"),
        ("postgresql://postgres@127.0.0.1:5432/rb_no_such_db", ExitCode.CONFIG,
         "does not exist"),
        ("sqlite:///{file}/sub.db", ExitCode.CONFIG, "is not a folder"),
    ],
)
def test_unusable_databases_give_one_line_not_a_traceback(
        tmp_path: Path, isolated_env: str, db: str, code: ExitCode, needle: str) -> None:
    (tmp_path / "afile").write_text("")
    res = CliRunner().invoke(remotetool.main,
                             ["--db", db.format(file=tmp_path / "afile"), "db", "upgrade"],
                             prog_name="remotetool")
    assert res.exit_code == code, res.output
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("remotetool: error: ") and "hint:" in res.stderr


def test_a_command_before_db_upgrade_creates_no_database_file(tmp_path: Path,
                                                              isolated_env: str) -> None:
    db = tmp_path / "never.db"
    res = CliRunner().invoke(remotetool.main, ["--db", f"sqlite:///{db}", "list"])
    assert res.exit_code == ExitCode.CONFIG
    assert not db.exists(), "a failing command changes nothing"
