"""``remotetool exec``: push, check inputs, submit the pending runs.

Exit codes: 0 when every run was submitted (or there was nothing to do), 75 when
a run went to ``auth`` (the link is down) or hit a transient fault, 1 when a run
failed (scheduler refusal, transfer failure) or went to ``error``, or when a job
had to be cancelled because its run was taken meanwhile (``cancelled``/``orphan``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.states import ExecResult

if TYPE_CHECKING:
    # the tick with nothing to do must not load the transfer machinery or rich
    from remotebridge.exec import ExecOutcome
    from remotebridge.transfer import Progress as ProgressFn


@contextlib.contextmanager
def _progress_bar(app: AppContext) -> Iterator[ProgressFn | None]:
    """A rich transfer bar at a terminal; nothing in cron, pipes, --json or --quiet."""
    if not app.interactive or app.quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("pushing inputs"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=app.err,
                   transient=True)
    task = bar.add_task("push", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=max(done, 0), total=total)

    with bar:
        yield update


def _line(o: ExecOutcome) -> str:
    from remotebridge.exec import summary

    if o.result is ExecResult.RUN:
        how = "adopted" if o.adopted else "submitted"
        return f"{o.remote_id}: pending -> run, job {o.job_id} {how}; {summary(o)}"
    return f"{o.remote_id}: {o.result}: {o.message}"


def exit_code(outcomes: list[ExecOutcome]) -> int:
    """75 if a run went to auth or must be retried, else 1 if one failed, else 0."""
    results = {o.result for o in outcomes}
    if results & {ExecResult.AUTH, ExecResult.RETRY}:
        return int(ExitCode.TEMPORARY)
    if results & {ExecResult.FAILED, ExecResult.ERROR, ExecResult.CANCELLED, ExecResult.ORPHAN}:
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


@click.command("exec")
@click.option("--remote-id", "-r", type=int, help="Only this run.")
@click.option("--label", "-l", help="Only the pending runs of this label.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="At most this many runs.")
@pass_app
def exec_cmd(app: AppContext, remote_id: int | None, label: str | None,
             limit: int | None) -> None:
    """Push, check inputs and submit each pending run; it moves to 'run'.

    A run whose site cannot be reached goes to 'auth' (exit 75; after the key-card
    holder runs 'control-tool start', the next exec resumes it; while the link is
    down every exec exits 75). Safe to
    run from cron on several hosts at once: each run is submitted exactly once.
    """
    from remotebridge.quickdb import Due, exec_due

    if exec_due(app.config, remote_id=remote_id, label=label) is Due.NOTHING:
        app.emit([])  # the driver alone said so: SQLAlchemy not even imported
        return
    from remotebridge.due import pending_due

    if not pending_due(app.engine, remote_id=remote_id, label=label):
        app.emit([])  # nothing pending: what exec_runs would have said, without loading it
        return
    from remotebridge.exec import exec_runs

    with _progress_bar(app) as progress:
        outcomes = exec_runs(app.engine, app.config, remote_id=remote_id, label=label,
                             limit=limit, progress=progress)
    if app.json:
        app.emit([o.to_dict() for o in outcomes])
    for o in outcomes:
        if o.result is ExecResult.RUN:
            app.info(_line(o))
        else:
            app.err.print(f"remotetool: run {_line(o)}", highlight=False, soft_wrap=True)
    if any(o.result is ExecResult.AUTH for o in outcomes) and not app.json:
        app.err.print("  hint: log in again with 'control-tool start'; the next exec "
                      "or poll resumes the runs in auth", highlight=False)
    code = exit_code(outcomes)
    if code:
        raise click.exceptions.Exit(code)
