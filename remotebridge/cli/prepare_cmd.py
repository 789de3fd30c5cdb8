"""``remotetool prepare`` and ``remotetool review``: write and inspect job folders offline."""

from __future__ import annotations

import click

from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.errors import NotFoundError, PrepareError
from remotebridge.states import RunState

# The database and prepare machinery are imported where they are used: a cron tick
# with no new run ends on the driver's answer (remotebridge.quickdb) without them.


def _targets(app: AppContext, remote_id: int | None, label: str | None) -> list[int]:
    """The new runs of the label, or the one run named (in any state: prepare says why
    it cannot take it); NotFoundError for an unknown id."""
    from remotebridge.db import statemachine
    from remotebridge.db.engine import read_session

    state, label = (RunState.NEW, label) if remote_id is None else (None, None)
    with read_session(app.engine) as s:
        return [c.remote_id for c in statemachine.candidates(s, state, remote_id=remote_id,
                                                             label=label)]


@click.command()
@click.option("--remote-id", "-r", type=int, help="Prepare this run only.")
@click.option("--label", "-l", help="Prepare the new runs of this label.")
@click.option("--pretend", is_flag=True,
              help="Compute the plan and show the review; write nothing (no folder, no DB).")
@pass_app
def prepare(app: AppContext, remote_id: int | None, label: str | None, pretend: bool) -> None:
    """Write the job folder of each remote run in state 'new' and move it to 'pending'.

    No connection is needed. A run whose data is wrong (missing input, no detrend,
    allocation too big) goes to 'error' with a fault code and a message naming the
    component and file; 'remotetool revert' sends it back once fixed.
    """
    from remotebridge.quickdb import Due, prepare_due

    if remote_id is None and prepare_due(app.config, label=label) is Due.NOTHING:
        app.emit({"prepared": [], "failed": [], "pretend": pretend})
        return
    from remotebridge.prepare import prepare_run, review_job
    from remotebridge.prepare.review import human

    ids = _targets(app, remote_id, label)
    done, failed = [], []
    for rid in ids:
        try:
            res = prepare_run(app.engine, app.config, rid, pretend=pretend)
        except PrepareError as exc:
            failed.append({"remote_id": rid, "error": exc.message, "fault": exc.fault})
            hint = exc.hint or f"fix it, then 'remotetool revert --to new {rid}'"
            app.err.print(f"remotetool: error: remote run {rid}: {exc.message}\n"
                          f"  hint: {hint}", highlight=False, soft_wrap=True)
            continue
        item = {"remote_id": rid, "folder": res.folder, "seconds": round(res.seconds, 3),
                "tasks": res.info["tasks"], "allocation": res.info["allocation"]}
        done.append(item)
        if pretend and res.job is not None:
            data = review_job(res.job)
            item["review"] = data
            app.info(human(data), markup=True)
        else:
            app.info(f"remote run {rid}: prepared {res.info['tasks']['cmd']} commands in "
                     f"{res.seconds:.2f} s -> {res.folder}")
    app.emit({"prepared": done, "failed": failed, "pretend": pretend})
    if failed:
        raise click.exceptions.Exit(int(ExitCode.FAILURE))


@click.command()
@click.argument("remote_id", type=int)
@pass_app
def review(app: AppContext, remote_id: int) -> None:
    """Show a prepared run's allocation, job script, chunks and lists (no connection)."""
    from remotebridge.db.bridge import RemoteRun
    from remotebridge.db.engine import read_session
    from remotebridge.prepare import review_run
    from remotebridge.prepare.review import human

    with read_session(app.engine) as s:
        run = s.get(RemoteRun, remote_id)
        if run is None:
            raise NotFoundError(f"no remote run with remote_id {remote_id}",
                                hint="see 'remotetool list'")
        path_base = run.path_base
    data = review_run(path_base, remote_id)
    data["state"] = run.state
    app.emit(data, human(data), markup=True)
