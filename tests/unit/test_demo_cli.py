"""``demo init`` / ``demo advance`` / ``demo programs`` through click."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from remotebridge.cli.context import AppContext
from remotebridge.cli.demo_cmd import demo
from remotebridge.db.engine import make_engine, read_session
from remotebridge.db.pipeline import ChipRun, RawExp


def _cli(db_url: str) -> click.Group:
    @click.group()
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def main(ctx: click.Context, as_json: bool) -> None:
        ctx.obj = AppContext(db_url=db_url, json=as_json)

    main.add_command(demo)
    return main


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("REMOTEBRIDGE_CONFIG", raising=False)
    monkeypatch.delenv("REMOTEBRIDGE_DB", raising=False)
    return tmp_path


def test_init_json_then_idempotent(env: Path) -> None:
    url = f"sqlite:///{env}/db.sqlite"
    cli, runner = _cli(url), CliRunner()
    args = ["--json", "demo", "init", "--exposures", "2", "--chips", "2", "--size", "64",
            "--dir", str(env / "s"), "--label", "L1", "--seed", "3"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert (data["exposures_created"], data["chips"], data["chip_runs_created"]) == (2, 2, 2)
    assert data["bytes_written"] > 0 and data["directory"] == str(env / "s")
    second = json.loads(runner.invoke(cli, args).output)
    assert (second["exposures_existing"], second["chip_runs_created"]) == (2, 0)
    with read_session(make_engine(url)) as s:
        assert s.scalar(select(func.count()).select_from(RawExp)) == 2
        assert set(s.scalars(select(ChipRun.label))) == {"L1"}


def test_init_default_dir_and_human_output(env: Path) -> None:
    cli = _cli(f"sqlite:///{env}/db.sqlite")
    res = CliRunner().invoke(cli, ["demo", "init", "--exposures", "1", "--chips", "1",
                                   "--size", "32"])
    assert res.exit_code == 0, res.output
    assert "exposures: 1 created" in res.output and "chipRuns:  1 created" in res.output
    assert (env / "data" / "remotebridge" / "demo-survey" / "raw").is_dir()


def test_advance_and_programs(env: Path) -> None:
    url = f"sqlite:///{env}/db.sqlite"
    cli, runner = _cli(url), CliRunner()
    assert runner.invoke(cli, ["demo", "init", "--exposures", "2", "--chips", "1", "--size",
                               "32", "--dir", str(env / "s")]).exit_code == 0
    res = runner.invoke(cli, ["--json", "demo", "advance", "--label", "demo"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"cam_runs": [], "warp_runs": [], "stack_runs": []}
    res = runner.invoke(cli, ["--json", "demo", "programs"])
    paths = json.loads(res.output)
    assert set(paths) == {"chip", "cam", "warp", "stack"}
    assert all(Path(p).is_file() for p in paths.values())
