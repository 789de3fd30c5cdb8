"""``remotetool poll``: status of submitted runs; bring finished ones home."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.states import PollAction

if TYPE_CHECKING:
    # the tick with nothing to do must not load the poll and transfer machinery
    from remotebridge.poll import PollOutcome

ERROR_HINT = ("inspect the run ('remotetool show ID'); 'remotetool revert ID' retries "
              "the poll once fixed")


def _line(o: PollOutcome) -> str:
    # poll only ever takes runs in 'run'; say where each went and why
    why = "" if o.action == o.state else f"{o.action}; "
    text = f"remote run {o.remote_id}: run -> {o.state} ({why}job {o.job_id or '-'} " \
           f"{o.job_state or '?'})"
    if o.action in (PollAction.FULL, PollAction.RETRY):
        text += f": {len(o.full)} full, {len(o.retry)} retry, {len(o.abandoned)} abandoned, " \
                f"{o.records} records, {o.files} files"
    elif o.fault:
        text += f": fault {o.fault}: {o.note}"
    elif o.note:
        text += f": {o.note}"
    return text


def _report_errors(app: AppContext, outcomes: list[PollOutcome]) -> None:
    """Runs sent to error: one line each on stderr, even under --quiet and --json."""
    for o in outcomes:
        if o.action is PollAction.ERROR:
            note = o.note.removeprefix("poll: ")
            app.err.print(f"remotetool: error: remote run {o.remote_id}: fault {o.fault}: "
                          f"{note}\n  hint: {ERROR_HINT.replace('ID', str(o.remote_id))}",
                          highlight=False, soft_wrap=True, markup=False)


def exit_code(outcomes: list[PollOutcome]) -> int:
    """75 if a run went to auth, else 1 if one went to error, else 0."""
    actions = {o.action for o in outcomes}
    if PollAction.AUTH in actions:
        return int(ExitCode.TEMPORARY)
    return int(ExitCode.FAILURE) if PollAction.ERROR in actions else int(ExitCode.OK)


@click.command()
@click.option("--remote-id", "-r", type=int, help="Poll this run only.")
@click.option("--label", "-l", help="Poll the runs of this label.")
@click.option("--force", is_flag=True, help="Poll even if the poll interval has not passed.")
@click.option("--wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Keep polling (forced, a few seconds apart) until no selected run is "
                   "in 'run', or SECONDS have passed.")
@pass_app
def poll(app: AppContext, remote_id: int | None, label: str | None, force: bool,
         wait: float | None) -> None:
    """Ask the scheduler about submitted runs; finish the ones whose job ended.

    A finished job's permanent products come home (safe tar bundles over every front
    end) and its dbinfo records are checked and replayed in one transaction; the run
    goes to 'full'. Failed components are retried (run back to 'pending' for exec) up
    to max_attempts, then abandoned. Bad remote data: 'error' with a fault code
    (docs/poll.md), reported on stderr even with --quiet, exit 1. Link down:
    'auth', exit 75 (wins over 1). Quiet when nothing changed.
    """
    def show(round_: list[PollOutcome]) -> None:
        for o in round_:
            deferred = o.action is PollAction.DEFERRED and app.interactive
            if o.action is not PollAction.ERROR and (o.changed or deferred):
                app.info(_line(o))
        _report_errors(app, round_)

    from remotebridge.quickdb import Due
    from remotebridge.quickdb import poll_due as quick_poll_due

    if wait is None and quick_poll_due(app.config, remote_id=remote_id, label=label,
                                       force=force) is Due.NOTHING:
        app.emit([])  # the driver alone said so: SQLAlchemy not even imported
        return
    from remotebridge.due import poll_due

    if wait is None and not poll_due(app.engine, app.config, remote_id=remote_id, label=label,
                                     force=force):
        app.emit([])  # nothing due: what poll_runs would have said, without loading it
        return
    from remotebridge.poll import poll_runs, poll_until

    if wait is None:
        outcomes = poll_runs(app.engine, app.config, remote_id=remote_id, label=label,
                             force=force)
        show(outcomes)
    else:
        outcomes = poll_until(app.engine, app.config, wait=wait, remote_id=remote_id,
                              label=label, force=force, on_round=show)
    if app.json:
        app.emit([o.to_dict() for o in outcomes])
    code = exit_code(outcomes)
    if code:
        raise click.exceptions.Exit(code)
