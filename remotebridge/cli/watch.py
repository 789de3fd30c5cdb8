"""``remotetool watch``: the runs, refreshed; a live table at a terminal, one line per
change in a pipe. Bounded by ``--count`` so scripts and tests end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from remotebridge.cli.context import AppContext
from remotebridge.runs import RunRecord, list_runs

if TYPE_CHECKING:
    from rich.live import Live


def _key(r: RunRecord) -> tuple[str, str | None, str | None]:
    return r.state, r.progress, r.job_id


def change_lines(before: dict[int, tuple[str, str | None, str | None]],
                 records: list[RunRecord]) -> Iterator[str]:
    """One tab-separated ``id state done job`` line per run that is new or changed."""
    for r in records:
        if before.get(r.remote_id) != _key(r):
            yield "\t".join([str(r.remote_id), r.state, r.progress or "-", r.job_id or "-"])


def watch_runs(app: AppContext, label: str | None, interval: float, count: int | None,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Refresh ``count`` times (forever when None), ``interval`` seconds apart."""
    ticks = 0
    seen: dict[int, tuple[str, str | None, str | None]] = {}
    live = _live(app) if app.interactive and not app.quiet else None
    try:
        while count is None or ticks < count:
            if ticks:
                sleep(interval)
            records = list_runs(app.engine, label=label)
            if live is not None:
                from remotebridge.cli.remotetool import runs_table

                live.update(runs_table(records, app.console.width), refresh=True)
            else:
                for line in change_lines(seen, records):
                    app.line(line)
            seen = {r.remote_id: _key(r) for r in records}
            ticks += 1
    finally:
        if live is not None:
            live.stop()


def _live(app: AppContext) -> Live:
    from rich.live import Live

    live = Live(console=app.console, auto_refresh=False)
    live.start()
    return live


@click.command()
@click.option("--label", "-l", help="Only runs of this label.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many refreshes.")
@click.pass_obj
def watch(app: AppContext, label: str | None, interval: float, count: int | None) -> None:
    """Watch the runs: a live table at a terminal, one line per change in a pipe."""
    watch_runs(app, label, interval, count)
