"""control-tool pause / resume: kept in the database, honoured when exec and poll claim."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert

from remotebridge.cli.control import main
from remotebridge.db import pause as pausedb
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.db.statemachine import claim
from remotebridge.states import RunState


def add_run(engine: Engine, rid: int, state: RunState, site: str) -> int:
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), [{"remote_id": rid, "stage": "chip", "label": "L",
                                          "site": site, "state": state.value,
                                          "path_base": "/x", "note": ""}])
    return rid


def claim_ids(engine: Engine, state: RunState) -> list[int]:
    with write_session(engine) as s:
        return claim(s, state, limit=10)


@pytest.mark.parametrize("state", [RunState.PENDING, RunState.RUN])
def test_paused_site_runs_are_not_claimed_until_resume(engine: Engine, state: RunState) -> None:
    add_run(engine, 1, state, "far")
    add_run(engine, 2, state, "other")
    with write_session(engine) as s:
        pausedb.pause(s, "far", default_site=False, reason="disk swap", by="alice")
    assert claim_ids(engine, state) == [2]  # the other site goes on
    with write_session(engine) as s:
        assert pausedb.resume(s, "far") is not None
    assert claim_ids(engine, state) == [1]


def test_pause_of_the_default_site_covers_runs_without_a_site(engine: Engine) -> None:
    add_run(engine, 1, RunState.PENDING, "")
    with write_session(engine) as s:
        pausedb.pause(s, "far", default_site=True, reason="", by="alice")
    assert claim_ids(engine, RunState.PENDING) == []


def test_prepare_is_not_paused(engine: Engine) -> None:
    add_run(engine, 1, RunState.NEW, "far")
    with write_session(engine) as s:
        pausedb.pause(s, "far", default_site=False, reason="", by="alice")
    assert claim_ids(engine, RunState.NEW) == [1]


@pytest.fixture
def cfg_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "config.toml"
    path.write_text(f'default_site = "demo"\n[site.demo]\nkind = "local"\n'
                    f'local_root = "{tmp_path / "side"}"\n')
    return path


def tool(cfg: Path, url: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--config", str(cfg), "--db", url, *args])
    return r.exit_code, r.stdout


def test_pause_twice_and_resume_twice_are_idempotent_and_say_so(cfg_file: Path,
                                                                 db_url: str) -> None:
    code, out = tool(cfg_file, db_url, "pause", "--reason", "site maintenance")
    assert code == 0 and "demo: paused" in out and "site maintenance" in out
    code, out = tool(cfg_file, db_url, "pause", "--reason", "another")
    assert code == 0 and "already paused (unchanged)" in out and "site maintenance" in out
    code, out = tool(cfg_file, db_url, "--json", "pause")
    assert json.loads(out)["changed"] is False
    code, out = tool(cfg_file, db_url, "resume")
    assert code == 0 and "demo: resumed" in out
    code, out = tool(cfg_file, db_url, "resume")
    assert code == 0 and "was not paused (unchanged)" in out


def test_check_shows_the_pause_and_its_reason(cfg_file: Path, db_url: str) -> None:
    tool(cfg_file, db_url, "pause", "--reason", "disk swap")
    code, out = tool(cfg_file, db_url, "check")
    assert code == 0 and "PAUSED" in out and "disk swap" in out
    code, out = tool(cfg_file, db_url, "--json", "check")
    assert json.loads(out)[0]["pause"]["reason"] == "disk swap"


def test_list_shows_the_pause_and_its_reason(cfg_file: Path, db_url: str) -> None:
    from remotebridge.cli.remotetool import main as remotetool

    tool(cfg_file, db_url, "pause", "--reason", "disk swap")
    r = CliRunner().invoke(remotetool, ["--config", str(cfg_file), "--db", db_url, "list"])
    assert r.exit_code == 0 and "site demo PAUSED" in r.stderr and "disk swap" in r.stderr
    tool(cfg_file, db_url, "resume")
    r = CliRunner().invoke(remotetool, ["--config", str(cfg_file), "--db", db_url, "list"])
    assert "PAUSED" not in r.stderr


def test_exec_takes_no_run_of_a_paused_site(engine: Engine, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from remotebridge import config as cfgmod
    from remotebridge.demo.generate import init_survey
    from remotebridge.exec import exec_runs
    from tests.support.demo_runs import VENV_BIN, define_and_prepare, local_site, run_row

    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    cfg = cfgmod.build({"site": {"demo": local_site(tmp_path)}})
    rid = define_and_prepare(engine, cfg, tmp_path, limit=1)
    with write_session(engine) as s:
        pausedb.pause(s, "demo", default_site=True, reason="", by="alice")
    assert exec_runs(engine, cfg) == []
    assert run_row(engine, rid).state == "pending"
    with write_session(engine) as s:
        pausedb.resume(s, "demo")
    assert [o.result for o in exec_runs(engine, cfg)] == ["run"]
