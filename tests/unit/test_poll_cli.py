"""poll's CLI: runs sent to error are reported on stderr even under --quiet (exit 1);
an unknown --remote-id is NotFoundError (exit 3)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from remotebridge.cli.context import AppContext
from remotebridge.cli.exitcodes import exit_code_for
from remotebridge.cli.poll_cmd import poll
from remotebridge.errors import NotFoundError
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_runs import (
    finished_job,
    get,
    raw_config,
    toml_site,
)


def test_error_reported_under_quiet(engine: Engine, db_url: str, tmp_path: Path) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    (job_dir / "job_summary.jsonl").write_text("not json\n")
    cfg = tmp_path / "good.toml"
    cfg.write_text(toml_site(raw_config(tmp_path)["site"]["demo"]))
    r = CliRunner().invoke(poll, ["--force"],
                           obj=AppContext(config_path=str(cfg), db_url=db_url, quiet=True))
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"remotetool: error: remote run {rid}: fault 32: "), lines
    assert "job_summary.jsonl line 1" in lines[0]
    assert lines[1].startswith("  hint: ") and f"remotetool revert {rid}" in lines[1]
    assert len(lines) == 2 and r.stdout == ""
    assert get(engine, rid).state == "error"


def test_unknown_remote_id(engine: Engine, db_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "good.toml"
    cfg.write_text(toml_site(raw_config(tmp_path)["site"]["demo"]))
    r = CliRunner().invoke(poll, ["--remote-id", "999"],
                           obj=AppContext(config_path=str(cfg), db_url=db_url))
    # the program's error handler (cli/base.py) maps it to exit 3
    assert isinstance(r.exception, NotFoundError), (r.exit_code, r.output, r.exception)
    assert exit_code_for(r.exception) == 3
