"""The cron tick's driver-only question (remotebridge.quickdb): the same database as the
engine for every URL form it takes, the same answer as remotebridge.due, and the full
path (with its errors and exit codes) for everything else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, text

from remotebridge import config as cfgmod
from remotebridge import quickdb
from remotebridge.cli import remotetool
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import make_engine
from remotebridge.db.url import EXPECTED_FORMS
from remotebridge.due import pending_due, poll_due
from remotebridge.quickdb import Due
from tests.support.poll_runs import raw_config


def _config(tmp: Path, db_url: str, **site: Any) -> cfgmod.Config:
    return cfgmod.build(raw_config(tmp, **site), db_override=db_url)


@pytest.mark.parametrize("url", [
    "postgresql://ipp@dbhost/gpc1",
    "postgresql+psycopg2://ipp:s%40cret@dbhost:5433/gpc1?sslmode=require",
    "postgresql://:pw@dbhost/gpc1",
    "postgresql:///?service=gpc1",
    "postgresql://ipp@[::1]:5432/gpc%2F1?application_name=rb&connect_timeout=3",
    "postgresql://ipp@dbhost:0/gpc1",
    "postgresql://",
])
def test_postgresql_urls_connect_as_the_engine_would(url: str) -> None:
    engine = make_engine(url)
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    parsed = quickdb.parse(url)
    assert parsed is not None and parsed.backend is quickdb.Backend.POSTGRESQL
    assert args in ([], [""])
    assert parsed.params == {**kwargs, "connect_timeout": quickdb.PG_CONNECT_TIMEOUT}


@pytest.mark.parametrize("form", ["sqlite:///rel/rb.db", "sqlite:///{tmp}/rb%20x.db",
                                  "sqlite+pysqlite:///{tmp}/rb.db"])
def test_sqlite_urls_open_the_engines_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           form: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    url = form.format(tmp=tmp_path)
    args, _ = (engine := make_engine(url)).dialect.create_connect_args(engine.url)
    parsed = quickdb.parse(url)
    assert parsed is not None and parsed.backend is quickdb.Backend.SQLITE
    assert parsed.path == Path(args[0])


@pytest.mark.parametrize("url", [
    "notaurl", "u:pw@host/db", "bogus://u:pw@host/db", "postgresql://u:pw@host:port/db",
    "mysql://u@host/db", "sqlite://", "sqlite:///:memory:", "sqlite:///~/rb.db",
    "sqlite:////tmp/rb.db?mode=ro&uri=true", "postgresql://u@h/db?host=a&host=b",
    "postgresql+psycopg://u@h/db",
])
def test_other_forms_are_left_to_the_full_path(url: str) -> None:
    assert quickdb.parse(url) is None


def _runs(engine: Engine, *states: tuple[str, int, str]) -> None:
    rows = [{"remote_id": i + 1, "stage": "chip", "label": label, "site": "demo",
             "state": st, "path_base": "/nonexistent",
             "last_poll": utcnow() - timedelta(seconds=age)}
            for i, (st, age, label) in enumerate(states)]
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), rows)


@pytest.mark.parametrize("states", [
    [],
    [("new", 0, "a"), ("run", 5, "a"), ("full", 0, "a")],
    [("pending", 0, "a")],
    [("run", 5, "a"), ("run", 900, "b")],
    [("run", 5, "a"), ("auth", 0, "b")],
])
def test_the_answers_agree_with_the_full_path(engine: Engine, db_url: str, tmp_path: Path,
                                              states: list[tuple[str, int, str]]) -> None:
    if states:
        _runs(engine, *states)
    cfg = _config(tmp_path, db_url, poll_interval=600)
    for label in (None, "a", "b"):
        quick = quickdb.exec_due(cfg, label=label)
        assert (quick is Due.MAYBE) == pending_due(engine, label=label), (label, states)
        for force in (False, True):
            quick = quickdb.poll_due(cfg, label=label, force=force)
            assert (quick is Due.MAYBE) == poll_due(engine, cfg, label=label, force=force)


def test_an_unknown_run_id_or_an_outdated_schema_is_left_to_the_full_path(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    cfg = _config(tmp_path, db_url, poll_interval=600)
    assert quickdb.exec_due(cfg) is Due.NOTHING
    assert quickdb.exec_due(cfg, remote_id=999) is Due.MAYBE
    assert quickdb.poll_due(cfg, remote_id=999) is Due.MAYBE
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        assert quickdb.exec_due(cfg) is Due.MAYBE and quickdb.poll_due(cfg) is Due.MAYBE
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"),
                         {"v": quickdb.SCHEMA_REVISION})


def test_a_missing_sqlite_file_or_an_unreachable_server_is_maybe(tmp_path: Path) -> None:
    assert quickdb.exec_due(_config(tmp_path, f"sqlite:///{tmp_path}/none.db")) is Due.MAYBE
    assert not (tmp_path / "none.db").exists(), "nothing created"
    down = _config(tmp_path, "postgresql://u@127.0.0.1:1/db")
    assert quickdb.poll_due(down) is Due.MAYBE


def _rt(*args: str) -> Any:
    return CliRunner().invoke(remotetool.main, list(args), prog_name="remotetool")


@pytest.mark.parametrize("command", ["exec", "poll"])
def test_the_tick_keeps_its_errors(tmp_path: Path, isolated_env: str, db_url: str,
                                   command: str) -> None:
    bad = _rt("--db", "notaurl", command)
    assert bad.exit_code == ExitCode.CONFIG and EXPECTED_FORMS in bad.stderr
    assert len(bad.stderr.splitlines()) == 2
    missing = _rt("--db", db_url, command, "--remote-id", "999")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "no remote run with remote_id 999" in missing.stderr
    empty = _rt("--db", f"sqlite:///{tmp_path}/empty.db", command)
    assert empty.exit_code == ExitCode.CONFIG and "remotetool db upgrade" in empty.stderr
