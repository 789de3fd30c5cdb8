"""``remotetool``: the operator's command (cron-friendly, --json for scripts).

Global options come before the command::

    remotetool [--db URL] [--config FILE] [--json] [--quiet] COMMAND ...
"""

from __future__ import annotations

import json
from typing import Any

import click

from remotebridge.cli.base import BridgeGroup, global_options, make_context
from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.control_report import show_pauses
from remotebridge.states import RunState

# The database, rich tables and the library modules are imported inside the commands
# that use them: --help, --version and usage errors import none of them (cron and
# shell completion stay fast; tests/unit/test_startup.py checks it).

STAGE_CHOICE = click.Choice(["chip", "cam", "warp", "stack"])


#: commands that live in their own modules, imported only when used
LAZY_HELP = {
    "demo": "The reference pipeline's demo survey and science programs.",
    "exec": "Push, check inputs and submit each pending run; it moves to 'run'.",
    "poll": "Ask the scheduler about submitted runs; finish the ones whose job ended.",
    "prepare": "Write the job folder of each remote run in state 'new' and move it to "
               "'pending'.",
    "review": "Show a prepared run's allocation, job script, chunks and lists (no "
              "connection).",
    "serve": "Serve a read-only status page of the runs (and a UWS 1.1 view under /uws/).",
    "site": "Inspect the remote sites.",
    "stages": "List the stages (built in or plugged in) with their options and defaults.",
    "watch": "Watch the runs: a live table at a terminal, one line per change in a pipe.",
}
"""Short help of the lazy commands, for ``--help`` without importing them (a test
checks that it matches each command's own)."""
LAZY = {
    "demo": "remotebridge.cli.demo_cmd:demo",
    "exec": "remotebridge.cli.exec_cmd:exec_cmd",
    "poll": "remotebridge.cli.poll_cmd:poll",
    "prepare": "remotebridge.cli.prepare_cmd:prepare",
    "review": "remotebridge.cli.prepare_cmd:review",
    "serve": "remotebridge.cli.serve_cmd:serve",
    "site": "remotebridge.cli.site_cmd:site",
    "stages": "remotebridge.cli.stages_cmd:stages",
    "watch": "remotebridge.cli.watch:watch",
}


@click.group(cls=BridgeGroup, lazy=LAZY, lazy_help=LAZY_HELP,
             context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="remotebridge")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, config_path: str | None, as_json: bool,
         quiet: bool) -> None:
    """Run a survey pipeline's batches on a remote supercomputer.

    The cycle is definebyquery -> prepare -> exec -> poll, each safe to run from
    cron on several hosts at once. Exit codes: 0 ok, 1 failure, 2 usage,
    3 not found / illegal state change, 75 try again later, 78 configuration.
    """
    ctx.obj = make_context(db_url, config_path, as_json, quiet)


@main.command()
@click.option("--label", "-l", required=True, help="Pipeline label of the stage runs.")
@click.option("--stage", "-s", required=True, type=STAGE_CHOICE, help="Pipeline stage.")
@click.option("--limit", "-n", type=click.IntRange(min=1),
              help="At most this many components in the new run.")
@click.option("--site", help="Site to run on (default: the stage's, else the default site).")
@click.option("--path-base", help="Local folder for the job folders (remote_<id>/ inside).")
@click.option("--pretend", is_flag=True, help="Show what would be defined; change nothing.")
@pass_app
def definebyquery(app: AppContext, label: str, stage: str, limit: int | None, site: str | None,
                  path_base: str | None, pretend: bool) -> None:
    """Group the ready stage runs of LABEL into one new remote run.

    Prints the new remote_id, or nothing when there is nothing to do. Running it
    twice (or on two hosts at once) never puts a stage run into two remote runs.
    """
    from remotebridge.quickdb import Due, define_due

    # an unknown site is refused as the full path refuses it, before the quick answer
    app.config.site(site or app.config.stage(stage).site or None)
    if define_due(app.config, stage=stage, label=label) is Due.NOTHING:
        # the driver alone said so (cron asks every stage every round): no SQLAlchemy
        app.emit({"remote_id": None, "stage": stage, "label": label, "components": 0,
                  "pretend": pretend, "remote_ids": []}, None)
        return
    from remotebridge import define

    res = define.define_by_query(app.engine, app.config, label=label, stage=stage, limit=limit,
                                 site=site, path_base=path_base, pretend=pretend)
    data = {"remote_id": res.remote_id, "stage": stage, "label": label,
            "components": res.count, "pretend": pretend,
            "remote_ids": [res.remote_id] if res.remote_id else []}
    if pretend:
        app.emit(data, f"would define a {stage} run of {res.count} components" if res.count
                 else None)
    elif res.remote_id is not None:
        app.emit(data, str(res.remote_id))
    else:
        app.emit(data, None)


@main.command("list")
@click.option("--label", "-l", help="Only runs of this label.")
@click.option("--state", type=click.Choice([s.value for s in RunState]), help="Only this state.")
@click.option("--stage", type=STAGE_CHOICE, help="Only this stage.")
@pass_app
def list_cmd(app: AppContext, label: str | None, state: str | None, stage: str | None) -> None:
    """List remote runs (a table at a terminal, tab-separated lines in pipes)."""
    from remotebridge import runs

    records = runs.list_runs(app.engine, label=label, state=state, stage=stage)
    show_pauses(app)
    _warn_aging(app, [r.remote_id for r in records])
    if app.json:
        app.emit([r.to_dict() for r in records])
        return
    if app.quiet or not records:
        return
    if app.interactive:
        app.console.print(runs_table(records, app.console.width))
        return
    for r in records:
        click.echo("\t".join([str(r.remote_id), r.stage, r.label, r.site, r.state,
                              r.job_id or "-", str(r.components), str(r.fault),
                              r.progress or "-"]))


def runs_table(records: list[Any], width: int = 80) -> Any:
    """The rich table of ``list`` for a terminal ``width`` columns wide: ids, job ids
    and times are never cut or wrapped (the label and site columns fold, and the time
    drops its year below 100 columns)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from remotebridge.db.base import utcnow

    def widest(values: list[str], title: str) -> int:
        return max([len(title), *map(len, values)])

    ids = [str(r.remote_id) for r in records]
    jobs = [r.job_id or "" for r in records]
    done = [r.progress or "-" for r in records]
    stamp = "%Y-%m-%d %H:%M" if width >= 100 else "%m-%d %H:%M"
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column("id", no_wrap=True, width=widest(ids, "id"))
    table.add_column("stage", no_wrap=True, width=5)
    table.add_column("label", overflow="fold", ratio=2, min_width=5)
    table.add_column("site", overflow="fold", ratio=1, min_width=4)
    table.add_column("state", no_wrap=True, width=9)
    table.add_column("done", no_wrap=True, width=widest(done, "done"))
    table.add_column("job", no_wrap=True, width=widest(jobs, "job"))
    table.add_column("comps", no_wrap=True, width=widest([str(r.components) for r in records],
                                                         "comps"))
    table.add_column("fault", no_wrap=True, width=5)
    table.add_column("updated", no_wrap=True, width=len(utcnow().strftime(stamp)))
    for r in records:
        # cells are data, never markup: a label or job id holding "[x]" prints as it is
        cells = [str(r.remote_id), r.stage, r.label, r.site, r.state, r.progress or "-",
                 r.job_id or "", str(r.components), str(r.fault), r.updated.strftime(stamp)]
        table.add_row(*map(Text, cells))
    return table


def _warn_aging(app: AppContext, ids: list[int]) -> None:
    """Runs whose inputs near their site's purge age: one warning line each on stderr."""
    from remotebridge.purgeage import aging_inputs

    for aging in aging_inputs(app.engine, app.config, ids):
        app.err.print(f"remotetool: warning: {aging.warning()}", highlight=False,
                      soft_wrap=True, markup=False)


@main.command()
@click.argument("remote_id", type=int)
@pass_app
def show(app: AppContext, remote_id: int) -> None:
    """Show one remote run: its fields, components and history."""
    from remotebridge import runs

    detail = runs.show_run(app.engine, remote_id)
    if app.json:
        app.emit(detail.to_dict())
        return
    r = detail.run
    lines = [f"remote run {r.remote_id}: {r.stage} label={r.label} site={r.site} "
             f"state={r.state} job={r.job_id or '-'} fault={r.fault} attempt={r.attempt}",
             f"  path_base {r.path_base}",
             f"  components {r.components}: " + ", ".join(
                 f"{c['stage_id']}:{c['state']}" for c in detail.components[:20])
             + (" ..." if r.components > 20 else "")]
    if r.owner:
        lines.append(f"  leased by {r.owner}")
    if r.note:
        lines.append(f"  note: {r.note}")
    if detail.logs:
        lines.append(f"  logs at home ({r.path_base}/remote_{r.remote_id}/): "
                     + ", ".join(detail.logs))
    if detail.progress:
        from remotebridge.poll.progress import describe, describe_end, describe_phases

        lines.append(f"  progress {describe(detail.progress)}")
        if describe_phases(detail.progress):
            lines.append(f"  phases {describe_phases(detail.progress)}")
        if r.state == "run":
            lines.append(f"  {describe_end(detail.progress)}")
    lines.append("  history:")
    lines += [f"    {h['at']}  {h['from'] or '-'} -> {h['to']}  {h['actor']}  {h['note']}"
              for h in detail.history]
    app.info("\n".join(lines))


@main.command()
@click.option("--label", "-l", help="Only runs of this label (default: all runs in auth).")
@pass_app
def revertauth(app: AppContext, label: str | None) -> None:
    """Return runs paused in 'auth' to the state they were in before the link dropped."""
    from remotebridge.db import statemachine
    from remotebridge.db.engine import write_session

    with write_session(app.engine) as session:
        moved = statemachine.revertauth(session, label=label)
    app.emit([{"remote_id": rid, "state": st.value} for rid, st in moved],
             "\n".join(f"{rid}: auth -> {st.value}" for rid, st in moved) or None)


@main.command()
@click.argument("remote_id", type=int)
@click.option("--to", "to", type=click.Choice(["new", "pending", "run"]),
              help="State to return to (default: the one it failed in; 'new' makes "
                   "prepare write the job folder again).")
@pass_app
def revert(app: AppContext, remote_id: int, to: str | None) -> None:
    """Send a run in 'error' back to the state to retry from, and reset its fault."""
    from remotebridge.db import statemachine
    from remotebridge.db.engine import write_session

    with write_session(app.engine) as session:
        target = statemachine.revert(session, remote_id, RunState(to) if to else None)
    app.emit({"remote_id": remote_id, "state": target.value},
             f"{remote_id}: error -> {target.value}")


@main.command()
@click.argument("remote_id", type=int, required=False)
@click.option("--label", "-l", help="Cancel every non-terminal run of this label.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before cancelling a label's runs.")
@pass_app
def cancel(app: AppContext, remote_id: int | None, label: str | None, yes: bool) -> None:
    """Cancel a run in any state but 'full'/'cancelled' (its scheduler job first).

    A run in 'run' has its job cancelled (by id, else by its submit token) and the
    scheduler's confirmation awaited; products already home stay. A site that cannot
    be reached gets nothing sent (exit 75). --label asks once before cancelling the
    label's runs (--yes for scripts) and goes on past a run that cannot be cancelled
    now, naming it on stderr; the exit code is then that of the first such run.
    """
    from remotebridge.cancel import cancel_run, label_runs
    from remotebridge.errors import UsageError

    if (remote_id is None) == (label is None):
        raise UsageError("give either REMOTE_ID or --label")
    ids = [remote_id] if remote_id is not None else label_runs(app.engine, label or "")
    if label is not None and ids and not yes:
        click.confirm(f"cancel {len(ids)} runs of label {label!r} ({_ids(ids)})?",
                      abort=True, err=True)
    if remote_id is not None:
        done = cancel_run(app.engine, app.config, remote_id)
        app.emit(done.to_dict(), _cancel_line(done))
        return
    _cancel_each(app, ids)


def _cancel_each(app: AppContext, ids: list[int]) -> None:
    """Cancel every run of a label: a run that cannot be cancelled now (its site down,
    another process on it) does not stop the others; each failure gets its line on
    stderr and the command exits with the first failure's code."""
    from remotebridge.cancel import cancel_run
    from remotebridge.errors import BridgeError, SeveralFailed

    done, failed = [], []
    for rid in ids:
        try:
            done.append(cancel_run(app.engine, app.config, rid))
        except BridgeError as exc:
            failed.append(exc)
            click.echo(f"remotetool: error: run {rid}: {exc.message}", err=True)
    app.emit([o.to_dict() for o in done], "\n".join(_cancel_line(o) for o in done) or None)
    if failed:
        raise SeveralFailed(f"{len(failed)} of {len(ids)} runs not cancelled (each named "
                            "above)", failed[0])


def _ids(ids: list[int]) -> str:
    from remotebridge.db.statemachine import id_ranges

    return id_ranges(ids)


def _cancel_line(o: object) -> str:
    from remotebridge.cancel import CancelOutcome

    assert isinstance(o, CancelOutcome)
    jobs = f" (job {', '.join(o.jobs)} cancelled)" if o.jobs else ""
    return f"{o.remote_id}: {o.before.value} -> cancelled{jobs}"


@main.command()
@click.argument("remote_id", type=int)
@click.option("--task", "-t", type=click.IntRange(min=0), help="Only this task's log.")
@click.option("--failed", is_flag=True, help="The logs of the failed tasks only.")
@click.option("--job", "job", is_flag=True, help="The job's output file (with --task or "
              "--failed: as well; alone: only it).")
@click.option("--tail", "-n", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many last lines of each file.")
@pass_app
def logs(app: AppContext, remote_id: int, task: int | None, failed: bool, job: bool,
         tail: int) -> None:
    """Print a submitted run's job output file and task logs, read from its site now.

    One remote call over the master; by default the job's output file and the logs
    of the failed tasks. Control characters in the logs are shown escaped.
    """
    from remotebridge.errors import UsageError
    from remotebridge.tasklogs import LogRequest, run_logs

    if task is not None and failed:
        raise UsageError("give --task or --failed, not both")
    picked = task is not None or failed
    req = LogRequest(tasks=picked or not job, task=task, failed=task is None,
                     job=job or not picked, tail=tail)
    answer = run_logs(app.engine, app.config, remote_id, req)
    if app.json:
        app.emit({"remote_id": remote_id, "folder_missing": answer.folder_missing,
                  "files": [{"label": f.label, "path": f.path, "size": f.size,
                             "text": f.text, "missing": f.missing, "cut": f.cut}
                            for f in answer.files]})
        return
    _print_logs(app, answer)


def _print_logs(app: AppContext, answer: Any) -> None:
    from remotebridge.textsafe import visible

    if answer.folder_missing:
        click.echo("the job folder is gone from the site (purged?); see the job folder's "
                   "logs/ at home", err=True)
    for f in answer.files:
        if f.missing:
            app.line(f"==> {visible(f.label)} {visible(f.path)}: missing <==")
            continue
        more = " (left out: total cap reached)" if f.cut and not f.text else ""
        app.line(f"==> {visible(f.label)} {visible(f.path)} ({f.size} bytes){more} <==")
        if f.text:
            app.line(visible(f.text).rstrip("\n"))


@main.command()
@click.option("--stage", type=STAGE_CHOICE, help="Only this stage.")
@pass_app
def labels(app: AppContext, stage: str | None) -> None:
    """Labels of the pipeline's stage runs, with how many are ready and how many are taken."""
    from remotebridge.labels import label_counts

    rows = label_counts(app.engine, stage)
    if app.json:
        app.emit([r.__dict__ for r in rows])
        return
    if app.interactive and not app.quiet:
        from rich.table import Table

        table = Table("stage", "label", "ready", "in remote", "total")
        for r in rows:
            table.add_row(r.stage, r.label, str(r.ready), str(r.taken), str(r.total))
        app.console.print(table)
        return
    for r in rows:
        # click, not rich: rich expands tabs into spaces
        app.line(f"{r.stage}\t{r.label}\tready={r.ready}\tin_remote={r.taken}\ttotal={r.total}")


@main.group()
def db() -> None:
    """Database schema: create, upgrade, inspect."""


@db.command()
@pass_app
def upgrade(app: AppContext) -> None:
    """Create the schema, or upgrade it to this version of remotebridge."""
    from remotebridge.db import migrate  # alembic is only needed here
    from remotebridge.db.engine import shown_url

    engine = app.raw_engine()
    before, after = migrate.upgrade(engine)
    url = shown_url(engine)
    app.emit({"url": url, "before": before, "after": after},
             None if before == after else f"{url}: schema {before or 'empty'} -> {after}")


@db.command()
@pass_app
def status(app: AppContext) -> None:
    """Show the database URL and its schema revision against the code's."""
    from remotebridge.db import migrate
    from remotebridge.db.engine import shown_url

    engine = app.raw_engine()
    current, head = migrate.current_revision(engine), migrate.head_revision()
    url = shown_url(engine)
    app.emit({"url": url, "current": current, "head": head, "up_to_date": current == head},
             f"{url}: schema {current or 'empty'} (code needs {head})")


@main.group()
def config() -> None:
    """The effective configuration."""


@config.command("show")
@pass_app
def config_show(app: AppContext) -> None:
    """Print the effective configuration (file, defaults and overrides merged).

    The database URL shown is the one in use (the default SQLite file when the
    configuration names none), its password masked; ``file_read`` says whether a
    configuration file was read at all.
    """
    from pathlib import Path

    from remotebridge.db.url import mask_url

    data = app.config.to_dict()
    data["database"]["url"] = mask_url(app.config.database.effective_url())
    data["database"]["url_source"] = app.db_source
    data["file_read"] = bool(app.config.path) and Path(app.config.path).is_file()
    if app.json:
        app.emit(data)
        return
    click.echo(json.dumps(data, indent=2))
    if not data["file_read"]:
        click.echo(f"no configuration file was read ({app.config.path or 'none'} does not "
                   "exist): these are the defaults", err=True)
