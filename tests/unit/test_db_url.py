"""Database URLs at the command line: masked everywhere, one line when unusable, SQLite
folders not invented, and a warning for a readable config file holding a password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from remotebridge.cli import remotetool
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.db.url import EXPECTED_FORMS, has_password, mask_url, scrub

SECRET = "Zq8secretW"


def rt(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(remotetool.main, list(args), env=env, prog_name="remotetool",
                              catch_exceptions=False)


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql://ipp:{SECRET}@dbhost/gpc1", "postgresql://ipp:***@dbhost/gpc1"),
    (f"postgresql+psycopg2://ipp:{SECRET}@dbhost:5433/gpc1?sslmode=require",
     "postgresql+psycopg2://ipp:***@dbhost:5433/gpc1?sslmode=require"),
    (f"postgresql://:{SECRET}@dbhost/gpc1", "postgresql://:***@dbhost/gpc1"),
    (f"postgresql://ipp@dbhost/gpc1?password={SECRET}&x=1",
     "postgresql://ipp@dbhost/gpc1?password=***&x=1"),
    (f"postgresql://ipp:a@b/{SECRET}@dbhost/gpc1", "postgresql://ipp:***@dbhost/gpc1"),
    (f"u:{SECRET}@garbage/x", "u:***@garbage/x"),
    ("notaurl", "notaurl"),
    ("postgresql://ipp@dbhost/gpc1", "postgresql://ipp@dbhost/gpc1"),
    ("postgresql:///?service=gpc1", "postgresql:///?service=gpc1"),
    ("sqlite:////home/ipp/rb.db", "sqlite:////home/ipp/rb.db"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown and SECRET not in mask_url(url)


def test_scrub_masks_password_pieces_a_driver_quotes() -> None:
    url = f"postgresql://u:{SECRET}@ab/cd@dbhost/x"
    assert scrub(f'could not translate host name "{SECRET}"', url) == \
        'could not translate host name "***"'


@pytest.mark.parametrize("how", ["--db", "env", "file"])
@pytest.mark.parametrize("as_json", [False, True])
def test_config_show_masks_the_password_from_every_source(
        tmp_path: Path, isolated_env: str, how: str, as_json: bool) -> None:
    url = f"postgresql://ipp:{SECRET}@dbhost/gpc1"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n' if how == "file" else "")
    cfg.chmod(0o600)
    args = ["--config", str(cfg), *(["--db", url] if how == "--db" else [])]
    res = rt(*args, *(["--json"] if as_json else []), "config", "show",
             env={"REMOTEBRIDGE_DB": url} if how == "env" else None)
    assert res.exit_code == 0, res.output
    assert SECRET not in res.stdout + res.stderr
    assert json.loads(res.stdout)["database"]["url"] == "postgresql://ipp:***@dbhost/gpc1"


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_readable_config_file_with_a_password_warns_once(
        tmp_path: Path, isolated_env: str, mode: int, warned: bool) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db?password={SECRET}"\n')
    cfg.chmod(mode)
    res = rt("--config", str(cfg), "config", "show")
    assert res.exit_code == 0, "the command still runs"
    lines = res.stderr.splitlines()
    if warned:
        assert len(lines) == 1 and lines[0].startswith("remotetool: warning: ")
        assert str(cfg) in lines[0] and f"chmod 600 {cfg}" in lines[0]
    else:
        assert lines == []
    assert SECRET not in res.stdout + res.stderr


def test_readable_config_file_without_a_password_is_fine(tmp_path: Path,
                                                         isolated_env: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[database]\nurl = "postgresql://ipp@dbhost/gpc1"\n')
    cfg.chmod(0o644)
    res = rt("--config", str(cfg), "config", "show")
    assert res.exit_code == 0 and res.stderr == ""


@pytest.mark.parametrize(("args", "env", "source"), [
    (["--db", "notaurl"], None, "--db"),
    ([], {"REMOTEBRIDGE_DB": "garbage"}, "$REMOTEBRIDGE_DB"),
    (["--db", f"u:{SECRET}@host/db"], None, "--db"),
    (["--db", f"postgresql://u:{SECRET}@host:port/db"], None, "--db"),
    (["--db", f"bogus://u:{SECRET}@host/db"], None, "--db"),
])
@pytest.mark.parametrize("command", [["list"], ["db", "upgrade"], ["db", "status"]])
def test_a_bad_url_is_one_line_naming_it_and_the_expected_forms(
        isolated_env: str, args: list[str], env: dict[str, str] | None, source: str,
        command: list[str]) -> None:
    res = rt(*args, *command, env=env)
    assert res.exit_code == ExitCode.CONFIG
    error, hint = res.stderr.splitlines()
    assert error.startswith(f"remotetool: error: not a usable database URL from {source}: ")
    assert EXPECTED_FORMS in error and hint.startswith(f"  hint: fix {source}")
    bad = args[1] if args else "garbage"
    assert repr(mask_url(bad)) in error and SECRET not in res.stderr


def test_a_bad_url_in_a_real_process_has_no_traceback(isolated_env: str) -> None:
    env = {**os.environ, "REMOTEBRIDGE_DB": "garbage"}
    proc = subprocess.run([sys.executable, "-c",
                           "from remotebridge.cli.remotetool import main; main()", "list"],
                          env=env, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == ExitCode.CONFIG
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 2
    assert "'garbage'" in proc.stderr and EXPECTED_FORMS in proc.stderr


@pytest.mark.parametrize("command", [["list"], ["db", "upgrade"], ["db", "status"],
                                     ["review", "1"]])
def test_a_sqlite_file_in_a_missing_folder_is_named_and_not_created(
        tmp_path: Path, isolated_env: str, command: list[str]) -> None:
    folder = tmp_path / "no" / "such" / "dir"
    res = rt("--db", f"sqlite:///{folder}/x.db", *command)
    assert res.exit_code == ExitCode.CONFIG, res.output
    assert f"folder {folder} of database sqlite:///{folder}/x.db does not exist" in res.stderr
    assert "revision" not in res.stderr
    assert not (tmp_path / "no").exists(), "nothing created for a URL given by the user"


def test_the_default_location_is_created_by_db_upgrade(isolated_env: str) -> None:
    data = Path(isolated_env) / "data" / "remotebridge"
    listed = rt("list")
    assert listed.exit_code == ExitCode.CONFIG and "remotetool db upgrade" in listed.stderr
    assert not data.exists(), "a failing command changes nothing"
    assert rt("db", "upgrade").exit_code == 0
    assert (data / "remotebridge.db").is_file()
    assert rt("list").exit_code == 0


@pytest.mark.parametrize("command", [["review", "999"], ["prepare", "--remote-id", "999"],
                                     ["show", "999"]])
def test_an_unknown_run_has_a_hint(tmp_path: Path, isolated_env: str,
                                   command: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/rb.db"
    assert rt("--db", url, "db", "upgrade").exit_code == 0
    res = CliRunner().invoke(remotetool.main, ["--db", url, *command],
                             prog_name="remotetool")
    assert res.exit_code == ExitCode.NOT_FOUND
    assert res.stderr.splitlines() == ["remotetool: error: no remote run with remote_id 999",
                                       "  hint: see 'remotetool list'"]


def test_the_examples_and_the_readme_show_a_password_free_database_url(
        isolated_env: str) -> None:
    from remotebridge import config
    root = Path(__file__).resolve().parents[2]
    example = config.load(str(root / "ops" / "config.example.toml"))
    assert example.database.url == "postgresql:///?service=gpc1"
    service = (root / "ops" / "pg_service.conf.example").read_text()
    assert "[gpc1]" in service and "password" not in service.replace("# ", "").split("[gpc1]")[1]
    readme = (root / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    urls = [line.split('"')[1] for line in section.splitlines() if line.startswith("url = ")]
    assert urls and not any(has_password(u) for u in urls)
    assert urls[0] == example.database.url, "the password-free way comes first"
    assert section.index("~/.pgpass") < section.index("[site.lanl]")
