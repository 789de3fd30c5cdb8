"""The database password: never needed in the config, never printed, never written.

Against a private PostgreSQL server that checks passwords (tests/unit/scram_server.py):
a URL without a password connects through libpq's own ways (PGPASSWORD, a password
file, a service file), a wrong or missing password is refused, and a marker password
appears in no output, log line, note or file under the data folder, on every path that
can report a database URL.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from remotebridge.cli import remotetool
from remotebridge.cli.exitcodes import ExitCode
from tests.support.scram_server import MARKER, ROLE, ScramServer, scram_server

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def server() -> Iterator[ScramServer]:
    with scram_server() as s:
        yield s


@pytest.fixture
def home(isolated_env: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """isolated_env, and libpq kept away from the real home's password and service files."""
    tmp = Path(isolated_env)
    for var in ("PGPASSWORD", "PGSERVICE", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp / "no-pgpass"))
    monkeypatch.setenv("PGSERVICEFILE", str(tmp / "no-pg_service.conf"))
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp / "no-sysconf"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp / "state"))
    return tmp


class Recorder:
    """Every remotetool invocation of a test, for the final 'marker nowhere' check."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        res = CliRunner().invoke(remotetool.main, list(args), env=env, prog_name="remotetool",
                                 catch_exceptions=False)
        self.texts.append((" ".join(args), res.stdout + res.stderr))
        return res

    def assert_no_marker(self, caplog: pytest.LogCaptureFixture, root: Path,
                         allowed: set[Path]) -> None:
        """MARKER in no output, no log record, no file under ``root`` (but ``allowed``)."""
        leaked = [f"$ {args}\n{out}" for args, out in self.texts if MARKER in out]
        assert not leaked, leaked[0]
        assert MARKER not in caplog.text
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in allowed:
                assert MARKER.encode() not in path.read_bytes(), f"{path} holds the password"


def write_config(path: Path, url: str, mode: int = 0o600) -> Path:
    path.write_text(f'[database]\nurl = "{url}"\n')
    path.chmod(mode)
    return path


# --- no password in the configuration -----------------------------------------------


def _libpq_way(way: str, server: ScramServer, db: str, home: Path,
               monkeypatch: pytest.MonkeyPatch) -> str:
    """Set up one of libpq's password sources; returns the password-free URL to use."""
    if way == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", MARKER)
        return server.url(db, password=None)
    pgpass = home / "pgpass"
    pgpass.write_text(f"127.0.0.1:{server.port}:{db}:{ROLE}:{MARKER}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file that others can read
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    if way == "PGPASSFILE":
        return server.url(db, password=None)
    services = home / "pg_service.conf"
    services.write_text(f"[rbtest]\nhost=127.0.0.1\nport={server.port}\ndbname={db}\n"
                        f"user={ROLE}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    if way == "service in the URL":
        return "postgresql:///?service=rbtest"
    monkeypatch.setenv("PGSERVICE", "rbtest")
    return "postgresql://"


@pytest.mark.parametrize("way", ["PGPASSWORD", "PGPASSFILE", "service in the URL",
                                 "PGSERVICE"])
def test_a_url_without_a_password_connects_the_libpq_ways(
        server: ScramServer, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, way: str) -> None:
    caplog.set_level(logging.DEBUG)
    db = server.new_database("rb_way_" + way.replace(" ", "_").lower())
    url = _libpq_way(way, server, db, home, monkeypatch)
    config = write_config(home / "config.toml", url, mode=0o644)  # nothing secret in it
    rt = Recorder()
    for command in (["db", "upgrade"], ["list"], ["--json", "db", "status"],
                    ["config", "show"]):
        res = rt("--config", str(config), *command)
        assert res.exit_code == 0, res.output
        assert res.stderr == "", "no warning: the file holds no password"
    assert json.loads(rt("--config", str(config), "--json", "db", "status").stdout)[
        "up_to_date"] is True
    rt.assert_no_marker(caplog, home, {home / "pgpass"})


@pytest.mark.parametrize(("password", "needle"), [
    ("not" + MARKER, "password authentication failed"),
    (None, "no password supplied"),
])
def test_the_server_refuses_a_wrong_or_missing_password(
        server: ScramServer, home: Path, monkeypatch: pytest.MonkeyPatch,
        password: str | None, needle: str) -> None:
    db = server.new_database(f"rb_refuse_{'wrong' if password else 'none'}")
    if password is not None:
        monkeypatch.setenv("PGPASSWORD", password)
    res = Recorder()("--db", server.url(db, password=None), "list")
    assert res.exit_code == ExitCode.CONFIG, res.output
    error, hint = res.stderr.splitlines()
    assert needle in error and error.startswith("remotetool: error: database ")
    assert MARKER not in res.stderr


# --- the marker password is never printed or written ---------------------------------


def failing_urls(server: ScramServer, old: str) -> dict[str, str]:
    """A URL with the marker password for every way a database URL can fail (``old``:
    an empty database, its schema too old)."""
    return {
        "unreachable": f"postgresql://{ROLE}:{MARKER}@127.0.0.1:1/x",
        "refused login": server.url(old, password=MARKER + "x"),
        "no such database": server.url("rb_marker_none"),
        "password in the query": f"postgresql://{ROLE}@127.0.0.1:{server.port}/{old}"
                                 f"?password=no{MARKER}",
        "unescaped @ in the password": f"postgresql://{ROLE}:{MARKER}@{MARKER}z/y@127.0.0.1"
                                       f":{server.port}/{old}",
        "port not a number": f"postgresql://{ROLE}:{MARKER}@127.0.0.1:port/x",
        "unknown dialect": f"bogus://{ROLE}:{MARKER}@127.0.0.1/x",
        "not a URL": f"{ROLE}:{MARKER}@127.0.0.1/x",
        "schema too old": server.url(old),  # last: db upgrade makes it current
    }


COMMANDS = [["list"], ["--json", "list"], ["show", "1"], ["db", "status"],
            ["--json", "db", "status"], ["config", "show"], ["--json", "config", "show"],
            ["review", "1"], ["db", "upgrade"], ["--json", "db", "upgrade"]]


@pytest.mark.parametrize("source", ["--db", "REMOTEBRIDGE_DB", "[database] url"])
def test_the_marker_password_is_in_no_output_when_the_database_fails(
        server: ScramServer, home: Path, caplog: pytest.LogCaptureFixture,
        source: str) -> None:
    caplog.set_level(logging.DEBUG)
    rt = Recorder()
    codes = set()
    urls = failing_urls(server, server.new_database("rb_marker_old_" + source[-3:].lower()))
    for name, url in urls.items():
        config = write_config(home / f"{name}.toml", url if source == "[database] url" else "")
        for command in COMMANDS:
            args = ["--config", str(config), *(["--db", url] if source == "--db" else [])]
            res = rt(*args, *command,
                     env={"REMOTEBRIDGE_DB": url} if source == "REMOTEBRIDGE_DB" else None)
            assert "Traceback" not in res.stderr
            codes.add(res.exit_code)
    assert {ExitCode.OK, ExitCode.CONFIG, ExitCode.TEMPORARY} <= codes
    rt.assert_no_marker(caplog, home, {home / f"{n}.toml" for n in urls})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_marker_password_is_in_no_output_note_or_file_of_a_whole_cycle(
        server: ScramServer, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """A chip run of the demo survey through prepare, exec and poll on the local site,
    the configured URL holding the marker (on SQLite it is overridden by
    $REMOTEBRIDGE_DB) and PGPASSWORD set to it as well."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PGPASSWORD", MARKER)
    config = write_config(home / "config.toml",
                          server.url(server.new_database("rb_marker_cycle_" + kind)))
    if kind == "sqlite":
        monkeypatch.setenv("REMOTEBRIDGE_DB", f"sqlite:///{home}/rb.db")
    rt = Recorder()
    steps = [["db", "upgrade"],
             ["demo", "init", "--exposures", "1", "--chips", "1", "--size", "32",
              "--dir", str(home / "survey"), "--label", "M"],
             ["definebyquery", "-l", "M", "-s", "chip", "--path-base", str(home / "jobs")],
             ["prepare", "-l", "M"], ["exec", "-l", "M"],
             ["poll", "-l", "M", "--force", "--wait", "120"]]
    for step in steps:
        res = rt("--config", str(config), *step)
        assert res.exit_code == 0, res.output
    shown = json.loads(rt("--config", str(config), "--json", "show", "1").stdout)
    assert shown["state"] == "full", shown
    assert len(shown["history"]) >= 4
    for command in (["show", "1"], ["list"], ["--json", "list"], ["db", "status"],
                    ["--json", "db", "status"], ["config", "show"],
                    ["--json", "config", "show"], ["labels"]):
        assert rt("--config", str(config), *command).exit_code == 0
    # the notes are in the database: in the SQLite file (scanned below), and on
    # PostgreSQL printed by show --json (recorded above)
    rt.assert_no_marker(caplog, home, {config})
