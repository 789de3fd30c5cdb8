"""remotetool watch: one line per change in a pipe, bounded by --count."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import Engine, update

from remotebridge.cli.context import AppContext
from remotebridge.cli.remotetool import main
from remotebridge.cli.watch import watch_runs
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from tests.support.db import add_chipruns


def test_watch_in_a_pipe_prints_one_line_per_change(engine: Engine, db_url: str,
                                                    capsys: object) -> None:
    add_chipruns(engine, "w", 2)
    runner = CliRunner()
    assert runner.invoke(main, ["--db", db_url, "definebyquery", "-l", "w", "-s", "chip"]
                         ).exit_code == 0
    app = AppContext(db_url=db_url)
    ticks = []

    def step(_seconds: float) -> None:  # between refreshes: the run moves once
        ticks.append(_seconds)
        if len(ticks) == 1:
            with write_session(engine) as s:
                s.execute(update(RemoteRun).values(state="pending"))

    lines: list[str] = []
    app.line = lines.append  # type: ignore[method-assign]
    watch_runs(app, "w", 0.5, 3, sleep=step)
    assert ticks == [0.5, 0.5]
    assert [ln.split("\t")[:3] for ln in lines] == [["1", "new", "-"], ["1", "pending", "-"]]


def test_watch_cli_ends_after_count(engine: Engine, db_url: str) -> None:
    res = CliRunner().invoke(main, ["--db", db_url, "watch", "--count", "1",
                                    "--interval", "0.1"])
    assert res.exit_code == 0 and res.output == ""
